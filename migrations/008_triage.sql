-- Who ended an anomaly from the triage page, and how: accepted exactly,
-- accepted as a pattern, or dismissed (resolved without accepting). Empty
-- for anomalies that resolved otherwise (volume back to normal, the alert's
-- time to live, an acceptance through the API or the CLI).
ALTER TABLE anomalies
    ADD COLUMN resolution  text NOT NULL DEFAULT '' CHECK (resolution IN ('', 'accepted', 'accepted_pattern', 'dismissed')),
    ADD COLUMN resolved_by text NOT NULL DEFAULT '',
    ADD COLUMN resolved_note text NOT NULL DEFAULT '';

COMMENT ON COLUMN anomalies.resolution IS 'How an operator ended it from the triage page: accepted, accepted_pattern or dismissed; empty otherwise.';
COMMENT ON COLUMN anomalies.resolved_by IS 'Who ended it from the triage page (the name given at sign-in).';
COMMENT ON COLUMN anomalies.resolved_note IS 'What was accepted: the destination or pattern with its port.';

-- The triage page lists every app that reached an anomaly's destination
-- through the reversed-name index of 006_evidence.sql.
