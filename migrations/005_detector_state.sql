-- What the detector needs at start, besides the live window of
-- destinations, so that a restart does not change its verdicts: each app's
-- flow count per hour (the volume rule's history) and the pods each app was
-- seen with (how per-pod metrics such as cAdvisor's are summed per app).
-- Both are written in the rollup's transaction, from the rollup's hourly
-- buckets and example pods, so they are exactly as durable as the counts
-- they summarise.

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
