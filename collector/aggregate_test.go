package collector_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector"
)

// fakeWriter is a Writer whose behaviour each test sets.
type fakeWriter struct {
	mu       sync.Mutex
	WriteFn  func(r *egressd.Rollup) error
	rollups  []*egressd.Rollup
	signaled chan struct{}
}

func (w *fakeWriter) WriteRollup(_ context.Context, r *egressd.Rollup) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.WriteFn != nil {
		if err := w.WriteFn(r); err != nil {
			return err
		}
	}
	w.rollups = append(w.rollups, r)
	if w.signaled != nil {
		select {
		case w.signaled <- struct{}{}:
		default:
		}
	}
	return nil
}

func newAggregator(t *testing.T, w collector.Writer, maxKeys int) (*collector.Aggregator, *collector.Metrics) {
	t.Helper()
	m := collector.NewMetrics(prometheus.NewRegistry())
	opts := collector.DefaultAggregatorOptions()
	opts.MaxKeys = maxKeys
	a, err := collector.NewAggregator(opts, w, slog.New(slog.NewTextHandler(io.Discard, nil)), m)
	require.NoError(t, err)
	return a, m
}

var (
	appA  = egressd.App{Cluster: "c", Namespace: "media", Name: "recyclarr"}
	appB  = egressd.App{Cluster: "c", Namespace: "media", Name: "sonarr"}
	ghub  = egressd.Destination{Name: "api.github.com", Port: 443, Protocol: "TCP"}
	smtp  = egressd.Destination{Name: "203.0.113.50", Port: 25, Protocol: "TCP"}
	query = egressd.Destination{Name: "example.com", Port: 53, Protocol: "UDP"}
)

func obs(app egressd.App, d egressd.Destination, at time.Time, v egressd.Verdict, pod string) *egressd.Observation {
	return &egressd.Observation{Time: at, Kind: egressd.KindConnect, App: app, Destination: d, Verdict: v, Pod: pod, NameSource: egressd.NameFromFlow}
}

func TestAggregatorRollsUp(t *testing.T) {
	t.Parallel()
	w := &fakeWriter{}
	a, _ := newAggregator(t, w, 1000)
	a.Observe(obs(appB, smtp, t0.Add(2*time.Hour), egressd.VerdictDropped, "sonarr-1"))
	a.Observe(obs(appA, ghub, t0.Add(70*time.Minute), egressd.VerdictForwarded, ""))
	a.Observe(obs(appA, ghub, t0, egressd.VerdictForwarded, "recyclarr-1"))
	a.Observe(obs(appA, ghub, t0.Add(5*time.Minute), egressd.VerdictForwarded, "recyclarr-2"))
	q := obs(appA, query, t0, egressd.VerdictForwarded, "recyclarr-1")
	q.Kind = egressd.KindDNSQuery
	a.Observe(q)
	a.Observe(q)
	a.Advance("hubble", t0.Add(3*time.Hour))
	a.Advance("hubble", t0.Add(time.Hour)) // older: ignored
	require.NoError(t, a.Flush(context.Background()))
	require.Len(t, w.rollups, 1)
	want := &egressd.Rollup{
		Destinations: []egressd.DestinationRollup{
			{App: appA, Destination: ghub, FirstSeen: t0, LastSeen: t0.Add(70 * time.Minute), Flows: 3,
				Verdicts: egressd.VerdictSet(0).Add(egressd.VerdictForwarded), ExamplePod: "recyclarr-1", NameSource: egressd.NameFromFlow},
			{App: appB, Destination: smtp, FirstSeen: t0.Add(2 * time.Hour), LastSeen: t0.Add(2 * time.Hour), Flows: 1, DroppedFlows: 1,
				Verdicts: egressd.VerdictSet(0).Add(egressd.VerdictDropped), ExamplePod: "sonarr-1", NameSource: egressd.NameFromFlow},
		},
		Hourly: []egressd.HourlyRollup{
			{App: appA, Destination: ghub, Hour: t0, Flows: 2},
			{App: appA, Destination: ghub, Hour: t0.Add(time.Hour), Flows: 1},
			{App: appB, Destination: smtp, Hour: t0.Add(2 * time.Hour), Flows: 1, DroppedFlows: 1},
		},
		DNSQueries: []egressd.DNSQueryRollup{{App: appA, Name: "example.com", FirstSeen: t0, LastSeen: t0, Queries: 2}},
		Cursors:    []egressd.Cursor{{Source: "hubble", Time: t0.Add(3 * time.Hour)}},
	}
	require.Len(t, w.rollups[0].ID, 32, "every flush has a random ID")
	if diff := cmp.Diff(want, w.rollups[0], cmpopts.IgnoreFields(egressd.Rollup{}, "ID")); diff != "" {
		t.Fatalf("rollup (-want +got):\n%s", diff)
	}
	require.NoError(t, a.Flush(context.Background()))
	require.Len(t, w.rollups, 1, "an empty flush writes nothing")
}

func TestAggregatorKeepsAFailedFlush(t *testing.T) {
	t.Parallel()
	fail := 2
	var failedIDs []string
	w := &fakeWriter{WriteFn: func(r *egressd.Rollup) error {
		if fail > 0 {
			fail--
			failedIDs = append(failedIDs, r.ID)
			return errors.New("connection refused")
		}
		return nil
	}}
	a, m := newAggregator(t, w, 1000)
	a.Observe(obs(appA, ghub, t0, egressd.VerdictForwarded, "p"))
	a.Advance("hubble", t0)
	require.ErrorContains(t, a.Flush(context.Background()), "connection refused")
	a.Observe(obs(appA, ghub, t0.Add(time.Minute), egressd.VerdictForwarded, "p"))
	a.Advance("hubble", t0.Add(time.Minute))
	require.ErrorContains(t, a.Flush(context.Background()), "retry flush of 2 aggregates: connection refused")
	require.NoError(t, a.Flush(context.Background()))

	// The failed rollup is retried as it was, under its ID (so that a
	// write whose commit did land is not counted twice), then the newer
	// one follows.
	require.Len(t, failedIDs, 2)
	require.Equal(t, failedIDs[0], failedIDs[1], "the retry has the failed write's ID")
	require.Len(t, w.rollups, 2)
	first, second := w.rollups[0], w.rollups[1]
	require.Equal(t, failedIDs[0], first.ID)
	require.NotEqual(t, first.ID, second.ID)
	require.Equal(t, int64(1), first.Destinations[0].Flows)
	require.Equal(t, t0, first.Destinations[0].FirstSeen)
	require.Equal(t, []egressd.Cursor{{Source: "hubble", Time: t0}}, first.Cursors)
	require.Equal(t, int64(1), second.Destinations[0].Flows)
	require.Equal(t, []egressd.Cursor{{Source: "hubble", Time: t0.Add(time.Minute)}}, second.Cursors)
	require.Equal(t, 2.0, testutil.ToFloat64(m.Flushes.WithLabelValues("error")))
	require.Equal(t, 2.0, testutil.ToFloat64(m.Flushes.WithLabelValues("ok")))
}

func TestAggregatorBoundsKeys(t *testing.T) {
	t.Parallel()
	w := &fakeWriter{}
	a, m := newAggregator(t, w, 4) // 2 destinations = 4 keys (destination + hour)
	a.Observe(obs(appA, ghub, t0, egressd.VerdictForwarded, ""))
	a.Observe(obs(appB, ghub, t0, egressd.VerdictForwarded, ""))
	a.Observe(obs(appB, smtp, t0, egressd.VerdictForwarded, "")) // a new key when full: dropped
	a.Observe(obs(appA, ghub, t0, egressd.VerdictForwarded, "")) // an existing key still counts
	require.Equal(t, 1.0, testutil.ToFloat64(m.AggDropped))
	require.NoError(t, a.Flush(context.Background()))
	require.Len(t, w.rollups[0].Destinations, 2)
	require.Equal(t, int64(2), w.rollups[0].Destinations[0].Flows)
}

// TestAggregatorStaysBoundedThroughAnOutage: while PostgreSQL refuses every
// flush and new keys keep arriving, also during the writes, the aggregator
// never holds more than MaxKeys keys, and every observation it could not
// keep is counted; once PostgreSQL is back, what it kept is written.
func TestAggregatorStaysBoundedThroughAnOutage(t *testing.T) {
	t.Parallel()
	const maxKeys = 100 // 50 destinations with their hour bucket
	w := &fakeWriter{}
	a, m := newAggregator(t, w, maxKeys)
	sent := 0
	observeNew := func(n int) {
		for range n {
			d := egressd.Destination{Name: fmt.Sprintf("n%d.example", sent), Port: 443, Protocol: "TCP"}
			a.Observe(obs(appA, d, t0, egressd.VerdictForwarded, ""))
			sent++
		}
	}
	down := true
	w.WriteFn = func(*egressd.Rollup) error {
		if !down {
			return nil
		}
		observeNew(30) // the stream goes on while the write hangs
		return errors.New("connection refused")
	}
	for range 10 {
		observeNew(40)
		require.Error(t, a.Flush(context.Background()))
		require.LessOrEqual(t, testutil.ToFloat64(m.AggKeys), float64(maxKeys))
	}
	down = false
	require.NoError(t, a.Flush(context.Background()))
	require.Len(t, w.rollups, 2, "the failed flush, retried, then what came meanwhile")
	kept := len(w.rollups[0].Destinations) + len(w.rollups[1].Destinations)
	require.LessOrEqual(t, 2*kept, maxKeys)
	require.Equal(t, float64(sent-kept), testutil.ToFloat64(m.AggDropped), "every observation not kept is counted")
}

func TestAggregatorRunFlushesOnStop(t *testing.T) {
	t.Parallel()
	w := &fakeWriter{}
	a, _ := newAggregator(t, w, 1000)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	a.Observe(obs(appA, ghub, t0, egressd.VerdictForwarded, ""))
	cancel()
	require.NoError(t, <-done)
	require.Len(t, w.rollups, 1)
}

func TestAggregatorFlushesEarlyWhenFilling(t *testing.T) {
	t.Parallel()
	w := &fakeWriter{signaled: make(chan struct{}, 1)}
	a, _ := newAggregator(t, w, 8) // the default interval is 10 s: only an early flush is fast
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	for i := 0; i < 4; i++ {
		a.Observe(obs(appA, egressd.Destination{Name: "d" + string(rune('a'+i)), Port: 443, Protocol: "TCP"}, t0, egressd.VerdictForwarded, ""))
	}
	a.Observe(obs(appA, ghub, t0, egressd.VerdictForwarded, "")) // sees half full: signals
	select {
	case <-w.signaled:
	case <-time.After(5 * time.Second):
		t.Fatal("no early flush")
	}
	cancel()
	require.NoError(t, <-done)
}

func TestAggregatorBoundsHourBuckets(t *testing.T) {
	t.Parallel()
	w := &fakeWriter{}
	a, m := newAggregator(t, w, 3) // 1 destination with 2 hours = 3 keys
	a.Observe(obs(appA, ghub, t0, egressd.VerdictForwarded, ""))
	a.Observe(obs(appA, ghub, t0.Add(time.Hour), egressd.VerdictForwarded, ""))
	a.Observe(obs(appA, ghub, t0.Add(2*time.Hour), egressd.VerdictForwarded, "")) // a new hour when full: dropped
	a.Observe(obs(appA, ghub, t0.Add(-time.Hour), egressd.VerdictForwarded, ""))  // an earlier one too
	a.Observe(obs(appA, ghub, t0.Add(time.Minute), egressd.VerdictDropped, ""))   // an existing hour still counts
	require.Equal(t, 2.0, testutil.ToFloat64(m.AggDropped))
	require.NoError(t, a.Flush(context.Background()))
	want := []egressd.HourlyRollup{
		{App: appA, Destination: ghub, Hour: t0, Flows: 2, DroppedFlows: 1},
		{App: appA, Destination: ghub, Hour: t0.Add(time.Hour), Flows: 1},
	}
	if diff := cmp.Diff(want, w.rollups[0].Hourly); diff != "" {
		t.Fatalf("hourly (-want +got):\n%s", diff)
	}
}

// TestAggregatorMergesLikeOneInterval feeds the same observations, in an
// order where first-seen times move back across hours, through flushes
// that fail (with observations arriving during the failed writes) and
// checks that the one successful flush equals a plain per-key, per-hour
// count of everything.
func TestAggregatorMergesLikeOneInterval(t *testing.T) {
	t.Parallel()
	rnd := rand.New(rand.NewPCG(1, 2))
	apps := []egressd.App{appA, appB, {Cluster: "d", Namespace: "media", Name: "recyclarr"}}
	verdicts := []egressd.Verdict{egressd.VerdictForwarded, egressd.VerdictDropped, egressd.VerdictError, egressd.VerdictAudit}
	var all []*egressd.Observation
	next := func() *egressd.Observation {
		app := apps[rnd.IntN(len(apps))]
		d := egressd.Destination{Name: []string{"a.example", "b.example", "203.0.113.9"}[rnd.IntN(3)], Port: []uint16{443, 80}[rnd.IntN(2)], Protocol: "TCP"}
		if rnd.IntN(5) == 0 {
			d.Protocol = "UDP"
		}
		o := obs(app, d, t0.Add(time.Duration(rnd.IntN(6*3600))*time.Second-3*time.Hour), verdicts[rnd.IntN(len(verdicts))], "")
		// The example pod and name source depend on which observation
		// came first, which merging reorders: keep them per key here.
		o.Pod = app.Cluster + "-" + app.Name + "-" + d.Name
		if rnd.IntN(10) == 0 {
			o.Kind = egressd.KindDNSQuery
			o.Pod = "dns-" + o.Pod
		}
		all = append(all, o)
		return o
	}
	failures := 3
	w := &fakeWriter{}
	a, m := newAggregator(t, w, 1_000_000)
	w.WriteFn = func(*egressd.Rollup) error {
		if failures == 0 {
			return nil
		}
		failures--
		for range 50 {
			a.Observe(next()) // arrives while the failed write runs
		}
		return errors.New("connection refused")
	}
	for range 4 {
		for range 200 {
			a.Observe(next())
		}
		err := a.Flush(context.Background())
		if failures > 0 || err != nil {
			require.Error(t, err)
			want := referenceRollup(all)
			require.GreaterOrEqual(t, testutil.ToFloat64(m.AggKeys), float64(len(want.Destinations)+len(want.Hourly)+len(want.DNSQueries)), "every key is held after a failed flush")
		}
	}
	require.NoError(t, a.Flush(context.Background()))
	require.Len(t, w.rollups, 2, "the failed flush, retried as it was, then the rest")
	if diff := cmp.Diff(referenceRollup(all), mergeRollups(w.rollups...)); diff != "" {
		t.Fatalf("rollups merged (-want +got):\n%s", diff)
	}
}

// referenceRollup counts observations the plain way: one map entry per
// destination, per hour and per DNS name.
func referenceRollup(all []*egressd.Observation) *egressd.Rollup {
	type dk struct {
		app egressd.App
		dst egressd.Destination
	}
	type hk struct {
		dk
		hour time.Time
	}
	dests := map[dk]*egressd.DestinationRollup{}
	hours := map[hk]*egressd.HourlyRollup{}
	dns := map[dk]*egressd.DNSQueryRollup{}
	for _, o := range all {
		denied := int64(0)
		if o.Verdict.Denied() {
			denied = 1
		}
		if o.Kind == egressd.KindDNSQuery {
			k := dk{app: o.App, dst: egressd.Destination{Name: o.Destination.Name}}
			q := dns[k]
			if q == nil {
				q = &egressd.DNSQueryRollup{App: o.App, Name: o.Destination.Name, FirstSeen: o.Time, LastSeen: o.Time}
				dns[k] = q
			}
			q.FirstSeen, q.LastSeen = minTime(q.FirstSeen, o.Time), maxTime(q.LastSeen, o.Time)
			q.Queries++
			continue
		}
		k := dk{app: o.App, dst: o.Destination}
		d := dests[k]
		if d == nil {
			d = &egressd.DestinationRollup{App: o.App, Destination: o.Destination, FirstSeen: o.Time, LastSeen: o.Time, ExamplePod: o.Pod, NameSource: o.NameSource}
			dests[k] = d
		}
		d.FirstSeen, d.LastSeen = minTime(d.FirstSeen, o.Time), maxTime(d.LastSeen, o.Time)
		d.Flows++
		d.DroppedFlows += denied
		d.Verdicts = d.Verdicts.Add(o.Verdict)
		h := hk{dk: k, hour: o.Time.Truncate(time.Hour)}
		b := hours[h]
		if b == nil {
			b = &egressd.HourlyRollup{App: o.App, Destination: o.Destination, Hour: h.hour}
			hours[h] = b
		}
		b.Flows++
		b.DroppedFlows += denied
	}
	return sortedRollup(dests, hours, dns)
}

type rollupKey struct {
	app egressd.App
	dst egressd.Destination
}

type hourKey struct {
	rollupKey
	hour time.Time
}

// mergeRollups merges rollups as PostgreSQL does (counts add, first-seen
// is the minimum, last-seen the maximum, verdicts OR; the example pod and
// name source are the same per key in these tests).
func mergeRollups(rs ...*egressd.Rollup) *egressd.Rollup {
	dests := map[rollupKey]*egressd.DestinationRollup{}
	hours := map[hourKey]*egressd.HourlyRollup{}
	dns := map[rollupKey]*egressd.DNSQueryRollup{}
	for _, r := range rs {
		for _, d := range r.Destinations {
			k := rollupKey{d.App, d.Destination}
			if m := dests[k]; m != nil {
				m.FirstSeen, m.LastSeen = minTime(m.FirstSeen, d.FirstSeen), maxTime(m.LastSeen, d.LastSeen)
				m.Flows += d.Flows
				m.DroppedFlows += d.DroppedFlows
				m.Verdicts |= d.Verdicts
				continue
			}
			dests[k] = &d
		}
		for _, h := range r.Hourly {
			k := hourKey{rollupKey{h.App, h.Destination}, h.Hour}
			if m := hours[k]; m != nil {
				m.Flows += h.Flows
				m.DroppedFlows += h.DroppedFlows
				continue
			}
			hours[k] = &h
		}
		for _, q := range r.DNSQueries {
			k := rollupKey{q.App, egressd.Destination{Name: q.Name}}
			if m := dns[k]; m != nil {
				m.FirstSeen, m.LastSeen = minTime(m.FirstSeen, q.FirstSeen), maxTime(m.LastSeen, q.LastSeen)
				m.Queries += q.Queries
				continue
			}
			dns[k] = &q
		}
	}
	return sortedRollup(dests, hours, dns)
}

// sortedRollup returns the rows in the aggregator's order.
func sortedRollup[DK, HK comparable](dests map[DK]*egressd.DestinationRollup, hours map[HK]*egressd.HourlyRollup, dns map[DK]*egressd.DNSQueryRollup) *egressd.Rollup {
	r := &egressd.Rollup{}
	for _, d := range dests {
		r.Destinations = append(r.Destinations, *d)
	}
	for _, h := range hours {
		r.Hourly = append(r.Hourly, *h)
	}
	for _, q := range dns {
		r.DNSQueries = append(r.DNSQueries, *q)
	}
	destKey := func(a egressd.App, d egressd.Destination) string {
		return fmt.Sprintf("%s\x00%s\x00%s\x00%s\x00%05d\x00%s", a.Cluster, a.Namespace, a.Name, d.Name, d.Port, d.Protocol)
	}
	sort.Slice(r.Destinations, func(i, j int) bool {
		return destKey(r.Destinations[i].App, r.Destinations[i].Destination) < destKey(r.Destinations[j].App, r.Destinations[j].Destination)
	})
	sort.Slice(r.Hourly, func(i, j int) bool {
		a, b := r.Hourly[i], r.Hourly[j]
		if ka, kb := destKey(a.App, a.Destination), destKey(b.App, b.Destination); ka != kb {
			return ka < kb
		}
		return a.Hour.Before(b.Hour)
	})
	sort.Slice(r.DNSQueries, func(i, j int) bool {
		a, b := r.DNSQueries[i], r.DNSQueries[j]
		return destKey(a.App, egressd.Destination{Name: a.Name}) < destKey(b.App, egressd.Destination{Name: b.Name})
	})
	return r
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
