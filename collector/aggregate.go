package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/egressd/egressd"
)

// Writer stores a flush worth of aggregated observations (postgres.DB).
type Writer interface {
	WriteRollup(ctx context.Context, r *egressd.Rollup) error
}

// AggregatorOptions configure the in-memory rollup between flushes.
type AggregatorOptions struct {
	// FlushInterval is how often aggregates are written; it is also the
	// most that is kept only in memory.
	FlushInterval time.Duration
	// MaxKeys bounds the distinct keys held between flushes. Past half of
	// it a flush starts early; at the bound, observations of new keys are
	// dropped and counted (egressd_collector_observations_dropped_total)
	// rather than blocking the Hubble stream.
	MaxKeys int
	// FlushTimeout bounds one write, including the last one at shutdown.
	FlushTimeout time.Duration
	// Now is the wall clock (for the cursor lag metric).
	Now func() time.Time
}

// DefaultAggregatorOptions returns a 10 s flush interval and 1M keys.
func DefaultAggregatorOptions() AggregatorOptions {
	return AggregatorOptions{
		FlushInterval: 10 * time.Second,
		MaxKeys:       1_000_000,
		FlushTimeout:  30 * time.Second,
		Now:           time.Now,
	}
}

// Validate reports the first invalid field.
func (o AggregatorOptions) Validate() error {
	switch {
	case o.FlushInterval <= 0:
		return errors.New("collector: AggregatorOptions.FlushInterval must be > 0")
	case o.MaxKeys <= 0:
		return errors.New("collector: AggregatorOptions.MaxKeys must be > 0")
	case o.FlushTimeout <= 0:
		return errors.New("collector: AggregatorOptions.FlushTimeout must be > 0")
	case o.Now == nil:
		return errors.New("collector: AggregatorOptions.Now must be set")
	}
	return nil
}

type destKey struct {
	app  egressd.App
	dest egressd.Destination
}

type hourKey struct {
	destKey
	hour int64 // Unix seconds, truncated to the hour
}

type dnsQueryKey struct {
	app  egressd.App
	name string
}

type destAgg struct {
	first, last   int64
	flows, denied int64
	verdicts      egressd.VerdictSet
	pod           string
	nameSource    egressd.NameSource
}

type hourAgg struct {
	flows, denied int64
}

type dnsAgg struct {
	first, last int64
	queries     int64
}

// rollupState is what accumulates between two flushes.
type rollupState struct {
	dests   map[destKey]*destAgg
	hours   map[hourKey]*hourAgg
	dns     map[dnsQueryKey]*dnsAgg
	cursors map[string]int64
}

func newRollupState() *rollupState {
	return &rollupState{
		dests:   make(map[destKey]*destAgg),
		hours:   make(map[hourKey]*hourAgg),
		dns:     make(map[dnsQueryKey]*dnsAgg),
		cursors: make(map[string]int64),
	}
}

func (s *rollupState) keys() int { return len(s.dests) + len(s.hours) + len(s.dns) }

// Aggregator rolls observations up per (app, destination), per hour and per
// DNS name, and writes them in one batch per flush interval. It is a Sink;
// Observe and Advance may be called from several pipelines at once.
type Aggregator struct {
	opts    AggregatorOptions
	w       Writer
	log     *slog.Logger
	metrics *Metrics

	mu    sync.Mutex
	cur   *rollupState
	early chan struct{}
}

// NewAggregator returns an aggregator writing to w.
func NewAggregator(opts AggregatorOptions, w Writer, log *slog.Logger, m *Metrics) (*Aggregator, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return &Aggregator{opts: opts, w: w, log: log, metrics: m, cur: newRollupState(), early: make(chan struct{}, 1)}, nil
}

// Observe adds an observation. It never blocks on PostgreSQL.
func (a *Aggregator) Observe(o *egressd.Observation) {
	ts := o.Time.UnixNano()
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.cur
	n := s.keys()
	if n >= a.opts.MaxKeys/2 {
		select {
		case a.early <- struct{}{}:
		default:
		}
	}
	full := n >= a.opts.MaxKeys
	denied := int64(0)
	if o.Verdict.Denied() {
		denied = 1
	}
	if o.Kind == egressd.KindDNSQuery {
		k := dnsQueryKey{app: o.App, name: o.Destination.Name}
		d := s.dns[k]
		if d == nil {
			if full {
				a.metrics.AggDropped.Inc()
				return
			}
			d = &dnsAgg{first: ts, last: ts}
			s.dns[k] = d
		}
		d.first, d.last = min(d.first, ts), max(d.last, ts)
		d.queries++
		return
	}
	dk := destKey{app: o.App, dest: o.Destination}
	hk := hourKey{destKey: dk, hour: o.Time.Unix() / 3600 * 3600}
	d, h := s.dests[dk], s.hours[hk]
	if full && (d == nil || h == nil) {
		a.metrics.AggDropped.Inc()
		return
	}
	if d == nil {
		d = &destAgg{first: ts, last: ts, pod: o.Pod, nameSource: o.NameSource}
		s.dests[dk] = d
	}
	if h == nil {
		h = &hourAgg{}
		s.hours[hk] = h
	}
	d.first, d.last = min(d.first, ts), max(d.last, ts)
	d.flows++
	d.denied += denied
	d.verdicts = d.verdicts.Add(o.Verdict)
	if d.pod == "" {
		d.pod = o.Pod
	}
	h.flows++
	h.denied += denied
}

// Advance records that source has been handled up to t.
func (a *Aggregator) Advance(source string, t time.Time) {
	ts := t.UnixNano()
	a.mu.Lock()
	if ts > a.cur.cursors[source] {
		a.cur.cursors[source] = ts
	}
	a.mu.Unlock()
}

// Run flushes every FlushInterval, and early when the aggregates grow past
// half of MaxKeys, until ctx is cancelled; then it writes what is left, with
// a fresh timeout, and returns. A failed flush is kept and retried with the
// next one, so an outage of PostgreSQL loses nothing that fits in MaxKeys.
func (a *Aggregator) Run(ctx context.Context) error {
	t := time.NewTicker(a.opts.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// The last flush must not be cut short by the cancellation
			// that asked for it.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.opts.FlushTimeout)
			defer cancel()
			if err := a.Flush(fctx); err != nil {
				return fmt.Errorf("final flush: %w", err)
			}
			return nil
		case <-t.C:
		case <-a.early:
		}
		fctx, cancel := context.WithTimeout(ctx, a.opts.FlushTimeout)
		if err := a.Flush(fctx); err != nil && ctx.Err() == nil {
			a.log.Warn("flush_failed_will_retry", "err", err)
		}
		cancel()
	}
}

// Flush writes everything observed so far. On failure the data is merged
// back, to be written by the next flush.
func (a *Aggregator) Flush(ctx context.Context) error {
	a.mu.Lock()
	s := a.cur
	a.cur = newRollupState()
	a.mu.Unlock()
	if s.keys() == 0 && len(s.cursors) == 0 {
		return nil
	}
	r := s.rollup()
	start := time.Now()
	err := a.w.WriteRollup(ctx, r)
	a.metrics.FlushDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		a.metrics.flushFailed.Inc()
		a.mu.Lock()
		a.cur.merge(s)
		a.metrics.AggKeys.Set(float64(a.cur.keys()))
		a.mu.Unlock()
		return fmt.Errorf("flush %d aggregates: %w", s.keys(), err)
	}
	a.metrics.flushOK.Inc()
	a.metrics.FlushedRows.Add(float64(len(r.Destinations) + len(r.Hourly) + len(r.DNSQueries)))
	var newest int64
	for _, c := range s.cursors {
		newest = max(newest, c)
	}
	if newest > 0 {
		a.metrics.CursorLagSecs.Set(a.opts.Now().Sub(time.Unix(0, newest)).Seconds())
	}
	a.mu.Lock()
	a.metrics.AggKeys.Set(float64(a.cur.keys()))
	a.mu.Unlock()
	return nil
}

// merge adds o into s (commutative, like the database upsert).
func (s *rollupState) merge(o *rollupState) {
	for k, v := range o.dests {
		d := s.dests[k]
		if d == nil {
			s.dests[k] = v
			continue
		}
		d.first, d.last = min(d.first, v.first), max(d.last, v.last)
		d.flows += v.flows
		d.denied += v.denied
		d.verdicts |= v.verdicts
		if d.pod == "" {
			d.pod = v.pod
		}
	}
	for k, v := range o.hours {
		h := s.hours[k]
		if h == nil {
			s.hours[k] = v
			continue
		}
		h.flows += v.flows
		h.denied += v.denied
	}
	for k, v := range o.dns {
		d := s.dns[k]
		if d == nil {
			s.dns[k] = v
			continue
		}
		d.first, d.last = min(d.first, v.first), max(d.last, v.last)
		d.queries += v.queries
	}
	for k, v := range o.cursors {
		s.cursors[k] = max(s.cursors[k], v)
	}
}

// rollup converts the state to the domain type, sorted so that writes take
// row locks in one order (no deadlocks between concurrent collectors).
func (s *rollupState) rollup() *egressd.Rollup {
	r := &egressd.Rollup{}
	for k, v := range s.dests {
		r.Destinations = append(r.Destinations, egressd.DestinationRollup{
			App: k.app, Destination: k.dest,
			FirstSeen: time.Unix(0, v.first).UTC(), LastSeen: time.Unix(0, v.last).UTC(),
			Flows: v.flows, DroppedFlows: v.denied, Verdicts: v.verdicts,
			ExamplePod: v.pod, NameSource: v.nameSource,
		})
	}
	sort.Slice(r.Destinations, func(i, j int) bool {
		return lessDest(r.Destinations[i].App, r.Destinations[i].Destination, r.Destinations[j].App, r.Destinations[j].Destination)
	})
	for k, v := range s.hours {
		r.Hourly = append(r.Hourly, egressd.HourlyRollup{
			App: k.app, Destination: k.dest, Hour: time.Unix(k.hour, 0).UTC(),
			Flows: v.flows, DroppedFlows: v.denied,
		})
	}
	sort.Slice(r.Hourly, func(i, j int) bool {
		a, b := r.Hourly[i], r.Hourly[j]
		if a.App != b.App || a.Destination != b.Destination {
			return lessDest(a.App, a.Destination, b.App, b.Destination)
		}
		return a.Hour.Before(b.Hour)
	})
	for k, v := range s.dns {
		r.DNSQueries = append(r.DNSQueries, egressd.DNSQueryRollup{
			App: k.app, Name: k.name,
			FirstSeen: time.Unix(0, v.first).UTC(), LastSeen: time.Unix(0, v.last).UTC(),
			Queries: v.queries,
		})
	}
	sort.Slice(r.DNSQueries, func(i, j int) bool {
		a, b := r.DNSQueries[i], r.DNSQueries[j]
		if a.App != b.App {
			return lessApp(a.App, b.App)
		}
		return a.Name < b.Name
	})
	for src, t := range s.cursors {
		r.Cursors = append(r.Cursors, egressd.Cursor{Source: src, Time: time.Unix(0, t).UTC()})
	}
	sort.Slice(r.Cursors, func(i, j int) bool { return r.Cursors[i].Source < r.Cursors[j].Source })
	return r
}

func lessApp(a, b egressd.App) bool {
	if a.Cluster != b.Cluster {
		return a.Cluster < b.Cluster
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

func lessDest(a egressd.App, ad egressd.Destination, b egressd.App, bd egressd.Destination) bool {
	if a != b {
		return lessApp(a, b)
	}
	if ad.Name != bd.Name {
		return ad.Name < bd.Name
	}
	if ad.Port != bd.Port {
		return ad.Port < bd.Port
	}
	return ad.Protocol < bd.Protocol
}
