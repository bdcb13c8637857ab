package service

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/baseline"
)

// RefreshDB is what a refresh reads and resolves (postgres.DB).
type RefreshDB interface {
	AcceptedAll(ctx context.Context) ([]egressd.Accepted, error)
	OutboxDepth(ctx context.Context) (map[string]int, error)
	ExpireNovel(ctx context.Context, before, at time.Time) (int, error)
}

// Judge is what a refresh tells the detector (detector.Detector).
type Judge interface {
	SetAccepted(acc []egressd.Accepted)
	SetBaselines(bs []egressd.Baseline)
}

// Refresher rereads what changes while the service runs: accepted
// destinations and the committed baseline files (for the detector), the
// outbox depth (a metric), and resolves novel-destination alerts nobody
// accepted within AlertTTL.
type Refresher struct {
	DB       RefreshDB
	Detector Judge
	// BaselineDir holds the committed baseline files; "" means none.
	BaselineDir string
	// AlertTTL resolves unaccepted novel-destination alerts older than
	// it; 0 never does.
	AlertTTL time.Duration
	// Interval is the time between two refreshes.
	Interval time.Duration
	// Wake, when set, is called when alerts were resolved (the alert
	// sender's Wake).
	Wake func()
	// OutboxPending, when set, receives the outbox depth per state.
	OutboxPending *prometheus.GaugeVec
	// Log defaults to discarding.
	Log *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Sync, when set, runs at every refresh after the rest: per-node
	// mode loads what other collectors stored there.
	Sync func(ctx context.Context) error

	now chan struct{}
}

// NewRefresher returns a Refresher with its trigger and defaults ready;
// set the fields it needs before Run.
func NewRefresher() *Refresher {
	return &Refresher{Log: slog.New(slog.DiscardHandler), Now: time.Now, now: make(chan struct{}, 1)}
}

// Trigger asks for a refresh now rather than at the next interval (after
// a destination was accepted). It never blocks.
func (r *Refresher) Trigger() {
	select {
	case r.now <- struct{}{}:
	default:
	}
}

// Refresh rereads everything once. The baseline files that load are used
// even when others are broken; those are logged.
func (r *Refresher) Refresh(ctx context.Context) error {
	acc, err := r.DB.AcceptedAll(ctx)
	if err != nil {
		return err
	}
	r.Detector.SetAccepted(acc)
	if r.BaselineDir != "" {
		bs, err := baseline.LoadDir(r.BaselineDir)
		if err != nil {
			r.Log.Warn("baseline_dir_errors", "dir", r.BaselineDir, "err", err)
		}
		r.Detector.SetBaselines(bs)
	}
	depth, err := r.DB.OutboxDepth(ctx)
	if err != nil {
		return err
	}
	if r.OutboxPending != nil {
		for state, n := range depth {
			r.OutboxPending.WithLabelValues(state).Set(float64(n))
		}
	}
	if r.AlertTTL > 0 {
		now := r.Now()
		n, err := r.DB.ExpireNovel(ctx, now.Add(-r.AlertTTL), now)
		if err != nil {
			return err
		}
		if n > 0 {
			r.Log.Info("novel_alerts_expired", "count", n)
			if r.Wake != nil {
				r.Wake()
			}
		}
	}
	if r.Sync != nil {
		return r.Sync(ctx)
	}
	return nil
}

// Run refreshes every Interval, and at each Trigger, until ctx ends. A
// failed refresh is logged and tried again at the next one.
func (r *Refresher) Run(ctx context.Context) error {
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-r.now:
		}
		if err := r.Refresh(ctx); err != nil && ctx.Err() == nil {
			r.Log.Warn("refresh_failed", "err", err)
		}
	}
}
