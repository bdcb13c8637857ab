package alerts

import (
	"context"
	"time"

	"github.com/egressd/egressd"
)

// Outbox is the durable queue of deliveries the Sender works through
// (postgres.DB implements it). Every method may be called concurrently.
type Outbox interface {
	// ClaimDeliveries returns up to limit deliveries due at now (their
	// next attempt is at or before now, and no unexpired lease holds
	// them), leased to the caller until now + lease.
	ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]egressd.Delivery, error)
	// DeliverySent records that Alertmanager accepted the deliveries: the
	// lease is released and attempts reset. A firing delivery is due again
	// at nextResend; the Sender passes the zero time for resolved
	// deliveries, which are sent once and are then done.
	DeliverySent(ctx context.Context, ids []int64, sentAt, nextResend time.Time) error
	// DeliveryFailed records a failed attempt: the lease is released,
	// attempts incremented, and the deliveries are due again at next.
	DeliveryFailed(ctx context.Context, ids []int64, next time.Time, errMsg string) error
	// DeliveryDropped records that Alertmanager refused the deliveries
	// for good: they are never sent again.
	DeliveryDropped(ctx context.Context, ids []int64, errMsg string) error
}

// Trimmer is an Outbox that can bound its pending deliveries
// (postgres.DB). A Sender whose outbox is one trims it to
// Options.MaxPending every TrimInterval.
type Trimmer interface {
	// TrimDeliveries drops pending deliveries past the keep newest, the
	// oldest resolved ones first, and returns how many it dropped per
	// target URL.
	TrimDeliveries(ctx context.Context, keep int) (map[string]int, error)
}

// TrimInterval is how often a Sender bounds its outbox.
const TrimInterval = time.Minute
