package postgres

import (
	"context"
	"log/slog"
	"time"
)

// pruneBatch is the most rows one DELETE of PruneBefore removes: each batch
// is its own short transaction, so a prune of millions of rows (a DNS
// tunnel's names) never holds locks that flushes wait for.
const pruneBatch = 10_000

// Pruned counts what PruneBefore deleted.
type Pruned struct {
	Deliveries   int64 // done or dropped outbox rows
	Anomalies    int64 // resolved anomalies, with their deliveries
	Destinations int64
	DNSQueries   int64
	Apps         int64
	RollupIDs    int64 // of rollups written more than 7 days ago
	// AppHistory counts app hours, app pods and DNS answers (what a
	// restart reloads) older than cutoff.
	AppHistory int64
}

// Total is the number of rows deleted.
func (p Pruned) Total() int64 {
	return p.Deliveries + p.Anomalies + p.Destinations + p.DNSQueries + p.Apps + p.RollupIDs + p.AppHistory
}

// PruneBefore is the rest of retention, after DropBucketsBefore: it deletes
// what has not moved since before cutoff, so that the database stays
// bounded by what happened within the retention period, whatever came
// before (a DNS tunnel's million names, years of resolved anomalies):
//
//   - outbox rows that are done or dropped, last sent (or due) before cutoff;
//   - anomalies resolved before cutoff that have no delivery pending, with
//     their outbox rows. A novel destination's fingerprint can then be raised
//     again: it was unseen for the whole retention period, so it is novel
//     again;
//   - destinations last seen before cutoff, unless an operator accepted
//     them (accepted_destinations, which retention never touches, keeps the
//     acceptance itself), and DNS questions last asked before cutoff;
//   - apps last seen before cutoff with nothing left: no destination, DNS
//     question, hourly bucket or anomaly. One that comes back starts a new
//     learning period;
//   - app hours and app pods (the detector's volume history and pod map),
//     pods' label sets and the resolvers apps asked, and Hubble's lost
//     events, from before cutoff, and DNS answers (the collector's DNS cache)
//     expired before cutoff or a day before the newest stored flow;
//   - the IDs of rollups written more than 7 days ago (or before cutoff,
//     if later): a retry of a flush whose commit landed comes within
//     minutes.
//
// Each step deletes in batches of its own transactions; a failure leaves
// what was deleted deleted, and the next round goes on.
func (db *DB) PruneBefore(ctx context.Context, cutoff time.Time) (Pruned, error) {
	var p Pruned
	steps := []struct {
		what string
		n    *int64
		sql  string
	}{
		{"done deliveries", &p.Deliveries, `
DELETE FROM alert_outbox WHERE id IN (
    SELECT id FROM alert_outbox
    WHERE state IN ('done', 'dropped') AND coalesce(last_sent_at, next_attempt_at) < $1
    LIMIT $2)`},
		{"resolved anomalies", &p.Anomalies, `
DELETE FROM anomalies WHERE fingerprint IN (
    SELECT a.fingerprint FROM anomalies a
    WHERE a.resolved_at < $1
      AND NOT EXISTS (SELECT 1 FROM alert_outbox o
                      WHERE o.fingerprint = a.fingerprint AND o.state IN ('firing', 'resolved'))
    LIMIT $2)`},
		{"destinations", &p.Destinations, `
DELETE FROM destinations WHERE ctid IN (
    SELECT d.ctid FROM destinations d JOIN apps p ON p.id = d.app_id
    WHERE d.last_seen < $1
      AND NOT EXISTS (SELECT 1 FROM accepted_destinations x
                      WHERE x.namespace = p.namespace AND x.app = p.name AND x.name = d.name
                        AND (x.cluster = '' OR x.cluster = p.cluster)
                        AND (x.port = 0 OR x.port = d.port)
                        AND (x.protocol = 'ANY' OR x.protocol = d.protocol))
    LIMIT $2)`},
		{"app hours", &p.AppHistory, olderThan("app_hourly", "hour")},
		{"app pods", &p.AppHistory, olderThan("app_pods", "last_seen")},
		{"app label sets", &p.AppHistory, olderThan("app_label_sets", "last_seen")},
		{"app resolvers", &p.AppHistory, olderThan("app_resolvers", "last_seen")},
		{"lost events", &p.AppHistory, olderThan("hubble_lost_events", "time")},
		{"dns answers", &p.AppHistory, `
DELETE FROM dns_answers WHERE ctid IN (
    SELECT ctid FROM dns_answers
    WHERE expires_at < greatest($1, (SELECT max(last_seen) FROM apps) - interval '1 day')
    LIMIT $2)`},
		{"DNS questions", &p.DNSQueries, olderThan("dns_queries", "last_seen")},
		{"apps", &p.Apps, `
DELETE FROM apps WHERE id IN (
    SELECT p.id FROM apps p
    WHERE p.last_seen < $1
      AND NOT EXISTS (SELECT 1 FROM destinations d WHERE d.app_id = p.id)
      AND NOT EXISTS (SELECT 1 FROM dns_queries q WHERE q.app_id = p.id)
      AND NOT EXISTS (SELECT 1 FROM destination_hourly h WHERE h.app_id = p.id)
      AND NOT EXISTS (SELECT 1 FROM anomalies a WHERE a.app_id = p.id)
    LIMIT $2)`},
		{"rollup ids", &p.RollupIDs, `
DELETE FROM rollup_ids WHERE id IN (
    SELECT id FROM rollup_ids WHERE committed_at < greatest($1, now() - interval '7 days') LIMIT $2)`},
	}
	for _, s := range steps {
		for {
			tag, err := db.pool.Exec(ctx, s.sql, cutoff, pruneBatch)
			if err != nil {
				return p, wrap(err, "prune %s before %s", s.what, cutoff.UTC().Format(time.RFC3339))
			}
			*s.n += tag.RowsAffected()
			if tag.RowsAffected() < pruneBatch {
				break
			}
		}
	}
	return p, nil
}

// olderThan is the batch of a step that deletes table's rows whose column
// is before the cutoff ($1), at most $2 of them.
func olderThan(table, column string) string {
	return "DELETE FROM " + table + " WHERE ctid IN (SELECT ctid FROM " + table +
		" WHERE " + column + " < $1 LIMIT $2)"
}

// Prune runs PruneBefore and logs its outcome: for the retention loop,
// which never stops the service for a failed round (the next one goes on).
func (db *DB) Prune(ctx context.Context, cutoff time.Time, log *slog.Logger) {
	p, err := db.PruneBefore(ctx, cutoff)
	switch {
	case err != nil && ctx.Err() == nil:
		log.Warn("retention_prune_failed", "err", err)
	case p.Total() > 0:
		log.Info("retention_pruned", "before", cutoff, "deliveries", p.Deliveries, "anomalies", p.Anomalies,
			"destinations", p.Destinations, "dns_queries", p.DNSQueries, "apps", p.Apps, "rollup_ids", p.RollupIDs, "app_history", p.AppHistory)
	}
}
