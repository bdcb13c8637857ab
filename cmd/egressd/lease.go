package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/postgres"
)

// One active collector per Hubble source. Every replica of `egressd serve`
// would read the whole stream of its source, and each would add the same
// flows to the counts; so a replica streams only while it holds the
// source's lease in PostgreSQL (postgres.Lease), and the others wait as hot
// standbys, serving the API, /metrics and the alert sender (whose outbox is
// leased per row) meanwhile.
//
// A term is one holding of the lease: acquire, read the cursor, stream
// with a fresh pipeline and aggregator, renew in the background. It ends
// when ctx is cancelled (last flush, then the lease is released so a
// standby takes over at once), when Hubble has sent everything (no
// --follow), or when the lease is lost: then what the term's aggregator
// still holds is discarded, since the new holder re-reads those flows from
// the committed cursor, and the replica waits again.
//
// Counts stay exact because every rollup is written with
// postgres.DB.WriteRollupFenced: in the transaction that adds the counts
// and advances the cursor, the lease row is locked and must still name this
// replica and term. A renewal that fails for another reason (PostgreSQL
// unreachable) does not end the term: aggregates stay in memory as they
// would with one replica, and the fence decides, once the database answers,
// whether they are written or were taken over.

// newReplicaID names a replica in the lease table: the host name (the pod's
// name in Kubernetes) and a random suffix, unique per process.
func newReplicaID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "egressd"
	}
	if len(host) > 200 {
		host = host[:200]
	}
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24)
	return host + "-" + hex.EncodeToString(b[:])
}

// fencedWriter writes a term's rollups under its lease. A rollup refused
// because the lease is gone is discarded (nil, so the aggregator forgets
// it), counted, and ends the term.
type fencedWriter struct {
	db      *postgres.DB
	lease   postgres.Lease
	metrics *collector.Metrics
	log     *slog.Logger
	onLost  func()
	warned  atomic.Bool
}

var _ collector.Writer = (*fencedWriter)(nil)

// WriteRollup implements collector.Writer.
func (w *fencedWriter) WriteRollup(ctx context.Context, r *egressd.Rollup) error {
	err := w.db.WriteRollupFenced(ctx, r, w.lease)
	if !postgres.LeaseLost(err) {
		return err
	}
	w.metrics.FlushesFenced.Inc()
	if !w.warned.Swap(true) {
		w.log.Warn("flush_discarded_lease_lost", "source", w.lease.Source, "token", w.lease.Token, "err", err)
	}
	w.onLost()
	return nil
}

// setStandby records whether this replica waits for holder's lease; a
// standby is ready (/readyz) and says so.
func (m *Main) setStandby(standby bool, holder string) {
	if !standby {
		m.standbyOf.Store(nil)
		return
	}
	m.standbyOf.Store(&holder)
}

// awaitLease polls until this replica holds the lease of source, or ctx
// ends (ctx's error).
func (m *Main) awaitLease(ctx context.Context, source string) (postgres.Lease, error) {
	waiting, failing := false, false
	for {
		l, err := m.cfg.DB.AcquireLease(ctx, source, m.cfg.ReplicaID, m.cfg.LeaseTTL)
		if err == nil {
			m.setStandby(false, "")
			m.metrics.LeaseHeld.Set(1)
			m.active.Store(true)
			m.log.Info("lease_acquired", "source", source, "replica", m.cfg.ReplicaID, "token", l.Token)
			return l, nil
		}
		if ctx.Err() != nil {
			return postgres.Lease{}, ctx.Err()
		}
		// Each state is logged once, not at every poll.
		if postgres.LeaseLost(err) {
			m.setStandby(true, l.Holder)
			if !waiting {
				m.log.Info("standby", "source", source, "holder", l.Holder, "replica", m.cfg.ReplicaID)
			}
			waiting, failing = true, false
		} else {
			if !failing {
				m.log.Warn("lease_acquire_failed", "source", source, "err", err)
			}
			failing = true
		}
		select {
		case <-ctx.Done():
			return postgres.Lease{}, ctx.Err()
		case <-time.After(m.cfg.LeasePoll):
		}
	}
}

// keepLease renews l every LeaseRenew until ctx ends; when another replica
// has taken the source over, it calls lost and returns.
func (m *Main) keepLease(ctx context.Context, l postgres.Lease, lost func()) {
	t := time.NewTicker(m.cfg.LeaseRenew)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, m.cfg.LeaseRenew)
		renewed, err := m.cfg.DB.RenewLease(rctx, l, m.cfg.LeaseTTL)
		cancel()
		switch {
		case err == nil:
			l = renewed
		case ctx.Err() != nil:
			return
		case postgres.LeaseLost(err):
			m.log.Warn("lease_lost", "source", l.Source, "token", l.Token, "err", err)
			lost()
			return
		default:
			// The stream goes on: the fence guards what it writes.
			m.log.Warn("lease_renew_failed", "source", l.Source, "err", err)
		}
	}
}

// collect runs terms until ctx ends or the stream finishes (no --follow);
// sinks are the pipeline's consumers besides each term's aggregator.
func (m *Main) collect(ctx context.Context, source string, sinks []collector.Sink) error {
	for {
		l, err := m.awaitLease(ctx, source)
		if err != nil {
			return nil // ctx ended while waiting
		}
		lost, err := m.term(ctx, l, sinks)
		if err != nil || !lost || ctx.Err() != nil {
			return err
		}
	}
}

// term streams source under lease l until ctx ends, the stream finishes or
// the lease is lost (lost is then true). In that order: the stream stops,
// the aggregator writes its last flush (fenced), and, unless lost, the lease
// is released.
func (m *Main) term(ctx context.Context, l postgres.Lease, sinks []collector.Sink) (lost bool, err error) {
	termCtx, endTerm := context.WithCancel(ctx)
	defer endTerm()
	var lostOnce sync.Once
	var isLost atomic.Bool
	onLost := func() {
		lostOnce.Do(func() {
			isLost.Store(true)
			m.metrics.LeaseLost.Inc()
			endTerm()
		})
	}
	defer func() {
		m.metrics.LeaseHeld.Set(0)
		m.active.Store(false)
		if isLost.Load() || m.cfg.KeepLeaseOnStop {
			return
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if rerr := m.cfg.DB.ReleaseLease(rctx, l); rerr != nil {
			m.log.Warn("lease_release_failed", "source", l.Source, "err", rerr)
		} else {
			m.log.Info("lease_released", "source", l.Source, "token", l.Token)
		}
	}()

	w := &fencedWriter{db: m.cfg.DB, lease: l, metrics: m.metrics, log: m.log.With("component", "aggregator"), onLost: onLost}
	agg, err := collector.NewAggregator(m.cfg.Aggregate, w, m.log.With("component", "aggregator"), m.metrics)
	if err != nil {
		return false, err
	}
	popts := m.cfg.Pipeline
	popts.Log = m.log.With("component", "collector")
	pipe, err := collector.NewPipeline(popts, m.metrics, append([]collector.Sink{agg}, sinks...)...)
	if err != nil {
		return false, err
	}
	// Read after acquiring: a former holder's last flush has committed
	// (the fence's row lock held the takeover back until then).
	cur, err := m.cfg.DB.ResumeCursor(ctx, l.Source, popts.Now().Add(popts.MaxClockSkew), m.log)
	switch {
	case err == nil:
		pipe.SkipUntil(l.Source, cur)
		m.log.Info("resuming", "source", l.Source, "since", cur)
	case egressd.ErrorCode(err) != egressd.ENOTFOUND:
		return false, fmt.Errorf("read cursor: %w", err)
	}

	aggCtx, stopAgg := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAgg()
	aggDone := make(chan error, 1)
	go func() { aggDone <- agg.Run(aggCtx) }()
	renewDone := make(chan struct{})
	go func() { defer close(renewDone); m.keepLease(termCtx, l, onLost) }()

	clientErr := m.client.Run(termCtx, func() time.Time { return pipe.Resume(l.Source) }, func(msg []byte) error {
		return pipe.Handle(l.Source, msg)
	})
	// The stream has stopped. The last flush is written under the lease
	// (still renewed when the stream finished by itself), then the lease
	// is released (deferred above).
	stopAgg()
	aggErr := <-aggDone
	endTerm()
	<-renewDone
	if isLost.Load() {
		if aggErr != nil {
			m.log.Warn("final_flush_failed_after_lease_lost", "err", aggErr)
		}
		if clientErr != nil {
			m.log.Warn("hubble_stream_failed_after_lease_lost", "err", clientErr)
		}
		return true, nil
	}
	return false, errors.Join(clientErr, aggErr)
}

// collectorHeader adds Egressd-Collector to /readyz answers: "active"
// while this replica collects its source, "standby; holder=REPLICA" while
// another does, "waiting" before either is known. The body says only
// "ready": a standby is ready too.
func (m *Main) collectorHeader(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			role := "waiting"
			if h := m.standbyOf.Load(); h != nil {
				role = "standby; holder=" + *h
			} else if m.active.Load() {
				role = "active"
			}
			w.Header().Set("Egressd-Collector", role)
		}
		next.ServeHTTP(w, r)
	})
}
