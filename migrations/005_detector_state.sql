-- What a restarted process needs, besides the live window of destinations,
-- so that a restart does not change its verdicts: each app's flow count per
-- hour (the volume rule's history), the pods each app was seen with (how
-- per-pod metrics such as cAdvisor's are summed per app), and the DNS
-- answers pods received (how their next connections are named). All are
-- written in the rollup's transaction, so they are exactly as durable as
-- the counts they go with.

-- One row per app and hour: the sum of the app's destination_hourly rows,
-- which the volume rule would otherwise read by scanning every
-- destination's bucket of the last day (tens of seconds at a million
-- destinations).
CREATE TABLE app_hourly (
    app_id bigint      NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    hour   timestamptz NOT NULL,
    flows  bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (app_id, hour)
) WITH (fillfactor = 80);

COMMENT ON TABLE app_hourly IS 'Flows (all verdicts) per app and UTC hour: the volume rule''s history after a restart.';

INSERT INTO app_hourly (app_id, hour, flows)
SELECT app_id, hour, sum(flows) FROM destination_hourly GROUP BY app_id, hour;

-- The pods an app's flows came from, as example pods of its destinations,
-- with when each was last reported.
CREATE TABLE app_pods (
    app_id    bigint      NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    pod       text        COLLATE "C" NOT NULL,
    last_seen timestamptz NOT NULL,
    PRIMARY KEY (app_id, pod)
) WITH (fillfactor = 80);

COMMENT ON TABLE app_pods IS 'Pods seen egressing for each app (the namespace is the app''s): which app a per-pod metric belongs to after a restart.';

INSERT INTO app_pods (app_id, pod, last_seen)
SELECT app_id, example_pod, max(coalesce(example_pod_seen, last_seen))
FROM destinations WHERE example_pod <> '' GROUP BY app_id, example_pod;

-- The DNS answers pods received, newest per (pod, address): a connection
-- that follows an answer is named after it (the collector's DNS cache), and
-- after a restart the cache is loaded from here, so that a restart between
-- an answer and its connection names the connection the same way.
CREATE TABLE dns_answers (
    namespace  text        COLLATE "C" NOT NULL,
    pod        text        COLLATE "C" NOT NULL,
    addr       text        COLLATE "C" NOT NULL,
    name       text        COLLATE "C" NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (namespace, pod, addr)
) WITH (fillfactor = 80);

COMMENT ON TABLE dns_answers IS 'Address -> name per pod from the DNS answers it received, until expires_at (flow time, answer TTL); the one expiring last wins.';
