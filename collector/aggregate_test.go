package collector_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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
	if diff := cmp.Diff(want, w.rollups[0]); diff != "" {
		t.Fatalf("rollup (-want +got):\n%s", diff)
	}
	require.NoError(t, a.Flush(context.Background()))
	require.Len(t, w.rollups, 1, "an empty flush writes nothing")
}

func TestAggregatorKeepsAFailedFlush(t *testing.T) {
	t.Parallel()
	fail := true
	w := &fakeWriter{WriteFn: func(*egressd.Rollup) error {
		if fail {
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
	fail = false
	require.NoError(t, a.Flush(context.Background()))
	require.Len(t, w.rollups, 1)
	r := w.rollups[0]
	require.Equal(t, int64(2), r.Destinations[0].Flows)
	require.Equal(t, t0, r.Destinations[0].FirstSeen)
	require.Equal(t, []egressd.Cursor{{Source: "hubble", Time: t0.Add(time.Minute)}}, r.Cursors)
	require.Equal(t, 1.0, testutil.ToFloat64(m.Flushes.WithLabelValues("error")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.Flushes.WithLabelValues("ok")))
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
