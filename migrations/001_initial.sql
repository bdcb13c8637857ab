-- egressd's first schema: apps, their destinations with lifetime totals,
-- hourly buckets partitioned by day, DNS questions, and collector cursors.
--
-- Every count column merges commutatively (see postgres.DB.WriteRollup), so
-- several collectors may write at once in any order. Times are timestamptz
-- and written in UTC.
--
-- Tables that every flush updates keep 20% of each page free (fillfactor
-- 80), so that an update finds room on its page and changes no index (a HOT
-- update): it halves the cost of a flush.
--
-- Text keys use the "C" collation: bytewise comparison is several times
-- cheaper in the indexes than a language collation, and sorts the way Go
-- does.

CREATE TABLE apps (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cluster    text        COLLATE "C" NOT NULL DEFAULT '',
    namespace  text        COLLATE "C" NOT NULL,
    name       text        COLLATE "C" NOT NULL,
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL,
    UNIQUE (cluster, namespace, name)
) WITH (fillfactor = 80);

COMMENT ON TABLE apps IS 'Workloads egressd learns a baseline for; first_seen starts the learning period.';
COMMENT ON COLUMN apps.cluster IS 'Cluster name; empty when egressd watches a single cluster.';

CREATE TABLE destinations (
    app_id           bigint      NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    name             text        COLLATE "C" NOT NULL,
    port             integer     NOT NULL CHECK (port BETWEEN 0 AND 65535),
    protocol         text        COLLATE "C" NOT NULL,
    first_seen       timestamptz NOT NULL,
    last_seen        timestamptz NOT NULL,
    flows            bigint      NOT NULL DEFAULT 0,
    dropped_flows    bigint      NOT NULL DEFAULT 0,
    verdicts         integer     NOT NULL DEFAULT 0,
    example_pod      text        NOT NULL DEFAULT '',
    example_pod_seen timestamptz,
    name_source      smallint    NOT NULL DEFAULT 0,
    PRIMARY KEY (app_id, name, port, protocol)
) WITH (fillfactor = 80);

COMMENT ON TABLE destinations IS 'Where each app connects outside the cluster, with lifetime totals.';
COMMENT ON COLUMN destinations.name IS 'DNS name (lower case, no trailing dot) or, when no name is known, the IP address.';
COMMENT ON COLUMN destinations.flows IS 'All flows, forwarded and denied.';
COMMENT ON COLUMN destinations.dropped_flows IS 'Flows denied by policy or failed (verdict DROPPED or ERROR).';
COMMENT ON COLUMN destinations.verdicts IS 'Bit mask of Hubble verdict numbers seen (bit 1 FORWARDED, bit 2 DROPPED, ...).';
COMMENT ON COLUMN destinations.example_pod IS 'A pod that made such a flow: the one with the latest flush that named a pod.';
COMMENT ON COLUMN destinations.example_pod_seen IS 'Last-seen time of the flush that reported example_pod; orders the choice so merges commute.';
COMMENT ON COLUMN destinations.name_source IS '1 name from the flow, 2 from a DNS answer the pod received, 3 bare IP; the lowest non-zero wins.';

-- Hourly buckets feed the rolling-window baseline and volume history. One
-- partition per UTC day, named destination_hourly_pYYYYMMDD, is created by the
-- writer when a flush needs it (with fillfactor 80: partitions do not inherit
-- storage parameters) and dropped whole by retention.
CREATE TABLE destination_hourly (
    app_id        bigint      NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    name          text        COLLATE "C" NOT NULL,
    port          integer     NOT NULL,
    protocol      text        COLLATE "C" NOT NULL,
    hour          timestamptz NOT NULL,
    flows         bigint      NOT NULL DEFAULT 0,
    dropped_flows bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (app_id, name, port, protocol, hour)
) PARTITION BY RANGE (hour);

COMMENT ON TABLE destination_hourly IS 'Flows per app, destination and UTC hour; partitioned by day, dropped by retention.';

CREATE TABLE dns_queries (
    app_id     bigint      NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    name       text        COLLATE "C" NOT NULL,
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL,
    queries    bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (app_id, name)
) WITH (fillfactor = 80);

COMMENT ON TABLE dns_queries IS 'DNS questions each app asked; a name only queried is not a destination.';

CREATE TABLE collector_cursors (
    source     text        COLLATE "C" PRIMARY KEY,
    -- Flow times have nanoseconds, timestamptz only microseconds: resuming
    -- from a rounded time would count the last flows again.
    time_ns    bigint      NOT NULL,
    time       timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE collector_cursors IS 'Newest stored flow time per flow source (time_ns exact, time for people); a collector resumes from it after a restart.';
