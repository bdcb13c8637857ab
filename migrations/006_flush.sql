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

COMMENT ON FUNCTION apps_delete_rows() IS 'Deletes the destinations, hourly buckets and DNS questions of deleted apps (in place of ON DELETE CASCADE, migration 006).';

CREATE TRIGGER apps_delete_rows AFTER DELETE ON apps
    REFERENCING OLD TABLE AS deleted_apps
    FOR EACH STATEMENT EXECUTE FUNCTION apps_delete_rows();
