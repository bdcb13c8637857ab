-- Rollups written, by ID, so that writing one is idempotent: a collector
-- that could not tell whether a commit landed (the connection broke before
-- its answer) retries the same rollup under the same ID, and the retry
-- finds it here and writes nothing (postgres.DB.WriteRollup). Rows are only
-- needed while such a retry can come; retention deletes them after 7 days.

CREATE TABLE rollup_ids (
    id           text        COLLATE "C" PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),
    committed_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX rollup_ids_committed_at ON rollup_ids (committed_at);

COMMENT ON TABLE rollup_ids IS 'IDs of the rollups written, so that a retry of one whose commit landed writes nothing (7 days).';
