package service

import (
	"context"
	"log/slog"
	"time"
)

// RetentionDB is what retention drops (postgres.DB).
type RetentionDB interface {
	// RetentionCutoff returns the time before which retention deletes:
	// period before the newest stored flow, or before now when nothing
	// is stored (postgres.DB.RetentionCutoff).
	RetentionCutoff(ctx context.Context, now time.Time, period time.Duration) (time.Time, error)
	// DropBucketsBefore drops the whole days of hourly buckets older
	// than t and returns how many.
	DropBucketsBefore(ctx context.Context, t time.Time) (int, error)
	// Prune deletes what is older than cutoff and no longer referenced
	// (old outbox rows, resolved anomalies, destinations, DNS names,
	// empty apps), logging what it did and what failed.
	Prune(ctx context.Context, cutoff time.Time, log *slog.Logger)
}

// Retention drops what is older than Keep before the newest stored flow
// (so a replayed old capture keeps its last period, and a collector stopped
// for a while finds the period before it stopped still there), at start
// and then every Interval.
type Retention struct {
	DB RetentionDB
	// Keep is how long hourly buckets are kept.
	Keep time.Duration
	// Interval is the time between two rounds (default 1 h).
	Interval time.Duration
	Log      *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Run drops and prunes until ctx ends. A failure is logged and retried at
// the next round: retention never stops the service.
func (r *Retention) Run(ctx context.Context) error {
	every := r.Interval
	if every <= 0 {
		every = time.Hour
	}
	now, log := r.Now, r.Log
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		cutoff, err := r.DB.RetentionCutoff(ctx, now(), r.Keep)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				log.Warn("retention_failed", "err", err)
			}
		default:
			if n, err := r.DB.DropBucketsBefore(ctx, cutoff); err != nil && ctx.Err() == nil {
				log.Warn("retention_failed", "err", err)
			} else if n > 0 {
				log.Info("retention_dropped_days", "days", n, "before", cutoff)
			}
			r.DB.Prune(ctx, cutoff, log)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
