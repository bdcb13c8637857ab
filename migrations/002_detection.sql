-- Detection: anomalies (each stored once, under its fingerprint), the alert
-- outbox that delivers them to every configured Alertmanager, and the
-- destinations an operator accepted.
--
-- Replicas share these tables: an anomaly's INSERT ... ON CONFLICT DO NOTHING
-- decides which replica creates it and its deliveries, and senders claim
-- deliveries with FOR UPDATE SKIP LOCKED and a lease (see postgres.DB).

CREATE TABLE anomalies (
    fingerprint     text        COLLATE "C" PRIMARY KEY CHECK (length(fingerprint) BETWEEN 1 AND 128),
    kind            text        COLLATE "C" NOT NULL CHECK (length(kind) BETWEEN 1 AND 64),
    app_id          bigint      NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    destination     text        COLLATE "C" NOT NULL DEFAULT '',
    port            integer     NOT NULL DEFAULT 0 CHECK (port BETWEEN 0 AND 65535),
    protocol        text        COLLATE "C" NOT NULL DEFAULT '',
    started_at      timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL,
    pod             text        NOT NULL DEFAULT '',
    node            text        NOT NULL DEFAULT '',
    verdict         smallint    NOT NULL DEFAULT 0,
    name_source     smallint    NOT NULL DEFAULT 0,
    baseline_source text        NOT NULL DEFAULT '',
    summary         text        NOT NULL DEFAULT '',
    details         jsonb       NOT NULL DEFAULT '{}',
    resolved_at     timestamptz
);

COMMENT ON TABLE anomalies IS 'What the detector raised, once per fingerprint however many replicas saw it; resolved_at is NULL while it fires.';
COMMENT ON COLUMN anomalies.kind IS 'novel_destination, novel_destination_flood, egress_volume, ...';
COMMENT ON COLUMN anomalies.destination IS 'Novel destination name or IP; for a flood the common parent domain; empty for volume anomalies.';
COMMENT ON COLUMN anomalies.started_at IS 'When the anomaly started, in flow time.';
COMMENT ON COLUMN anomalies.recorded_at IS 'When the first replica stored it, in wall time.';
COMMENT ON COLUMN anomalies.verdict IS 'Hubble verdict number of the flow that raised it (1 FORWARDED, 2 DROPPED, ...).';
COMMENT ON COLUMN anomalies.name_source IS '1 name from the flow, 2 from a DNS answer the pod received, 3 bare IP.';
COMMENT ON COLUMN anomalies.baseline_source IS 'What the destination was compared with: files, window or none.';
COMMENT ON COLUMN anomalies.details IS 'Kind-specific string values (flow counts, rates, flood members); length-bounded by the writer.';

-- Listing, newest first, and its keyset pagination.
CREATE INDEX anomalies_started_idx ON anomalies (started_at DESC, fingerprint DESC);
-- One app's anomalies; also the foreign key's index.
CREATE INDEX anomalies_app_idx ON anomalies (app_id, started_at DESC);
-- Firing anomalies are few (they expire); expiry and "firing" listings read
-- only them.
CREATE INDEX anomalies_firing_idx ON anomalies (started_at) WHERE resolved_at IS NULL;

-- One row per anomaly and Alertmanager. A row moves
--   firing -> (resolved -> done) | dropped
-- firing rows are sent again every resend interval, a resolved row once.
-- leased_until marks a row a sender has claimed; claimed_state is the state
-- it was claimed in, so that a firing send that completes after the anomaly
-- resolved does not mark the resolve as sent.
CREATE TABLE alert_outbox (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    fingerprint     text        COLLATE "C" NOT NULL REFERENCES anomalies (fingerprint) ON DELETE CASCADE,
    target          text        COLLATE "C" NOT NULL CHECK (target <> ''),
    state           text        COLLATE "C" NOT NULL CHECK (state IN ('firing', 'resolved', 'done', 'dropped')),
    next_attempt_at timestamptz NOT NULL,
    leased_until    timestamptz,
    claimed_state   text        COLLATE "C" CHECK (claimed_state IN ('firing', 'resolved')),
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text        NOT NULL DEFAULT '',
    last_sent_at    timestamptz,
    UNIQUE (fingerprint, target)
) WITH (fillfactor = 80);

COMMENT ON TABLE alert_outbox IS 'Pending and past deliveries of anomalies to Alertmanagers (target: base URL).';
COMMENT ON COLUMN alert_outbox.attempts IS 'Failed attempts since the last successful send.';
COMMENT ON COLUMN alert_outbox.last_error IS 'Error of the last failed attempt (at most 1 KiB).';

-- Claiming reads due rows in order; done and dropped rows, the bulk of the
-- table over time, are not in the index.
CREATE INDEX alert_outbox_due_idx ON alert_outbox (next_attempt_at, id) WHERE state IN ('firing', 'resolved');

-- Keyed by the app's names rather than apps.id: accepting a destination for
-- an app that has not been seen yet must not create its apps row, whose
-- first_seen starts the learning period.
CREATE TABLE accepted_destinations (
    cluster     text        COLLATE "C" NOT NULL DEFAULT '',
    namespace   text        COLLATE "C" NOT NULL,
    app         text        COLLATE "C" NOT NULL,
    name        text        COLLATE "C" NOT NULL,
    port        integer     NOT NULL CHECK (port BETWEEN 0 AND 65535),
    protocol    text        COLLATE "C" NOT NULL,
    accepted_by text        NOT NULL DEFAULT '',
    accepted_at timestamptz NOT NULL,
    PRIMARY KEY (cluster, namespace, app, name, port, protocol)
);

COMMENT ON TABLE accepted_destinations IS 'Destinations an operator accepted for an app: part of its baseline from then on.';
COMMENT ON COLUMN accepted_destinations.port IS '0 means every port.';
COMMENT ON COLUMN accepted_destinations.protocol IS 'TCP, UDP, ...; ANY means every protocol.';

-- The detector's known destinations: those with allowed traffic within the
-- window. The hourly buckets answer exactly but cost a scan of every bucket
-- of the window (millions of rows for 100k destinations over 7 days);
-- last_allowed answers from one row per destination. It is the last_seen of
-- the latest flush that had allowed flows (precise to a flush interval) and
-- has no index, so flushes keep updating destinations in place (HOT).
ALTER TABLE destinations ADD COLUMN last_allowed timestamptz;
-- Rows stored before: their last_seen, when they ever had allowed flows.
UPDATE destinations SET last_allowed = last_seen WHERE flows > dropped_flows;

COMMENT ON COLUMN destinations.last_allowed IS 'last_seen of the latest flush with allowed (not denied) flows; NULL when only denied.';
