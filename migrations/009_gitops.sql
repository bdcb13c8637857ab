-- What policy generation needs to know of each app's pods: the label sets
-- they carried (without per-rollout labels; bounded per app by the
-- collector) and the DNS servers they asked. Both are written in the
-- rollup's transaction and pruned with the rest of the app's history.

CREATE TABLE app_label_sets (
    app_id     bigint      NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    -- The set as "key=value" lines sorted by key, each ending with a
    -- newline: labels never hold one.
    labels     text        COLLATE "C" NOT NULL,
    -- Where the app's name came from: workload, label:KEY or pod.
    name_from  text        COLLATE "C" NOT NULL,
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL,
    PRIMARY KEY (app_id, labels)
) WITH (fillfactor = 80);

COMMENT ON TABLE app_label_sets IS 'Label sets of each app''s pods: what a CiliumNetworkPolicy endpointSelector can select the app by.';

CREATE TABLE app_resolvers (
    app_id    bigint      NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    kind      text        COLLATE "C" NOT NULL CHECK (kind IN ('cluster', 'node-local', 'external')),
    addr      text        COLLATE "C" NOT NULL,
    last_seen timestamptz NOT NULL,
    PRIMARY KEY (app_id, kind, addr)
) WITH (fillfactor = 80);

COMMENT ON TABLE app_resolvers IS 'DNS servers each app''s pods asked: what the DNS rule of its policy allows.';

-- Hubble's lost_events records (ring buffer overflows and the like): flows
-- no collector saw. One row per record, identified by node, time and
-- buffer, so a replayed record counts once. Exports and checks sum them per
-- node over their window to say when a baseline may be incomplete.
CREATE TABLE hubble_lost_events (
    node   text        COLLATE "C" NOT NULL,
    time   timestamptz NOT NULL,
    source text        COLLATE "C" NOT NULL,
    events bigint      NOT NULL CHECK (events > 0),
    PRIMARY KEY (node, time, source)
);

CREATE INDEX hubble_lost_events_time ON hubble_lost_events (time);

COMMENT ON TABLE hubble_lost_events IS 'Hubble lost_events records per node: where a window misses flows.';
