-- Evidence and severity of anomalies: what a person checks first about an
-- anomaly (prevalence of the destination across apps and clusters, the
-- app's own history, the name's shape, the verdict, the pods), gathered by
-- the detector when it raises it, and the severity its rule table derives
-- from that evidence (detector package doc).
--
-- Anomalies stored before have no severity (''), which alerts send as
-- warning, and no evidence ('{}').

ALTER TABLE anomalies
    ADD COLUMN severity text COLLATE "C" NOT NULL DEFAULT '' CHECK (length(severity) <= 16),
    ADD COLUMN evidence jsonb NOT NULL DEFAULT '{}';

COMMENT ON COLUMN anomalies.severity IS 'critical, warning or info, from the evidence; empty for anomalies stored before severities.';
COMMENT ON COLUMN anomalies.evidence IS 'egressd.Evidence as JSON: prevalence, the app''s history, the name''s shape, verdict, pods and the severity''s reasons; length-bounded by the writer.';

-- Prevalence looks destinations up by name across every app, and by
-- registrable domain (every name ending in ".example.com"): one index on
-- the reversed name answers both, an exact match and a prefix match (LIKE
-- 'moc.elpmaxe.%', which the "C" collation lets a btree serve). Flushes
-- never change a destination's name, so they still update rows in place
-- (HOT); only a new destination writes one more index entry.
CREATE INDEX destinations_reverse_name_idx ON destinations (reverse(name));
