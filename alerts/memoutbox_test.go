package alerts_test

import (
	"context"
	"sync"
	"time"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/alerts"
)

// memOutbox is a small in-memory outbox with the semantics the Sender
// expects of PostgreSQL's: due times, leases, attempts, and resolution of
// a delivery that may be in flight.
type memOutbox struct {
	mu      sync.Mutex
	rows    []*memRow // by ID - 1
	changed chan struct{}
}

// memRow is one delivery and its bookkeeping.
type memRow struct {
	D          egressd.Delivery
	Next       time.Time // due at
	LeaseUntil time.Time
	Done       bool // resolved and sent, or dropped
	Dropped    bool
	Sent       int       // successful posts
	SentAt     time.Time // wall clock of the last DeliverySent
	Failed     int       // failed attempts, in total
	LastErr    string
	// resolvedWhileLeased: the anomaly resolved while a claim of its
	// firing state was in flight; that claim's success must not push the
	// resolution back by a resend interval.
	resolvedWhileLeased bool
}

var _ alerts.Outbox = (*memOutbox)(nil)

func newMemOutbox() *memOutbox {
	return &memOutbox{changed: make(chan struct{})}
}

// notify wakes waiters; call with mu held.
func (o *memOutbox) notify() {
	close(o.changed)
	o.changed = make(chan struct{})
}

// Add queues a firing delivery of a to target, due at once, and returns its
// ID.
func (o *memOutbox) Add(target string, a egressd.Anomaly) int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	id := int64(len(o.rows) + 1)
	o.rows = append(o.rows, &memRow{D: egressd.Delivery{ID: id, Target: target, Anomaly: a}})
	o.notify()
	return id
}

// Resolve marks the anomaly of delivery id resolved at: the delivery is due
// at once, to be sent once more.
func (o *memOutbox) Resolve(id int64, at time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	r := o.rows[id-1]
	r.D.Resolved = true
	r.D.Anomaly.ResolvedAt = at
	r.Next = time.Time{}
	r.Done = false
	r.resolvedWhileLeased = r.LeaseUntil.After(at)
	o.notify()
}

// Row returns a copy of delivery id's row.
func (o *memOutbox) Row(id int64) memRow {
	o.mu.Lock()
	defer o.mu.Unlock()
	return *o.rows[id-1]
}

// WaitRow returns delivery id's row once cond holds for it, or ctx's error.
func (o *memOutbox) WaitRow(ctx context.Context, id int64, cond func(memRow) bool) (memRow, error) {
	for {
		o.mu.Lock()
		r, changed := *o.rows[id-1], o.changed
		o.mu.Unlock()
		if cond(r) {
			return r, nil
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-changed:
		}
	}
}

func (o *memOutbox) ClaimDeliveries(_ context.Context, now time.Time, lease time.Duration, limit int) ([]egressd.Delivery, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []egressd.Delivery
	for _, r := range o.rows {
		if len(out) == limit {
			break
		}
		if r.Done || r.Next.After(now) || r.LeaseUntil.After(now) {
			continue
		}
		r.LeaseUntil = now.Add(lease)
		r.resolvedWhileLeased = false
		out = append(out, r.D)
	}
	return out, nil
}

func (o *memOutbox) DeliverySent(_ context.Context, ids []int64, _, nextResend time.Time) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, id := range ids {
		r := o.rows[id-1]
		r.Sent++
		r.SentAt = time.Now()
		r.LeaseUntil = time.Time{}
		r.D.Attempts = 0
		switch {
		case r.resolvedWhileLeased:
			// The firing state was sent; the resolution is still due.
			r.resolvedWhileLeased = false
		case nextResend.IsZero():
			r.Done = true
		default:
			r.Next = nextResend
		}
	}
	o.notify()
	return nil
}

func (o *memOutbox) DeliveryFailed(_ context.Context, ids []int64, next time.Time, errMsg string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, id := range ids {
		r := o.rows[id-1]
		r.Failed++
		r.D.Attempts++
		r.LeaseUntil = time.Time{}
		r.Next = next
		r.LastErr = errMsg
	}
	o.notify()
	return nil
}

func (o *memOutbox) DeliveryDropped(_ context.Context, ids []int64, errMsg string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, id := range ids {
		r := o.rows[id-1]
		r.LeaseUntil = time.Time{}
		r.Done, r.Dropped = true, true
		r.LastErr = errMsg
	}
	o.notify()
	return nil
}
