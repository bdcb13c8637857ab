-- Flushes write each key's destination row and hourly bucket, 10k rows and
-- more per flush. The foreign keys from those rows to apps checked every
-- inserted row with a lookup in apps (a trigger per row, FOR KEY SHARE),
-- which was a third of a flush of new keys: 10k new keys took 321 ms with
-- the keys and 189 ms without (median of 16 flushes each, interleaved, on
-- the bench's PostgreSQL). The keys only ever did two things: refuse a row
-- whose app does not exist, and delete an app's rows with it.
--
-- The writer already guarantees the first: every row a rollup writes refers
-- to an app that the same transaction upserted just before, and holds
-- locked until it commits (postgres.DB.WriteRollup), and nothing else
-- writes these tables. The second is this statement-level trigger: one
-- DELETE per table for all the apps a statement deleted (retention deletes
-- apps in batches), where ON DELETE CASCADE ran one per app and table.
--
-- Anomalies, app hours and app pods keep their foreign keys: they are
-- written a few rows at a time.

ALTER TABLE destinations DROP CONSTRAINT destinations_app_id_fkey;
ALTER TABLE destination_hourly DROP CONSTRAINT destination_hourly_app_id_fkey;
ALTER TABLE dns_queries DROP CONSTRAINT dns_queries_app_id_fkey;

CREATE FUNCTION apps_delete_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM destinations WHERE app_id IN (SELECT id FROM deleted_apps);
    DELETE FROM destination_hourly WHERE app_id IN (SELECT id FROM deleted_apps);
    DELETE FROM dns_queries WHERE app_id IN (SELECT id FROM deleted_apps);
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION apps_delete_rows() IS 'Deletes the destinations, hourly buckets and DNS questions of deleted apps (in place of ON DELETE CASCADE, migration 007).';

CREATE TRIGGER apps_delete_rows AFTER DELETE ON apps
    REFERENCING OLD TABLE AS deleted_apps
    FOR EACH STATEMENT EXECUTE FUNCTION apps_delete_rows();

-- The baseline window from one row per destination: the first and last UTC
-- hours whose bucket has allowed flows. Whether a destination had allowed
-- traffic in a window of whole hours [lo, to) is then known without
-- aggregating its buckets whenever one of those two hours falls inside
-- (postgres.DB.WindowDestinations says when it still reads buckets). Not
-- indexed, so flushes keep updating destinations in place (HOT).
ALTER TABLE destinations ADD COLUMN first_allowed_hour timestamptz,
                         ADD COLUMN last_allowed_hour timestamptz;

COMMENT ON COLUMN destinations.first_allowed_hour IS 'Earliest hour whose bucket had allowed flows; NULL when none did.';
COMMENT ON COLUMN destinations.last_allowed_hour IS 'Latest hour whose bucket had allowed flows.';

-- Rows stored before: from the buckets retention kept.
UPDATE destinations d
SET first_allowed_hour = h.first_hour, last_allowed_hour = h.last_hour
FROM (SELECT app_id, name, port, protocol, min(hour) AS first_hour, max(hour) AS last_hour
      FROM destination_hourly WHERE flows > dropped_flows
      GROUP BY app_id, name, port, protocol) h
WHERE d.app_id = h.app_id AND d.name = h.name AND d.port = h.port AND d.protocol = h.protocol;

-- HOT-friendly pages. A flush updates every row of its keys in one
-- transaction, so each row needs room for a second version on its own page
-- before any old version can be pruned: with 20% free (fillfactor 80) only
-- 42% of 240k updates of 10k-row flushes were HOT, the rest moved their rows
-- and inserted index entries, and the table grew to 27.7 MB; with 50% free
-- every update was HOT, the table held at 16.4 MB, and updating 10k known
-- keys took 101 ms instead of 149 ms (median of 24, same run). 45% gained
-- nothing more. Rows stored before keep their pages until updates move them
-- or VACUUM FULL rewrites the table. The writer creates new day partitions
-- of destination_hourly with the same setting.
ALTER TABLE destinations SET (fillfactor = 50);
DO $$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'destination_hourly'::regclass LOOP
        EXECUTE format('ALTER TABLE %s SET (fillfactor = 50)', part);
    END LOOP;
END
$$;
