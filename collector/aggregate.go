package collector

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/netip"
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
	// MaxKeysPerApp bounds the distinct destinations and DNS names that
	// one app gets in within an hour of flow time, so that an app reaching
	// millions of names (a DNS tunnel, a scanner) neither takes the other
	// apps' share of MaxKeys nor writes millions of rows. Past half of it,
	// a new name of the app is kept only if a hash of it falls in one in
	// SampleOneIn (so a name is always kept or always not, within the
	// hour); at the bound, no new name is. Names already kept are counted
	// in full. Every observation not kept is counted
	// (egressd_collector_observations_sampled_total) and logged per app
	// at the next flush. Names seen are remembered as 8-byte hashes, at
	// most MaxKeysPerApp per app.
	MaxKeysPerApp int
	// SampleOneIn is the sampling rate past half of MaxKeysPerApp.
	SampleOneIn int
	// FlushTimeout bounds one write, including the last one at shutdown.
	FlushTimeout time.Duration
	// Now is the wall clock (for the cursor lag metric).
	Now func() time.Time
}

// DefaultAggregatorOptions returns a 10 s flush interval, 1M keys, and
// 10k names per app and hour, sampled one in 100 past 5k.
func DefaultAggregatorOptions() AggregatorOptions {
	return AggregatorOptions{
		FlushInterval: 10 * time.Second,
		MaxKeys:       1_000_000,
		MaxKeysPerApp: 10_000,
		SampleOneIn:   100,
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
	case o.MaxKeysPerApp <= 0:
		return errors.New("collector: AggregatorOptions.MaxKeysPerApp must be > 0")
	case o.SampleOneIn <= 0:
		return errors.New("collector: AggregatorOptions.SampleOneIn must be > 0")
	case o.FlushTimeout <= 0:
		return errors.New("collector: AggregatorOptions.FlushTimeout must be > 0")
	case o.Now == nil:
		return errors.New("collector: AggregatorOptions.Now must be set")
	}
	return nil
}

// The state between two flushes holds up to MaxKeys keys (1M by default),
// so it is laid out for size (BENCHMARKS.md: <= 300 bytes per active key,
// detector included). Strings that many keys share (app, protocol, pod)
// are numbered once per state; values sit in the maps, with no pointer of
// their own; and a destination's hour buckets are folded into it: a flush
// interval of seconds nearly always falls within one hour, so the bucket
// of the hour of its first flow is implicit, and only other hours (an
// interval across the hour, a replay, flushes merged after a failure) are
// kept apart, in rollupState.spill. Denied flows, which most destinations
// never have, are counted apart too.

// class is what many keys share: an app and a protocol (empty for DNS
// questions).
type class struct {
	app   egressd.App
	proto string
}

type destKey struct {
	name  string
	class uint32 // index in rollupState.classes
	port  uint16
}

type dnsQueryKey struct {
	name  string
	class uint32
}

type destAgg struct {
	first, last int64 // Unix ns
	flows       int64
	pod         uint32 // index in rollupState.pods; 0 is none
	verdicts    uint8  // an egressd.VerdictSet, whose verdicts fit a byte
	nameSource  egressd.NameSource
	flags       destFlags
}

type destFlags uint8

const (
	spilled   destFlags = 1 << iota // it has buckets in rollupState.spill
	hasDenied                       // it has denied flows, in rollupState.denied
)

// hourAgg counts a destination's flows in one hour other than that of its
// first flow.
type hourAgg struct {
	hour          int64 // hours since the Unix epoch
	flows, denied int64
}

type dnsAgg struct {
	first, last int64
	queries     int64
}

// appBudget is what MaxKeysPerApp counts for one app: the names it got in
// during the hour of flow time hour, as hashes, and the observations not
// kept since the last flush. It outlives flushes: a flush interval is much
// shorter than an hour.
type appBudget struct {
	hour int64
	// first is the first name of the hour, and names, made for the second
	// one, all of them: most apps have one name, and a map would cost
	// them a hundred bytes more each.
	first    uint64
	hasFirst bool
	names    map[uint64]struct{}
	sampled  int64
}

// has reports whether the name hashed to sum was kept in the hour.
func (b *appBudget) has(sum uint64) bool {
	if b.names != nil {
		_, ok := b.names[sum]
		return ok
	}
	return b.hasFirst && b.first == sum
}

// len returns the names kept in the hour.
func (b *appBudget) len() int {
	switch {
	case b.names != nil:
		return len(b.names)
	case b.hasFirst:
		return 1
	}
	return 0
}

// add keeps the name hashed to sum.
func (b *appBudget) add(sum uint64) {
	switch {
	case b.names != nil:
		b.names[sum] = struct{}{}
	case !b.hasFirst:
		b.first, b.hasFirst = sum, true
	default:
		b.names = map[uint64]struct{}{b.first: {}, sum: {}}
	}
}

// reset starts the budget of a new hour.
func (b *appBudget) reset(hour int64) {
	b.hour, b.hasFirst, b.names = hour, false, nil
}

// rollupState is what accumulates between two flushes.
type rollupState struct {
	classes []class
	classOf map[class]uint32
	// budgets are those of the apps of classes, by class number; their
	// owner is Aggregator.budgets, from which they are looked up once per
	// class and state.
	budgets    []*appBudget
	allBudgets map[egressd.App]*appBudget
	pods       []string
	podOf      map[string]uint32
	dests      map[destKey]destAgg
	// spill holds the hour buckets of destinations other than the hour of
	// their first flow. The implicit bucket of that hour counts the
	// destination's totals minus these.
	spill   map[destKey][]hourAgg
	spilled int // buckets in spill
	// denied counts the denied flows of destinations that had any.
	denied  map[destKey]int64
	dns     map[dnsQueryKey]dnsAgg
	cursors map[string]int64
	// answers are the newest DNS answer of each (namespace, pod, address).
	answers map[answerKey]egressd.DNSAnswer
	// labelSets and resolvers are the pods' facts the pipeline sent once
	// per pod and per app and server (see PodSink).
	labelSets map[labelSetAggKey]egressd.AppLabelSet
	resolvers map[resolverAggKey]egressd.AppResolver
	// lost are Hubble's lost_events records, each once.
	lost map[lostKey]int64
}

type lostKey struct {
	node, source string
	time         int64
}

type labelSetAggKey struct {
	app    egressd.App
	labels string
}

type resolverAggKey struct {
	app  egressd.App
	kind egressd.ResolverKind
	addr string
}

type answerKey struct {
	namespace, pod string
	addr           netip.Addr
}

func newRollupState(budgets map[egressd.App]*appBudget) *rollupState {
	return &rollupState{
		allBudgets: budgets,
		classOf:    make(map[class]uint32),
		pods:       []string{""},
		podOf:      make(map[string]uint32),
		dests:      make(map[destKey]destAgg),
		spill:      make(map[destKey][]hourAgg),
		denied:     make(map[destKey]int64),
		dns:        make(map[dnsQueryKey]dnsAgg),
		answers:    make(map[answerKey]egressd.DNSAnswer),
		labelSets:  make(map[labelSetAggKey]egressd.AppLabelSet),
		resolvers:  make(map[resolverAggKey]egressd.AppResolver),
		lost:       make(map[lostKey]int64),
		cursors:    make(map[string]int64),
	}
}

// keys counts what MaxKeys bounds: destinations, their hour buckets (one
// each, plus those spilled) and DNS names.
func (s *rollupState) keys() int {
	return 2*len(s.dests) + s.spilled + len(s.dns) + len(s.answers) + len(s.labelSets) + len(s.resolvers) + len(s.lost)
}

// classIndex returns the number of c, adding it when add is set. Classes
// and pods are added only with a destination or DNS name that uses them,
// so MaxKeys bounds them too.
func (s *rollupState) classIndex(c class, add bool) (uint32, bool) {
	i, ok := s.classOf[c]
	if !ok && add {
		i, ok = uint32(len(s.classes)), true
		s.classes = append(s.classes, c)
		s.classOf[c] = i
		b := s.allBudgets[c.app]
		if b == nil {
			b = &appBudget{}
			s.allBudgets[c.app] = b
		}
		s.budgets = append(s.budgets, b)
	}
	return i, ok
}

func (s *rollupState) podIndex(pod string) uint32 {
	if pod == "" {
		return 0
	}
	i, ok := s.podOf[pod]
	if !ok {
		i = uint32(len(s.pods))
		s.pods = append(s.pods, pod)
		s.podOf[pod] = i
	}
	return i
}

// unixHour returns the hour of a time in Unix ns, in hours since the
// epoch: t.Unix()/3600 for every time that UnixNano represents (1678 to
// 2262). Hours follow the first flow's time, so they are computed from ns
// like first and last seen, and wrap with them beyond those years.
func unixHour(ns int64) int64 {
	sec := ns / 1e9
	if ns%1e9 < 0 {
		sec--
	}
	return sec / 3600
}

// deniedOf returns the denied flows of d, the aggregate of k.
func (s *rollupState) deniedOf(k destKey, d *destAgg) int64 {
	if d.flags&hasDenied == 0 {
		return 0
	}
	return s.denied[k]
}

// addDenied adds n denied flows to d, the aggregate of k.
func (s *rollupState) addDenied(k destKey, d *destAgg, n int64) {
	if n != 0 {
		s.denied[k] += n
		d.flags |= hasDenied
	}
}

// implicit returns the counts of the bucket of the hour of d.first.
func (s *rollupState) implicit(k destKey, d *destAgg) (flows, denied int64) {
	flows, denied = d.flows, s.deniedOf(k, d)
	if d.flags&spilled != 0 {
		for _, b := range s.spill[k] {
			flows -= b.flows
			denied -= b.denied
		}
	}
	return flows, denied
}

// hasHour reports whether d, the aggregate of k, has a bucket for hour.
func (s *rollupState) hasHour(k destKey, d *destAgg, hour int64) bool {
	if hour == unixHour(d.first) {
		return true
	}
	if d.flags&spilled != 0 {
		for _, b := range s.spill[k] {
			if b.hour == hour {
				return true
			}
		}
	}
	return false
}

// addHour adds counts to the bucket of hour of d, the aggregate of k, and
// creates that bucket if needed; d's totals are the caller's to add.
func (s *rollupState) addHour(k destKey, d *destAgg, hour, flows, denied int64) {
	if hour == unixHour(d.first) {
		return // the implicit bucket follows the totals
	}
	var bs []hourAgg
	if d.flags&spilled != 0 {
		bs = s.spill[k]
	}
	for i := range bs {
		if bs[i].hour == hour {
			bs[i].flows += flows
			bs[i].denied += denied
			return
		}
	}
	s.spill[k] = append(bs, hourAgg{hour: hour, flows: flows, denied: denied})
	s.spilled++
	d.flags |= spilled
}

// setFirst moves d.first back to ts before d's totals grow. When the hour
// changes, the bucket of the old first hour becomes explicit, and that of
// the new one, implicit, starts empty: no bucket is spilled for it, since
// every spilled hour is after the hour of the first flow.
func (s *rollupState) setFirst(k destKey, d *destAgg, ts int64) {
	if old := unixHour(d.first); unixHour(ts) != old {
		flows, denied := s.implicit(k, d)
		s.spill[k] = append(s.spill[k], hourAgg{hour: old, flows: flows, denied: denied})
		s.spilled++
		d.flags |= spilled
	}
	d.first = ts
}

// Aggregator rolls observations up per (app, destination), per hour and per
// DNS name, and writes them in one batch per flush interval. It is a Sink;
// Observe and Advance may be called from several pipelines at once.
type Aggregator struct {
	opts    AggregatorOptions
	w       Writer
	log     *slog.Logger
	metrics *Metrics

	seed maphash.Seed // of the names in appBudget; random per process

	mu  sync.Mutex
	cur *rollupState
	// budgets are the apps' MaxKeysPerApp budgets, by app. Those of hours
	// before the newest one seen are dropped at each flush.
	budgets map[egressd.App]*appBudget
	newest  int64 // the newest hour of flow time observed
	// inFlight counts the keys of the flush being written or waiting to
	// be retried. They count against MaxKeys until the write succeeds:
	// without this, every failed flush of an outage would let MaxKeys
	// more keys in.
	inFlight int
	early    chan struct{}

	// flushMu serialises flushes. pending is the rollup of a failed
	// flush and pendingKeys its keys: it is retried as it is, under its
	// ID, before anything newer is written, so that a write whose commit
	// did land although it reported an error (the connection broke before
	// the answer) is not counted twice.
	flushMu     sync.Mutex
	pending     *egressd.Rollup
	pendingKeys int
}

// NewAggregator returns an aggregator writing to w.
func NewAggregator(opts AggregatorOptions, w Writer, log *slog.Logger, m *Metrics) (*Aggregator, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	budgets := make(map[egressd.App]*appBudget)
	return &Aggregator{
		opts: opts, w: w, log: log, metrics: m, seed: maphash.MakeSeed(),
		cur: newRollupState(budgets), budgets: budgets, early: make(chan struct{}, 1),
	}, nil
}

// admit reports whether a name new to the state, of class c, is kept,
// under a.mu: whether its app already got it in this hour, or has room for
// it (see AggregatorOptions.MaxKeysPerApp). The hash covers what tells
// keys apart (kind, name, port, protocol) but not the app: each app has
// its own set. An observation not kept is counted.
func (a *Aggregator) admit(s *rollupState, c uint32, kind egressd.ObservationKind, name string, port uint16, hour int64) bool {
	b := s.budgets[c]
	if hour > b.hour {
		b.reset(hour)
	}
	var h maphash.Hash
	h.SetSeed(a.seed)
	h.WriteByte(byte(kind))
	h.WriteByte(byte(port))
	h.WriteByte(byte(port >> 8))
	h.WriteString(s.classes[c].proto)
	h.WriteByte(0)
	h.WriteString(name)
	sum := h.Sum64()
	// A name whose hash is in the set passes as kept, so the set's hashes
	// must tell apart every name of an hour: past the bound, each of a
	// tunnel's millions of new names is checked against the kept ones,
	// and with 32 bits about one in 400k of them matched one (a name past
	// the bound stored). With 64 bits, 1e12 names against 10k kept match
	// with probability 5e-4.
	if b.has(sum) {
		return true
	}
	n := b.len()
	if n < a.opts.MaxKeysPerApp/2 || (n < a.opts.MaxKeysPerApp && sum%uint64(a.opts.SampleOneIn) == 0) {
		b.add(sum)
		return true
	}
	b.sampled++
	a.metrics.AggSampled.Inc()
	return false
}

// Observe adds an observation. It never blocks on PostgreSQL.
func (a *Aggregator) Observe(o *egressd.Observation) {
	ts := o.Time.UnixNano()
	hour := unixHour(ts)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.newest = max(a.newest, hour)
	s := a.cur
	n := s.keys() + a.inFlight
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
		c, ok := s.classIndex(class{app: o.App}, !full)
		if !ok {
			a.metrics.AggDropped.Inc()
			return
		}
		k := dnsQueryKey{name: o.Destination.Name, class: c}
		d, found := s.dns[k]
		if !found {
			if full {
				a.metrics.AggDropped.Inc()
				return
			}
			if !a.admit(s, c, o.Kind, k.name, 0, hour) {
				return
			}
			d = dnsAgg{first: ts, last: ts}
		}
		d.first, d.last = min(d.first, ts), max(d.last, ts)
		d.queries++
		s.dns[k] = d
		return
	}
	c, ok := s.classIndex(class{app: o.App, proto: o.Destination.Protocol}, !full)
	if !ok {
		a.metrics.AggDropped.Inc()
		return
	}
	k := destKey{name: o.Destination.Name, class: c, port: o.Destination.Port}
	d, found := s.dests[k]
	switch {
	case full && (!found || !s.hasHour(k, &d, hour)):
		a.metrics.AggDropped.Inc()
		return
	case !found && !a.admit(s, c, o.Kind, k.name, k.port, hour):
		return
	case !found:
		d = destAgg{first: ts, last: ts, nameSource: o.NameSource}
	case ts < d.first:
		s.setFirst(k, &d, ts)
	}
	d.last = max(d.last, ts)
	d.flows++
	s.addDenied(k, &d, denied)
	d.verdicts = uint8(egressd.VerdictSet(d.verdicts).Add(o.Verdict))
	if d.pod == 0 {
		d.pod = s.podIndex(o.Pod)
	}
	s.addHour(k, &d, hour, 1, denied)
	s.dests[k] = d
}

// ObserveAnswer keeps the DNS answer a pod received, for the next flush
// (collector.AnswerSink): the answer that expires last wins. At MaxKeys new
// answers are dropped and counted, like observations.
func (a *Aggregator) ObserveAnswer(ans egressd.DNSAnswer) {
	k := answerKey{namespace: ans.Namespace, pod: ans.Pod, addr: ans.Addr}
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.cur
	old, found := s.answers[k]
	switch {
	case !found && s.keys()+a.inFlight >= a.opts.MaxKeys:
		a.metrics.AggDropped.Inc()
	case !found || !ans.Expires.Before(old.Expires):
		s.answers[k] = ans
	}
}

// ObserveLabelSet keeps a label set of an app's pods for the next flush
// (collector.PodSink). At MaxKeys new sets are dropped and counted, like
// observations.
func (a *Aggregator) ObserveLabelSet(l egressd.AppLabelSet) {
	k := labelSetAggKey{app: l.App, labels: labelSetKey(l.Labels)}
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.cur
	old, found := s.labelSets[k]
	if !found && s.keys()+a.inFlight >= a.opts.MaxKeys {
		a.metrics.AggDropped.Inc()
		return
	}
	s.labelSets[k] = mergeLabelSet(old, l, found)
}

func mergeLabelSet(old, l egressd.AppLabelSet, found bool) egressd.AppLabelSet {
	if !found {
		return l
	}
	if l.FirstSeen.Before(old.FirstSeen) {
		old.FirstSeen = l.FirstSeen
	}
	if l.LastSeen.After(old.LastSeen) {
		old.LastSeen = l.LastSeen
	}
	return old
}

// ObserveResolver keeps a DNS server an app asked for the next flush
// (collector.PodSink).
func (a *Aggregator) ObserveResolver(r egressd.AppResolver) {
	k := resolverAggKey{app: r.App, kind: r.Kind, addr: r.Addr}
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.cur
	old, found := s.resolvers[k]
	switch {
	case !found && s.keys()+a.inFlight >= a.opts.MaxKeys:
		a.metrics.AggDropped.Inc()
	case !found || r.LastSeen.After(old.LastSeen):
		s.resolvers[k] = r
	}
}

// ObserveLost keeps a lost_events record for the next flush
// (collector.LostSink). At MaxKeys new records are dropped and counted,
// like observations; the metric has counted them already.
func (a *Aggregator) ObserveLost(l egressd.LostEvents) {
	k := lostKey{node: l.Node, source: l.Source, time: l.Time.UnixNano()}
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.cur
	old, found := s.lost[k]
	switch {
	case !found && s.keys()+a.inFlight >= a.opts.MaxKeys:
		a.metrics.AggDropped.Inc()
	case !found || l.Events > old:
		s.lost[k] = l.Events
	}
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

// Flush writes everything observed so far. A failed write is kept as it
// is and retried, under the same rollup ID, by the next flush before
// anything newer; meanwhile observations go on accumulating.
func (a *Aggregator) Flush(ctx context.Context) error {
	a.flushMu.Lock()
	defer a.flushMu.Unlock()
	if a.pending != nil {
		if err := a.write(ctx, a.pending, a.pendingKeys); err != nil {
			return fmt.Errorf("retry flush of %d aggregates: %w", a.pendingKeys, err)
		}
		a.pending, a.pendingKeys = nil, 0
	}

	a.mu.Lock()
	s := a.cur
	a.cur = newRollupState(a.budgets)
	a.inFlight = s.keys()
	a.sweepBudgets()
	a.mu.Unlock()
	if s.keys() == 0 && len(s.cursors) == 0 {
		return nil
	}
	r := s.rollup()
	r.ID = rollupID()
	if err := a.write(ctx, r, s.keys()); err != nil {
		a.pending, a.pendingKeys = r, s.keys()
		return fmt.Errorf("flush %d aggregates: %w", s.keys(), err)
	}
	return nil
}

// write writes r, of keys keys, under a.flushMu. The keys count against
// MaxKeys until it succeeds.
func (a *Aggregator) write(ctx context.Context, r *egressd.Rollup, keys int) error {
	start := time.Now()
	err := a.w.WriteRollup(ctx, r)
	a.metrics.FlushDuration.Observe(time.Since(start).Seconds())
	a.mu.Lock()
	if err != nil {
		a.inFlight = keys
	} else {
		a.inFlight = 0
	}
	a.metrics.AggKeys.Set(float64(a.cur.keys() + a.inFlight))
	a.mu.Unlock()
	if err != nil {
		a.metrics.flushFailed.Inc()
		return err
	}
	a.metrics.flushOK.Inc()
	a.metrics.FlushedRows.Add(float64(len(r.Destinations) + len(r.Hourly) + len(r.DNSQueries)))
	var newest time.Time
	for _, c := range r.Cursors {
		if c.Time.After(newest) {
			newest = c.Time
		}
	}
	if !newest.IsZero() {
		a.metrics.CursorLagSecs.Set(a.opts.Now().Sub(newest).Seconds())
	}
	return nil
}

// rollupID returns a random ID for a flush's rollup.
func rollupID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24)
	return hex.EncodeToString(b[:])
}

// sweepBudgets logs the apps whose observations were sampled since the
// last flush, and drops the budgets of past hours, under a.mu, between two
// states: no class of the new one points to a budget yet.
func (a *Aggregator) sweepBudgets() {
	for app, b := range a.budgets {
		if b.sampled > 0 {
			a.log.Warn("app_names_sampled", "app", app.String(), "names_kept", b.len(),
				"observations_not_kept", b.sampled, "max_keys_per_app", a.opts.MaxKeysPerApp)
			b.sampled = 0
		}
		if b.hour < a.newest {
			delete(a.budgets, app)
		}
	}
}

// merge adds o into s (commutative, like the database upsert).
func (s *rollupState) merge(o *rollupState) {
	for ko, v := range o.dests {
		k := ko
		k.class, _ = s.classIndex(o.classes[ko.class], true)
		d, found := s.dests[k]
		switch {
		case !found:
			d = destAgg{first: v.first, last: v.last, nameSource: v.nameSource}
		case v.first < d.first:
			s.setFirst(k, &d, v.first)
		}
		flows, denied := o.implicit(ko, &v)
		s.addHour(k, &d, unixHour(v.first), flows, denied)
		if v.flags&spilled != 0 {
			for _, b := range o.spill[ko] {
				s.addHour(k, &d, b.hour, b.flows, b.denied)
			}
		}
		d.last = max(d.last, v.last)
		d.flows += v.flows
		s.addDenied(k, &d, o.deniedOf(ko, &v))
		d.verdicts |= v.verdicts
		if d.pod == 0 {
			d.pod = s.podIndex(o.pods[v.pod])
		}
		s.dests[k] = d
	}
	for k, v := range o.dns {
		k.class, _ = s.classIndex(o.classes[k.class], true)
		d, found := s.dns[k]
		if found {
			d.first, d.last = min(d.first, v.first), max(d.last, v.last)
			d.queries += v.queries
			v = d
		}
		s.dns[k] = v
	}
	for k, v := range o.answers {
		if old, ok := s.answers[k]; !ok || !v.Expires.Before(old.Expires) {
			s.answers[k] = v
		}
	}
	for k, v := range o.cursors {
		s.cursors[k] = max(s.cursors[k], v)
	}
	for k, v := range o.labelSets {
		old, found := s.labelSets[k]
		s.labelSets[k] = mergeLabelSet(old, v, found)
	}
	for k, v := range o.resolvers {
		if old, ok := s.resolvers[k]; !ok || v.LastSeen.After(old.LastSeen) {
			s.resolvers[k] = v
		}
	}
	for k, v := range o.lost {
		s.lost[k] = max(s.lost[k], v)
	}
}

// rollup converts the state to the domain type, sorted so that writes take
// row locks in one order (no deadlocks between concurrent collectors).
func (s *rollupState) rollup() *egressd.Rollup {
	r := &egressd.Rollup{}
	if len(s.dests) > 0 {
		r.Destinations = make([]egressd.DestinationRollup, 0, len(s.dests))
		r.Hourly = make([]egressd.HourlyRollup, 0, len(s.dests)+s.spilled)
	}
	for k, v := range s.dests {
		c := s.classes[k.class]
		dst := egressd.Destination{Name: k.name, Port: k.port, Protocol: c.proto}
		r.Destinations = append(r.Destinations, egressd.DestinationRollup{
			App: c.app, Destination: dst,
			FirstSeen: time.Unix(0, v.first).UTC(), LastSeen: time.Unix(0, v.last).UTC(),
			Flows: v.flows, DroppedFlows: s.deniedOf(k, &v), Verdicts: egressd.VerdictSet(v.verdicts),
			ExamplePod: s.pods[v.pod], NameSource: v.nameSource,
		})
		flows, denied := s.implicit(k, &v)
		r.Hourly = append(r.Hourly, egressd.HourlyRollup{
			App: c.app, Destination: dst, Hour: time.Unix(unixHour(v.first)*3600, 0).UTC(),
			Flows: flows, DroppedFlows: denied,
		})
		if v.flags&spilled != 0 {
			for _, b := range s.spill[k] {
				r.Hourly = append(r.Hourly, egressd.HourlyRollup{
					App: c.app, Destination: dst, Hour: time.Unix(b.hour*3600, 0).UTC(),
					Flows: b.flows, DroppedFlows: b.denied,
				})
			}
		}
	}
	sort.Slice(r.Destinations, func(i, j int) bool {
		return lessDest(r.Destinations[i].App, r.Destinations[i].Destination, r.Destinations[j].App, r.Destinations[j].Destination)
	})
	sort.Slice(r.Hourly, func(i, j int) bool {
		a, b := r.Hourly[i], r.Hourly[j]
		if a.App != b.App || a.Destination != b.Destination {
			return lessDest(a.App, a.Destination, b.App, b.Destination)
		}
		return a.Hour.Before(b.Hour)
	})
	for k, v := range s.dns {
		r.DNSQueries = append(r.DNSQueries, egressd.DNSQueryRollup{
			App: s.classes[k.class].app, Name: k.name,
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
	for _, a := range s.answers {
		r.DNSAnswers = append(r.DNSAnswers, a)
	}
	sort.Slice(r.DNSAnswers, func(i, j int) bool {
		a, b := r.DNSAnswers[i], r.DNSAnswers[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Pod != b.Pod {
			return a.Pod < b.Pod
		}
		return a.Addr.Less(b.Addr)
	})
	for src, t := range s.cursors {
		r.Cursors = append(r.Cursors, egressd.Cursor{Source: src, Time: time.Unix(0, t).UTC()})
	}
	for _, v := range s.labelSets {
		r.LabelSets = append(r.LabelSets, v)
	}
	sort.Slice(r.LabelSets, func(i, j int) bool {
		a, b := r.LabelSets[i], r.LabelSets[j]
		if a.App != b.App {
			return lessApp(a.App, b.App)
		}
		return labelSetKey(a.Labels) < labelSetKey(b.Labels)
	})
	for _, v := range s.resolvers {
		r.Resolvers = append(r.Resolvers, v)
	}
	for k, v := range s.lost {
		r.Lost = append(r.Lost, egressd.LostEvents{Node: k.node, Time: time.Unix(0, k.time).UTC(), Source: k.source, Events: v})
	}
	sort.Slice(r.Lost, func(i, j int) bool {
		a, b := r.Lost[i], r.Lost[j]
		if a.Node != b.Node {
			return a.Node < b.Node
		}
		if !a.Time.Equal(b.Time) {
			return a.Time.Before(b.Time)
		}
		return a.Source < b.Source
	})
	sort.Slice(r.Resolvers, func(i, j int) bool {
		a, b := r.Resolvers[i], r.Resolvers[j]
		if a.App != b.App {
			return lessApp(a.App, b.App)
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Addr < b.Addr
	})
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
