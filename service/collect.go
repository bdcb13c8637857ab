package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector"
)

// One active collector per Hubble source. Every replica of `egressd serve`
// would read the whole stream of its source, and each would add the same
// flows to the counts; so a replica streams only while it holds the
// source's lease in PostgreSQL, and the others wait as hot standbys,
// serving the API, /metrics and the alert sender (whose outbox is leased
// per row) meanwhile.
//
// A term is one holding of the lease: acquire, read the cursor, load
// what storage knows as of that cursor (OnTerm), stream with a fresh
// pipeline and aggregator, renew in the background. It ends
// when ctx is cancelled (last flush; the lease is released later, by
// ReleaseOnStop, once the service's last anomalies are recorded and sent),
// when Hubble has sent everything (no --follow), or when the lease is lost:
// then what the term's aggregator still holds is discarded, since the new
// holder re-reads those flows from the committed cursor, and the replica
// waits again.
//
// Counts stay exact because every rollup is written fenced (Leases
// WriteRollupFenced): in the transaction that adds the counts and
// advances the cursor, the lease row is locked and must still name this
// replica and term. A renewal that fails for another reason (PostgreSQL
// unreachable) does not end the term: aggregates stay in memory as they
// would with one replica, and the fence decides, once the database
// answers, whether they are written or were taken over.

// Leases is what the collector needs of the lease table and the cursors
// (postgres.DB). Errors that say the lease is held by another replica
// match egressd.ErrLeaseLost.
type Leases interface {
	LeaseTable
	// WriteRollupFenced writes r only while l is still the source's lease.
	WriteRollupFenced(ctx context.Context, r *egressd.Rollup, l egressd.Lease) error
	// ResumeCursor is the time up to which source's flows are stored, or
	// an egressd.ENOTFOUND error; a cursor after bound (the receiving
	// clock plus the allowed skew) is repaired first, and the repair
	// logged to log.
	ResumeCursor(ctx context.Context, source string, bound time.Time, log *slog.Logger) (time.Time, error)
}

// Stream is a flow source (collector.Client): Run streams from since()
// and hands each message to handle until ctx ends or the source has sent
// everything.
type Stream interface {
	Run(ctx context.Context, since func() time.Time, handle func(msg []byte) error) error
}

// CollectorOptions configure a Collector.
type CollectorOptions struct {
	// Source names the stream in the lease table and the cursors, such
	// as "hubble:ADDRESS".
	Source string
	// ReplicaID names this replica in the lease (default: NewReplicaID).
	ReplicaID string
	// LeaseTTL is how long the lease lasts unless renewed: a standby
	// takes over at most LeaseTTL + LeasePoll after the active replica
	// stopped renewing (default 15 s).
	LeaseTTL time.Duration
	// LeaseRenew is how often the active replica renews; less than
	// LeaseTTL (default LeaseTTL / 3).
	LeaseRenew time.Duration
	// LeasePoll is how often a standby tries to acquire (default 1 s).
	LeasePoll time.Duration
	// KeepLeaseOnStop, for tests only, never releases the lease, as a
	// crash would: a standby then takes over only once it expires.
	KeepLeaseOnStop bool
	// Pipeline and Aggregate build each term's pipeline and aggregator.
	Pipeline  collector.Options
	Aggregate collector.AggregatorOptions
	// OnTerm, when set, runs at the start of each term, once the cursor
	// is read and before anything is streamed: resume is where the stream
	// resumes (the cursor; the wall clock for a source with none), pipe
	// the term's new pipeline. The service primes the detector and loads
	// the stored DNS answers and pods there, so that a standby taking
	// over learns what the former holder stored. An error ends the term
	// and Run with it.
	OnTerm func(ctx context.Context, resume time.Time, pipe *collector.Pipeline) error
	// OnFlusher, when set, is given each term's aggregator's Flush when
	// the term starts streaming, and nil when it ends: the detector flushes
	// before it asks the store for an anomaly's evidence, so that the
	// flows of the last flush interval count.
	OnFlusher func(flush func(context.Context) error)
}

// withDefaults fills the zero durations and the replica ID, and checks
// what needs checking before anything is started.
func (o CollectorOptions) withDefaults() (CollectorOptions, error) {
	if o.ReplicaID == "" {
		o.ReplicaID = NewReplicaID()
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 15 * time.Second
	}
	if o.LeaseRenew <= 0 {
		o.LeaseRenew = o.LeaseTTL / 3
	}
	if o.LeasePoll <= 0 {
		o.LeasePoll = time.Second
	}
	switch {
	case o.Source == "":
		return o, errors.New("service: CollectorOptions.Source is empty")
	case o.LeaseRenew >= o.LeaseTTL:
		return o, fmt.Errorf("service: CollectorOptions.LeaseRenew (%s) must be shorter than LeaseTTL (%s)", o.LeaseRenew, o.LeaseTTL)
	}
	// Each term builds its own pipeline and aggregator: their options
	// are checked once, here.
	if err := o.Pipeline.Validate(); err != nil {
		return o, err
	}
	return o, o.Aggregate.Validate()
}

// Collector streams one source while this replica holds its lease, and
// waits as a standby while another does.
type Collector struct {
	opts    CollectorOptions
	leases  Leases
	stream  Stream
	sinks   []collector.Sink
	metrics *collector.Metrics
	log     *slog.Logger

	// standbyOf is the holder of the lease while this replica waits for
	// it, nil otherwise; active is set while this replica streams.
	standbyOf atomic.Pointer[string]
	active    atomic.Bool

	mu sync.Mutex
	// held is the lease of the term that ended with Run, until
	// ReleaseOnStop gives it up.
	held *egressd.Lease
}

// NewCollector returns a Collector of opts.Source that reads stream and
// hands every observation to sinks besides each term's aggregator.
func NewCollector(opts CollectorOptions, leases Leases, stream Stream, sinks []collector.Sink, m *collector.Metrics, log *slog.Logger) (*Collector, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if m == nil {
		m = collector.NewMetrics(nil)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Collector{opts: opts, leases: leases, stream: stream, sinks: sinks, metrics: m, log: log}, nil
}

// NewReplicaID names a replica in the lease table: the host name (the
// pod's name in Kubernetes) and a random suffix, unique per process.
func NewReplicaID() string {
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

// Active reports whether this replica streams the source now.
func (c *Collector) Active() bool { return c.active.Load() }

// StandbyOf returns the replica holding the lease while this one waits for
// it; ok is false when this one is not waiting.
func (c *Collector) StandbyOf() (holder string, ok bool) {
	if h := c.standbyOf.Load(); h != nil {
		return *h, true
	}
	return "", false
}

// Run runs terms until ctx ends or the stream finishes (no --follow).
// When it returns after a term, the term's last flush is written and the
// lease is still held, for ReleaseOnStop.
func (c *Collector) Run(ctx context.Context) error {
	for {
		l, err := c.awaitLease(ctx)
		if err != nil {
			return nil // ctx ended while waiting
		}
		lost, err := c.term(ctx, l)
		if err != nil || !lost || ctx.Err() != nil {
			return err
		}
	}
}

// ReleaseOnStop waits until ctx ends, then gives up the lease the last
// term still holds, so that a standby takes over at once instead of after
// LeaseTTL. It runs as its own component so that the lease is released
// after the anomalies of the last flows are recorded and sent.
func (c *Collector) ReleaseOnStop(ctx context.Context) error {
	<-ctx.Done()
	c.mu.Lock()
	l := c.held
	c.held = nil
	c.mu.Unlock()
	if l == nil || c.opts.KeepLeaseOnStop {
		return nil
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := c.leases.ReleaseLease(rctx, *l); err != nil {
		c.log.Warn("lease_release_failed", "source", l.Source, "err", err)
		return nil // the lease expires by itself
	}
	c.log.Info("lease_released", "source", l.Source, "token", l.Token)
	return nil
}

// fencedWriter writes a term's rollups under its lease. A rollup refused
// because the lease is gone is discarded (nil, so the aggregator forgets
// it), counted, and ends the term.
type fencedWriter struct {
	leases  Leases
	lease   egressd.Lease
	metrics *collector.Metrics
	log     *slog.Logger
	onLost  func()
	warned  atomic.Bool
}

var _ collector.Writer = (*fencedWriter)(nil)

// WriteRollup implements collector.Writer.
func (w *fencedWriter) WriteRollup(ctx context.Context, r *egressd.Rollup) error {
	err := w.leases.WriteRollupFenced(ctx, r, w.lease)
	if !egressd.LeaseLost(err) {
		return err
	}
	w.metrics.FlushesFenced.Inc()
	if !w.warned.Swap(true) {
		w.log.Warn("flush_discarded_lease_lost", "source", w.lease.Source, "token", w.lease.Token, "err", err)
	}
	w.onLost()
	return nil
}

// awaitLease polls until this replica holds the lease, or ctx ends (ctx's
// error).
func (c *Collector) awaitLease(ctx context.Context) (egressd.Lease, error) {
	source := c.opts.Source
	waiting, failing := false, false
	for {
		l, err := c.leases.AcquireLease(ctx, source, c.opts.ReplicaID, c.opts.LeaseTTL)
		if err == nil {
			c.standbyOf.Store(nil)
			c.metrics.LeaseHeld.Set(1)
			c.active.Store(true)
			c.log.Info("lease_acquired", "source", source, "replica", c.opts.ReplicaID, "token", l.Token)
			return l, nil
		}
		if ctx.Err() != nil {
			return egressd.Lease{}, ctx.Err()
		}
		// Each state is logged once, not at every poll.
		if egressd.LeaseLost(err) {
			holder := l.Holder
			c.standbyOf.Store(&holder)
			if !waiting {
				c.log.Info("standby", "source", source, "holder", l.Holder, "replica", c.opts.ReplicaID)
			}
			waiting, failing = true, false
		} else {
			if !failing {
				c.log.Warn("lease_acquire_failed", "source", source, "err", err)
			}
			failing = true
		}
		select {
		case <-ctx.Done():
			return egressd.Lease{}, ctx.Err()
		case <-time.After(c.opts.LeasePoll):
		}
	}
}

// keepLease renews l every LeaseRenew until ctx ends; when another replica
// has taken the source over, it calls lost and returns.
func (c *Collector) keepLease(ctx context.Context, l egressd.Lease, lost func()) {
	t := time.NewTicker(c.opts.LeaseRenew)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, c.opts.LeaseRenew)
		renewed, err := c.leases.RenewLease(rctx, l, c.opts.LeaseTTL)
		cancel()
		switch {
		case err == nil:
			l = renewed
		case ctx.Err() != nil:
			return
		case egressd.LeaseLost(err):
			c.log.Warn("lease_lost", "source", l.Source, "token", l.Token, "err", err)
			lost()
			return
		default:
			// The stream goes on: the fence guards what it writes.
			c.log.Warn("lease_renew_failed", "source", l.Source, "err", err)
		}
	}
}

// term streams the source under lease l until ctx ends, the stream
// finishes or the lease is lost (lost is then true). In that order: the
// stream stops, the aggregator writes its last flush (fenced), and, unless
// lost, the lease is kept for ReleaseOnStop.
func (c *Collector) term(ctx context.Context, l egressd.Lease) (lost bool, err error) {
	termCtx, endTerm := context.WithCancel(ctx)
	defer endTerm()
	var lostOnce sync.Once
	var isLost atomic.Bool
	onLost := func() {
		lostOnce.Do(func() {
			isLost.Store(true)
			c.metrics.LeaseLost.Inc()
			endTerm()
		})
	}
	defer func() {
		c.metrics.LeaseHeld.Set(0)
		c.active.Store(false)
		if !isLost.Load() {
			c.mu.Lock()
			c.held = &l
			c.mu.Unlock()
		}
	}()

	w := &fencedWriter{leases: c.leases, lease: l, metrics: c.metrics, log: c.log.With("component", "aggregator"), onLost: onLost}
	agg, err := collector.NewAggregator(c.opts.Aggregate, w, c.log.With("component", "aggregator"), c.metrics)
	if err != nil {
		return false, err
	}
	popts := c.opts.Pipeline
	popts.Log = c.log.With("component", "collector")
	pipe, err := collector.NewPipeline(popts, c.metrics, append([]collector.Sink{agg}, c.sinks...)...)
	if err != nil {
		return false, err
	}
	// Read after acquiring: a former holder's last flush has committed
	// (the fence's row lock held the takeover back until then).
	cur, err := c.leases.ResumeCursor(ctx, l.Source, popts.Now().Add(popts.MaxClockSkew), c.log)
	switch {
	case err == nil:
		pipe.SkipUntil(l.Source, cur)
		c.log.Info("resuming", "source", l.Source, "since", cur)
	case ctx.Err() != nil:
		return false, nil // stopped before streaming: nothing to flush
	case egressd.ErrorCode(err) != egressd.ENOTFOUND:
		return false, fmt.Errorf("read cursor: %w", err)
	}
	if c.opts.OnTerm != nil {
		// The stream resumes at the cursor, so that is "now" for what
		// was stored before it (docs/architecture.md, "Where state
		// lives, and how a restart recovers it").
		resume := cur
		if err != nil || resume.IsZero() { // no cursor yet
			resume = popts.Now()
		}
		if err := c.opts.OnTerm(ctx, resume, pipe); err != nil {
			if ctx.Err() != nil {
				return false, nil // stopped while priming
			}
			return false, err
		}
	}

	aggCtx, stopAgg := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAgg()
	aggDone := make(chan error, 1)
	go func() { aggDone <- agg.Run(aggCtx) }()
	if c.opts.OnFlusher != nil {
		c.opts.OnFlusher(agg.Flush)
		defer c.opts.OnFlusher(nil)
	}
	renewDone := make(chan struct{})
	go func() { defer close(renewDone); c.keepLease(termCtx, l, onLost) }()

	streamErr := c.stream.Run(termCtx, func() time.Time { return pipe.Resume(l.Source) }, func(msg []byte) error {
		return pipe.Handle(l.Source, msg)
	})
	// The stream has stopped. The last flush is written under the lease
	// (still renewed when the stream finished by itself).
	stopAgg()
	aggErr := <-aggDone
	endTerm()
	<-renewDone
	if isLost.Load() {
		if aggErr != nil {
			c.log.Warn("final_flush_failed_after_lease_lost", "err", aggErr)
		}
		if streamErr != nil {
			c.log.Warn("hubble_stream_failed_after_lease_lost", "err", streamErr)
		}
		return true, nil
	}
	return false, errors.Join(streamErr, aggErr)
}
