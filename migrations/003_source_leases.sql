-- One active collector per flow source. Every `egressd serve` replica reads
-- the whole stream of its Hubble source, so only the holder of the source's
-- lease streams and writes rollups; the others wait as hot standbys.
--
-- Expiry is judged by PostgreSQL's clock (clock_timestamp()), never a
-- replica's. token grows with every acquisition: a rollup is written only
-- in a transaction that has locked this row and found the writer's holder
-- and token in it (postgres.DB.WriteRollupFenced), so a replica that lost
-- the lease can never add its counts after another took over.

CREATE TABLE source_leases (
    source      text        COLLATE "C" PRIMARY KEY,
    holder      text        NOT NULL CHECK (length(holder) BETWEEN 1 AND 256),
    token       bigint      NOT NULL,
    acquired_at timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);

COMMENT ON TABLE source_leases IS 'Which egressd replica collects each flow source (same key as collector_cursors.source), until expires_at (database clock).';
COMMENT ON COLUMN source_leases.holder IS 'Replica id of the holder (host name and a random suffix).';
COMMENT ON COLUMN source_leases.token IS 'Fencing token: incremented at each acquisition; rollups are written only under the current one.';
