package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/egressd/egressd"
)

// DeliveryState is where a delivery is in its life:
//
//	firing ──ResolveAnomaly──> resolved ──DeliverySent──> done
//	  │                          │
//	  └──────DeliveryDropped─────┴──> dropped
//
// Firing deliveries are sent again every resend interval while the anomaly
// fires; a resolved one is sent once.
type DeliveryState string

// Delivery states, as the alert_outbox.state column spells them.
const (
	DeliveryFiring   DeliveryState = "firing"
	DeliveryResolved DeliveryState = "resolved"
	DeliveryDone     DeliveryState = "done"
	DeliveryDropped  DeliveryState = "dropped"
)

// MaxClaim is the most deliveries one ClaimDeliveries call returns.
const MaxClaim = 1000

// ClaimDeliveries leases up to limit deliveries that are due at now (firing
// or resolved, next attempt at or before now, not leased or with a lease
// that ended at or before now) until now+lease, and returns them with their
// anomalies, the longest due first.
//
// Claims are atomic: concurrent callers, in this process or in other
// replicas, never get the same delivery while its lease lasts (the rows are
// picked with FOR UPDATE SKIP LOCKED, so a claimer never waits for
// another). The claimer reports each delivery back with DeliverySent,
// DeliveryFailed or DeliveryDropped, which end the lease; one that does not
// report within the lease (a crash) has its deliveries claimed again. A
// sender should give up on a send before its lease ends: a report after
// another claimer took the delivery over is taken as that claimer's.
func (db *DB) ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]egressd.Delivery, error) {
	if lease <= 0 {
		return nil, egressd.Errorf(egressd.EINVALID, "claim deliveries: lease must be > 0, got %s", lease)
	}
	if limit <= 0 {
		return nil, egressd.Errorf(egressd.EINVALID, "claim deliveries: limit must be > 0, got %d", limit)
	}
	limit = min(limit, MaxClaim)
	rows, err := db.pool.Query(ctx, `
WITH due AS (
    SELECT id FROM alert_outbox
    WHERE state IN ('firing', 'resolved') AND next_attempt_at <= $1
      AND (leased_until IS NULL OR leased_until <= $1)
    ORDER BY next_attempt_at, id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE alert_outbox o SET leased_until = $2, claimed_state = o.state
    FROM due WHERE o.id = due.id
    RETURNING o.id, o.target, o.state, o.attempts, o.next_attempt_at, o.fingerprint
)
SELECT c.id, c.target, c.state, c.attempts, `+anomalyColumns+`
FROM claimed c
JOIN anomalies a ON a.fingerprint = c.fingerprint
JOIN apps p ON p.id = a.app_id
ORDER BY c.next_attempt_at, c.id`, now, now.Add(lease), limit)
	if err != nil {
		return nil, wrap(err, "claim deliveries")
	}
	var (
		out   []egressd.Delivery
		d     egressd.Delivery
		state string
		s     anomalyScan
	)
	_, err = pgx.ForEachRow(rows, append([]any{&d.ID, &d.Target, &state, &d.Attempts}, s.dest()...), func() error {
		d.Resolved = state == string(DeliveryResolved)
		d.Anomaly = s.anomaly()
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, wrap(err, "claim deliveries")
	}
	return out, nil
}

// DeliverySent records that the deliveries ids were accepted by their
// Alertmanagers at sentAt and ends their leases. A firing delivery is due
// again at nextResend, with its attempts and error cleared. A resolved
// delivery that was claimed resolved is done. One that was claimed firing
// and resolved while it was sent stays resolved and due: its resolve has not
// gone out yet. Deliveries already done or dropped are left alone.
func (db *DB) DeliverySent(ctx context.Context, ids []int64, sentAt, nextResend time.Time) error {
	return db.updatePending(ctx, "sent", ids, `
    state = CASE WHEN o.state = 'resolved' AND o.claimed_state = 'resolved' THEN 'done' ELSE o.state END,
    next_attempt_at = CASE WHEN o.state = 'firing' THEN $3 ELSE o.next_attempt_at END,
    attempts = 0, last_error = '', last_sent_at = $2, leased_until = NULL, claimed_state = NULL`,
		sentAt, nextResend)
}

// DeliveryFailed records a failed attempt at the deliveries ids (the
// Alertmanager was unreachable or answered 5xx): it counts the attempt,
// keeps errMsg (at most MaxErrorLen bytes), ends the leases and makes them
// due again at next. Deliveries already done or dropped are left alone.
func (db *DB) DeliveryFailed(ctx context.Context, ids []int64, next time.Time, errMsg string) error {
	return db.updatePending(ctx, "failed", ids, `
    attempts = o.attempts + 1, next_attempt_at = $2, last_error = $3,
    leased_until = NULL, claimed_state = NULL`,
		next, bound(errMsg, MaxErrorLen))
}

// DeliveryDropped gives up on the deliveries ids for good (the Alertmanager
// refused the alerts themselves, with 400, 413 or 422: sending them again
// would fail the same way), keeping errMsg (at most MaxErrorLen bytes). Deliveries already done
// or dropped are left alone.
func (db *DB) DeliveryDropped(ctx context.Context, ids []int64, errMsg string) error {
	return db.updatePending(ctx, "dropped", ids, `
    state = 'dropped', last_error = $2, leased_until = NULL, claimed_state = NULL`,
		bound(errMsg, MaxErrorLen))
}

// updatePending applies set (a fixed SQL SET list, never input, whose
// parameters start at $2) to the pending deliveries among ids, locking them
// in id order so concurrent senders and resolvers never deadlock.
// Deliveries already done or dropped are left alone.
func (db *DB) updatePending(ctx context.Context, what string, ids []int64, set string, args ...any) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := db.pool.Exec(ctx, `
WITH locked AS (
    SELECT id FROM alert_outbox
    WHERE id = ANY($1) AND state IN ('firing', 'resolved')
    ORDER BY id
    FOR UPDATE
)
UPDATE alert_outbox o SET`+set+`
FROM locked WHERE o.id = locked.id`, append([]any{ids}, args...)...)
	if err != nil {
		return wrap(err, "record %d deliveries %s", len(ids), what)
	}
	return nil
}

// OutboxDepth returns the number of pending deliveries by state: the keys
// "firing" and "resolved" are always present. Done and dropped deliveries
// are not counted.
func (db *DB) OutboxDepth(ctx context.Context) (map[string]int, error) {
	rows, err := db.pool.Query(ctx, `
SELECT state, count(*) FROM alert_outbox
WHERE state IN ('firing', 'resolved')
GROUP BY state`)
	if err != nil {
		return nil, wrap(err, "count pending deliveries")
	}
	depth := map[string]int{string(DeliveryFiring): 0, string(DeliveryResolved): 0}
	var (
		state string
		n     int64
	)
	_, err = pgx.ForEachRow(rows, []any{&state, &n}, func() error {
		depth[state] = int(n)
		return nil
	})
	if err != nil {
		return nil, wrap(err, "count pending deliveries")
	}
	return depth, nil
}

// DeliveryStatus is the stored state of one delivery, for operators and
// tests.
type DeliveryStatus struct {
	ID            int64
	Target        string
	State         DeliveryState
	NextAttemptAt time.Time
	// LeasedUntil is zero when no sender holds the delivery.
	LeasedUntil time.Time
	Attempts    int
	LastError   string
	// LastSentAt is zero until an Alertmanager accepted it once.
	LastSentAt time.Time
}

// Deliveries returns the deliveries of the anomaly fingerprint, sorted by
// target; none for an unknown fingerprint.
func (db *DB) Deliveries(ctx context.Context, fingerprint string) ([]DeliveryStatus, error) {
	rows, err := db.pool.Query(ctx, `
SELECT id, target, state, next_attempt_at, leased_until, attempts, last_error, last_sent_at
FROM alert_outbox WHERE fingerprint = $1 ORDER BY target`, fingerprint)
	if err != nil {
		return nil, wrap(err, "read deliveries of %s", fingerprint)
	}
	var (
		out          []DeliveryStatus
		d            DeliveryStatus
		state        string
		leased, sent *time.Time
	)
	_, err = pgx.ForEachRow(rows, []any{&d.ID, &d.Target, &state, &d.NextAttemptAt, &leased, &d.Attempts, &d.LastError, &sent}, func() error {
		d.State = DeliveryState(state)
		d.NextAttemptAt = d.NextAttemptAt.UTC()
		d.LeasedUntil, d.LastSentAt = utcOrZero(leased), utcOrZero(sent)
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, wrap(err, "read deliveries of %s", fingerprint)
	}
	return out, nil
}

func utcOrZero(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// TrimDeliveries bounds the pending deliveries (firing or resolved) to keep:
// past it, it drops the oldest resolved deliveries first (Alertmanager ends
// an alert it has by itself at its endsAt, and one it never had needs no
// resolve), then the oldest firing ones, with the error "outbox full", and
// returns how many it dropped per target URL. Rows locked by a concurrent
// update are skipped, and so kept, this time; a delivery a sender has
// claimed may be dropped, and its outcome is then ignored. The bound holds
// the table, and the senders' memory, while an Alertmanager is unreachable
// for days.
func (db *DB) TrimDeliveries(ctx context.Context, keep int) (map[string]int, error) {
	if keep < 0 {
		return nil, egressd.Errorf(egressd.EINVALID, "trim deliveries: keep must be >= 0, got %d", keep)
	}
	rows, err := db.pool.Query(ctx, `
WITH excess AS (
    SELECT id FROM alert_outbox
    WHERE state IN ('firing', 'resolved')
    ORDER BY state = 'resolved', id DESC
    OFFSET $1
), locked AS (
    SELECT o.id FROM alert_outbox o JOIN excess USING (id)
    WHERE o.state IN ('firing', 'resolved')
    ORDER BY o.id
    FOR UPDATE OF o SKIP LOCKED
)
UPDATE alert_outbox o SET state = 'dropped', last_error = 'outbox full', leased_until = NULL, claimed_state = NULL
FROM locked WHERE o.id = locked.id
RETURNING o.target`, keep)
	if err != nil {
		return nil, wrap(err, "trim deliveries to %d", keep)
	}
	dropped := map[string]int{}
	var target string
	_, err = pgx.ForEachRow(rows, []any{&target}, func() error {
		dropped[target]++
		return nil
	})
	if err != nil {
		return nil, wrap(err, "trim deliveries to %d", keep)
	}
	return dropped, nil
}
