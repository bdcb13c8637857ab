package detector_test

import (
	"context"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/detector"
)

// countingWriter keeps, per app, the flows written and, when names is not
// nil, the destination names: what the database would hold, without the
// rest of the rows.
type countingWriter struct {
	mu    sync.Mutex
	names map[egressd.App]map[string]struct{}
	flows map[egressd.App]int64
}

func (w *countingWriter) WriteRollup(_ context.Context, r *egressd.Rollup) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, d := range r.Destinations {
		w.flows[d.App] += d.Flows
		if w.names == nil {
			continue
		}
		if w.names[d.App] == nil {
			w.names[d.App] = map[string]struct{}{}
		}
		w.names[d.App][d.Destination.Name] = struct{}{}
	}
	return nil
}

// tunnel is a pipeline's aggregator and detector, as serve wires them
// (both are sinks of the same observations), with small per-app bounds.
type tunnel struct {
	agg      *collector.Aggregator
	aggM     *collector.Metrics
	det      *detector.Detector
	detM     *detector.Metrics
	w        *countingWriter
	store    *fakeStore
	others   []egressd.App
	otherDst []egressd.Destination
}

const (
	tunnelAggPerApp = 1_000
	tunnelDetPerApp = 1_000
	tunnelApps      = 20  // other apps
	tunnelAppDests  = 100 // destinations of each other app
)

var evil = egressd.App{Cluster: "homelab", Namespace: "media", Name: "tunnel"}

func newTunnel(tb testing.TB, store detector.Store, aggPerApp, detPerApp int, keepNames bool) *tunnel {
	tb.Helper()
	tn := &tunnel{w: &countingWriter{flows: map[egressd.App]int64{}}}
	if keepNames {
		tn.w.names = map[egressd.App]map[string]struct{}{}
	}
	tn.aggM = collector.NewMetrics(prometheus.NewRegistry())
	ao := collector.DefaultAggregatorOptions()
	ao.MaxKeysPerApp = aggPerApp
	agg, err := collector.NewAggregator(ao, tn.w, slog.New(slog.DiscardHandler), tn.aggM)
	require.NoError(tb, err)
	tn.agg = agg
	tn.detM = detector.NewMetrics(prometheus.NewRegistry())
	do := detector.DefaultOptions()
	do.MaxKeysPerApp = detPerApp
	do.QueueSize = 1_000
	det, err := detector.New(do, store, slog.New(slog.DiscardHandler), tn.detM)
	require.NoError(tb, err)
	tn.det = det
	// Every app is past its learning period; the other apps' destinations
	// are in the window already, so only the tunnel raises.
	first := map[egressd.App]time.Time{evil: t0.Add(-48 * time.Hour)}
	var window []egressd.WindowEntry
	for i := range tunnelApps {
		a := egressd.App{Cluster: "homelab", Namespace: "apps", Name: "app-" + strconv.Itoa(i)}
		tn.others = append(tn.others, a)
		first[a] = t0.Add(-48 * time.Hour)
		for j := range tunnelAppDests {
			dst := egressd.Destination{Name: "api-" + strconv.Itoa(j) + ".example.com", Port: 443, Protocol: "TCP"}
			if i == 0 {
				tn.otherDst = append(tn.otherDst, dst)
			}
			window = append(window, egressd.WindowEntry{App: a, Destination: dst})
		}
	}
	det.LoadApps(first)
	det.LoadWindow(window)
	return tn
}

// stream sends n tunnel names, one every 10 ms of flow time from t0, each
// once, with one flow of another app's destination for every 10 of them,
// and flushes every 10 s of flow time as serve would.
func (tn *tunnel) stream(tb testing.TB, n int) {
	var o egressd.Observation
	next := 0
	for i := range n {
		at := t0.Add(time.Duration(i) * 10 * time.Millisecond)
		o = egressd.Observation{
			Time: at, Kind: egressd.KindConnect, App: evil, Verdict: egressd.VerdictForwarded, NameSource: egressd.NameFromDNS,
			Destination: egressd.Destination{Name: "x" + strconv.Itoa(i) + "k9.t.evil.example", Port: 443, Protocol: "TCP"},
		}
		tn.agg.Observe(&o)
		tn.det.Observe(&o)
		if i%10 == 0 {
			o = egressd.Observation{
				Time: at, Kind: egressd.KindConnect, App: tn.others[next%tunnelApps], Verdict: egressd.VerdictForwarded,
				Destination: tn.otherDst[(next/tunnelApps)%tunnelAppDests],
			}
			next++
			tn.agg.Observe(&o)
			tn.det.Observe(&o)
		}
		if i%1000 == 999 {
			require.NoError(tb, tn.agg.Flush(context.Background()))
		}
	}
	require.NoError(tb, tn.agg.Flush(context.Background()))
}

// TestTunnelStaysBoundedAndAlerts streams 200k distinct names of one app
// (a DNS tunnel, each name once, over 33 minutes of flow time) with other
// apps' usual traffic through the real aggregator and detector. Memory
// grows with the per-app bounds, not with the names; the other apps lose
// nothing; every observation the aggregator did not keep is counted; and
// the tunnel raises, per 10-minute flood window, its first 5 names one by
// one and one flood.
func TestTunnelStaysBoundedAndAlerts(t *testing.T) {
	// Not parallel: it measures the heap.
	const names = 200_000
	store := &fakeStore{}
	tn := newTunnel(t, store, tunnelAggPerApp, tunnelDetPerApp, true)
	before := liveHeap()
	tn.stream(t, names)
	grown := liveHeap() - before
	runtime.KeepAlive(tn)
	drain(t, tn.det)
	t.Logf("heap grown by %d bytes for %d tunnel names (%.1f bytes/name)", grown, names, float64(grown)/names)
	// Each bound holds 1000 keys, at well under 1 KiB each with the
	// aggregator's name hashes; 200k names unbounded would be tens of MB.
	require.Less(t, grown, int64(1<<20)*(tunnelAggPerApp+tunnelDetPerApp)/1000, "heap growth must follow the per-app bounds")

	// The other apps: every flow of every destination.
	otherFlows := int64(0)
	for _, a := range tn.others {
		require.Len(t, tn.w.names[a], tunnelAppDests, a.String())
		otherFlows += tn.w.flows[a]
	}
	require.Equal(t, int64(names/10), otherFlows)
	// The tunnel: at most its bound of names in the hour, all of the first
	// half, and every name not kept counted.
	kept := len(tn.w.names[evil])
	require.LessOrEqual(t, kept, tunnelAggPerApp)
	require.Greater(t, kept, tunnelAggPerApp/2)
	require.Equal(t, int64(kept), tn.w.flows[evil])
	require.Equal(t, float64(names-kept), testutil.ToFloat64(tn.aggM.AggSampled))
	require.Zero(t, testutil.ToFloat64(tn.aggM.AggDropped))

	// The detector remembered at most its bound and counted the rest.
	require.Equal(t, float64(tunnelApps*tunnelAppDests+tunnelDetPerApp), testutil.ToFloat64(tn.detM.KnownKeys))
	require.Equal(t, float64(names-tunnelDetPerApp), testutil.ToFloat64(tn.detM.NotRemembered))
	require.Zero(t, testutil.ToFloat64(tn.detM.QueueDropped))

	// Alerts: 2000 s of flow time are 4 flood windows (0, 10, 20, 30 min).
	windows := 4
	var novel, floods []egressd.Anomaly
	for _, a := range store.raised {
		require.Equal(t, evil, a.App, "only the tunnel raises")
		switch a.Kind {
		case egressd.AnomalyNovelDestination:
			novel = append(novel, a)
		case egressd.AnomalyNovelFlood:
			floods = append(floods, a)
		default:
			t.Fatalf("unexpected anomaly %s", a.Kind)
		}
	}
	require.Len(t, floods, windows)
	require.Len(t, novel, 5*windows)
	for w, f := range floods {
		start := t0.Add(time.Duration(w) * 10 * time.Minute)
		require.Equal(t, start.UTC().Format(time.RFC3339), f.Details["window_start"])
		require.Equal(t, "evil.example", f.Details["domain"])
		// The first 5 of the window are raised one by one: the flood
		// window starts with the first novel name of the window.
		for _, a := range novel[5*w : 5*w+5] {
			require.False(t, a.Time.Before(start))
			require.True(t, a.Time.Before(start.Add(10*time.Minute)))
		}
	}
}

// BenchmarkTunnel reports the heap kept per tunnel name streamed (with
// flushes), by the aggregator and the detector, with the default per-app
// bounds and with bounds too large to matter (what a tunnel cost before
// them). It reports; it asserts nothing.
func BenchmarkTunnel(b *testing.B) {
	for _, c := range []struct {
		name              string
		aggPerApp, detPer int
	}{
		{"bounded", collector.DefaultAggregatorOptions().MaxKeysPerApp, detector.DefaultOptions().MaxKeysPerApp},
		{"unbounded", 1 << 30, 1 << 30},
	} {
		for _, names := range []int{200_000, 1_000_000} {
			b.Run(c.name+"/names="+strconv.Itoa(names), func(b *testing.B) {
				var grown int64
				for b.Loop() {
					tn := newTunnel(b, discardStore{}, c.aggPerApp, c.detPer, false)
					before := liveHeap()
					tn.stream(b, names)
					grown = liveHeap() - before
					runtime.KeepAlive(tn)
				}
				b.ReportMetric(float64(grown), "heap-B")
				b.ReportMetric(float64(grown)/float64(names), "heap-B/name")
			})
		}
	}
}

// TestDNSTunnelRaisesOneFloodPerWindow: a DNS tunnel asks for thousands of
// names and connects to none of them. Past DNSFloodThreshold distinct
// names in a flood window, its app raises one DNS flood, naming the pod
// and the parent domain; an app asking for its few names again and again,
// a learning app and an unbounded app raise nothing.
func TestDNSTunnelRaisesOneFloodPerWindow(t *testing.T) {
	t.Parallel()
	store := &fakeStore{}
	do := detector.DefaultOptions()
	do.DNSFloodThreshold = 50
	quiet := egressd.App{Cluster: "homelab", Namespace: "media", Name: "sonarr"}
	learning := egressd.App{Cluster: "homelab", Namespace: "media", Name: "new"}
	crawler := egressd.App{Cluster: "homelab", Namespace: "media", Name: "crawler"}
	do.Unbounded = []egressd.App{crawler}
	det, err := detector.New(do, store, slog.New(slog.DiscardHandler), detector.NewMetrics(prometheus.NewRegistry()))
	require.NoError(t, err)
	det.LoadApps(map[egressd.App]time.Time{evil: t0.Add(-48 * time.Hour), quiet: t0.Add(-48 * time.Hour), crawler: t0.Add(-48 * time.Hour), learning: t0})

	ask := func(a egressd.App, name string, at time.Time) {
		det.Observe(&egressd.Observation{Time: at, Kind: egressd.KindDNSQuery, App: a, Pod: a.Name + "-pod",
			Destination: egressd.Destination{Name: name}, Verdict: egressd.VerdictForwarded})
	}
	// 30 minutes: the tunnel asks 2 new names a second; the others ask as
	// many questions, the quiet one among 20 names.
	for i := range 3600 {
		at := t0.Add(time.Duration(i) * 500 * time.Millisecond)
		ask(evil, "q"+strconv.Itoa(i)+".t.evil.example", at)
		ask(quiet, "api-"+strconv.Itoa(i%20)+".example.com", at)
		ask(learning, "n"+strconv.Itoa(i)+".example.net", at)
		ask(crawler, "page"+strconv.Itoa(i)+".example.org", at)
	}
	drain(t, det)

	require.Len(t, store.raised, 3, "one per 10-minute window, of the tunnel only")
	for w, a := range store.raised {
		start := t0.Add(time.Duration(w) * 10 * time.Minute)
		require.Equal(t, evil, a.App)
		require.Equal(t, egressd.AnomalyDNSTunnel, a.Kind)
		require.Equal(t, "EgressDNSTunnel", a.Kind.AlertName())
		require.Equal(t, egressd.DNSTunnelFingerprint(evil, start), a.Fingerprint)
		require.Equal(t, "dns", a.Details["signal"])
		require.Equal(t, "evil.example", a.Details["domain"])
		require.Equal(t, "tunnel-pod", a.Pod)
		// The 51st distinct name of the window raises it.
		require.Equal(t, start.Add(50*500*time.Millisecond), a.Time)
		require.Contains(t, a.Summary, "more than 50 distinct names")
	}
}
