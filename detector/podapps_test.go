package detector_test

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/detector"
)

// podAppSink is the collector's Sink, declared here so the test needs no
// collector import.
type podAppSink interface {
	Observe(o *egressd.Observation)
	Advance(source string, t time.Time)
}

var (
	_ detector.PodApps = (*detector.PodAppMap)(nil)
	_ podAppSink       = (*detector.PodAppMap)(nil)
)

var podAppT0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

func podAppMap(t testing.TB, ttl time.Duration, maxPods int) *detector.PodAppMap {
	t.Helper()
	o := detector.DefaultPodAppOptions()
	if ttl > 0 {
		o.TTL = ttl
	}
	if maxPods > 0 {
		o.MaxPods = maxPods
	}
	m, err := detector.NewPodAppMap(o)
	require.NoError(t, err)
	return m
}

func podAppObs(ns, app, pod string, at time.Time) *egressd.Observation {
	return &egressd.Observation{Time: at, Kind: egressd.KindConnect, App: egressd.App{Cluster: "home", Namespace: ns, Name: app}, Pod: pod}
}

func TestPodAppOptionsValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, detector.DefaultPodAppOptions().Validate())
	for _, tc := range []struct {
		name    string
		edit    func(*detector.PodAppOptions)
		wantErr string
	}{
		{"ttl", func(o *detector.PodAppOptions) { o.TTL = 0 }, "PodAppOptions.TTL"},
		{"max pods", func(o *detector.PodAppOptions) { o.MaxPods = -1 }, "PodAppOptions.MaxPods"},
		{"max pods per app", func(o *detector.PodAppOptions) { o.MaxPodsPerApp = 0 }, "PodAppOptions.MaxPodsPerApp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := detector.DefaultPodAppOptions()
			tc.edit(&o)
			require.ErrorContains(t, o.Validate(), tc.wantErr)
			_, err := detector.NewPodAppMap(o)
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestPodAppMapLookup(t *testing.T) {
	t.Parallel()
	m := podAppMap(t, 0, 0)
	m.Observe(podAppObs("shop", "web", "web-7d4f-x2", podAppT0))
	m.Observe(&egressd.Observation{Time: podAppT0, App: egressd.App{Namespace: egressd.HostNamespace, Name: "node-1"}}) // host network: no pod
	m.Advance("hubble", podAppT0.Add(time.Hour))                                                                        // no-op

	for _, tc := range []struct {
		name, ns, pod string
		want          egressd.App
		ok            bool
	}{
		{"known", "shop", "web-7d4f-x2", egressd.App{Cluster: "home", Namespace: "shop", Name: "web"}, true},
		{"same pod name, other namespace", "pay", "web-7d4f-x2", egressd.App{}, false},
		{"unknown pod", "shop", "web-7d4f-zz", egressd.App{}, false},
		{"host network is no pod", egressd.HostNamespace, "", egressd.App{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app, ok := m.AppOf(tc.ns, tc.pod)
			require.Equal(t, tc.ok, ok)
			require.Equal(t, tc.want, app)
		})
	}
	require.Equal(t, 1, m.Len())

	// A relabelled pod: the newest observation's app wins; an older
	// (out-of-order) observation does not take it back.
	m.Observe(podAppObs("shop", "storefront", "web-7d4f-x2", podAppT0.Add(time.Minute)))
	m.Observe(podAppObs("shop", "web", "web-7d4f-x2", podAppT0.Add(30*time.Second)))
	app, ok := m.AppOf("shop", "web-7d4f-x2")
	require.True(t, ok)
	require.Equal(t, "storefront", app.Name)
}

func TestPodAppMapTTLInFlowTime(t *testing.T) {
	t.Parallel()
	const ttl = 48 * time.Hour
	m := podAppMap(t, ttl, 0)
	m.Observe(podAppObs("shop", "web", "old", podAppT0))
	m.Observe(podAppObs("shop", "web", "kept", podAppT0))
	m.Observe(podAppObs("shop", "web", "kept", podAppT0.Add(24*time.Hour))) // seen again

	known := func(pod string) bool { _, ok := m.AppOf("shop", pod); return ok }

	// Another pod moves flow time to exactly TTL after "old": still known.
	m.Observe(podAppObs("shop", "web", "clock", podAppT0.Add(ttl)))
	require.True(t, known("old"))

	// One second later, "old" is gone at once, although not yet swept.
	m.Observe(podAppObs("shop", "web", "clock", podAppT0.Add(ttl+time.Second)))
	require.False(t, known("old"))
	require.True(t, known("kept"), "kept was seen 24 h later")
	require.Equal(t, 3, m.Len(), "expired pods are swept on a later insert")

	// A new pod after TTL/8 more of flow time sweeps "old" out.
	m.Observe(podAppObs("shop", "web", "new", podAppT0.Add(ttl+ttl/8+time.Second)))
	require.Equal(t, 3, m.Len())
	require.Equal(t, detector.PodAppStats{Pods: 3, Expired: 1, Apps: 1}, m.Stats())

	// Flow time, not wall time: nothing expires while no flows arrive,
	// and old observations (a replay) do not move the clock back.
	m.Observe(podAppObs("shop", "web", "replayed", podAppT0))
	require.True(t, known("kept"))
	require.False(t, known("replayed"), "observed more than TTL before the newest observation")
}

func TestPodAppMapBound(t *testing.T) {
	t.Parallel()
	const maxPods = 64
	m := podAppMap(t, time.Hour, maxPods)
	const n = 1000
	for i := range n {
		m.Observe(podAppObs("shop", "web", fmt.Sprintf("web-%d", i), podAppT0.Add(time.Duration(i)*time.Second)))
		require.LessOrEqual(t, m.Len(), maxPods)
	}
	st := m.Stats()
	require.Equal(t, uint64(n-st.Pods), st.Evicted+st.Expired)
	require.Positive(t, st.Evicted)
	require.Zero(t, st.Expired, "1000 s of flow time is within the TTL")

	// The newest pods are kept, the oldest evicted.
	_, ok := m.AppOf("shop", fmt.Sprintf("web-%d", n-1))
	require.True(t, ok)
	_, ok = m.AppOf("shop", "web-0")
	require.False(t, ok)
	for i := n - st.Pods; i < n; i++ {
		_, ok := m.AppOf("shop", fmt.Sprintf("web-%d", i))
		require.True(t, ok, "web-%d is among the %d newest", i, st.Pods)
	}

	// A pod observed again is young again and survives eviction.
	m.Observe(podAppObs("shop", "web", "web-999", podAppT0.Add(2000*time.Second)))
	for i := range 2 * maxPods {
		m.Observe(podAppObs("pay", "api", fmt.Sprintf("api-%d", i), podAppT0.Add(1500*time.Second)))
	}
	_, ok = m.AppOf("shop", "web-999")
	require.True(t, ok, "most recently seen pod evicted")
}

// TestPodAppMapConcurrent observes and looks up from many goroutines; run
// with -race.
func TestPodAppMapConcurrent(t *testing.T) {
	t.Parallel()
	m := podAppMap(t, time.Hour, 500)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				at := podAppT0.Add(time.Duration(i) * time.Second)
				m.Observe(podAppObs("ns", "app", fmt.Sprintf("pod-%d-%d", g, i%300), at))
			}
		}()
		go func() {
			defer wg.Done()
			for i := range 2000 {
				if app, ok := m.AppOf("ns", fmt.Sprintf("pod-%d-%d", (g+1)%8, i%300)); ok && app.Name != "app" {
					t.Errorf("pod attributed to %v", app)
					return
				}
				_ = m.Stats()
			}
		}()
	}
	wg.Wait()
	require.LessOrEqual(t, m.Len(), 500)
	// Pods come back after their eviction, so inserts outnumber the 2400
	// distinct pods: only the bound and the counting can be checked.
	st := m.Stats()
	require.Equal(t, m.Len(), st.Pods)
	require.GreaterOrEqual(t, st.Evicted, uint64(8*300-500))
}

// BenchmarkPodAppMapObserve measures the collector's hot path: observations
// of pods already known, from parallel streams.
func BenchmarkPodAppMapObserve(b *testing.B) {
	for _, pods := range []int{100, 10_000} {
		b.Run(fmt.Sprintf("pods=%d", pods), func(b *testing.B) {
			m := podAppMap(b, 0, 0)
			obs := make([]*egressd.Observation, pods)
			for i := range obs {
				obs[i] = podAppObs("shop", "web", fmt.Sprintf("web-%d", i), podAppT0)
				m.Observe(obs[i])
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					o := *obs[i%pods]
					o.Time = podAppT0.Add(time.Duration(i) * time.Millisecond)
					m.Observe(&o)
					i++
				}
			})
		})
	}
}

// TestPodAppMapBoundsPodsPerApp: an app making pods by the thousand gets
// MaxPodsPerApp of them into the map and no more, so the other apps' pods
// stay; the ones not kept are counted; once the app's pods expire, it gets
// new ones again.
func TestPodAppMapBoundsPodsPerApp(t *testing.T) {
	t.Parallel()
	o := detector.DefaultPodAppOptions()
	o.MaxPods, o.MaxPodsPerApp = 1000, 100
	m, err := detector.NewPodAppMap(o)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	detector.RegisterPodAppMetrics(reg, m)
	for i := range 50 {
		m.Observe(podAppObs("shop", "web", "web-"+strconv.Itoa(i), podAppT0))
	}
	for i := range 5000 {
		m.Observe(podAppObs("batch", "job", "job-"+strconv.Itoa(i), podAppT0.Add(time.Duration(i)*time.Second)))
	}
	require.Equal(t, detector.PodAppStats{Pods: 150, Refused: 4900, Apps: 2}, m.Stats())
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP egressd_detector_pods_not_kept_total New pods the pod -> app map did not keep because their app had its most pods (PodAppOptions.MaxPodsPerApp).
# TYPE egressd_detector_pods_not_kept_total counter
egressd_detector_pods_not_kept_total 4900
# HELP egressd_detector_pods Pods whose app the pod -> app map knows (with --prometheus-url).
# TYPE egressd_detector_pods gauge
egressd_detector_pods 150
`), "egressd_detector_pods_not_kept_total", "egressd_detector_pods"))
	for i := range 50 {
		app, ok := m.AppOf("shop", "web-"+strconv.Itoa(i))
		require.True(t, ok)
		require.Equal(t, "web", app.Name)
	}
	_, ok := m.AppOf("batch", "job-99")
	require.True(t, ok)
	_, ok = m.AppOf("batch", "job-100")
	require.False(t, ok)
	// A pod of the app already known is still seen again.
	m.Observe(podAppObs("batch", "job", "job-0", podAppT0.Add(2*time.Hour)))
	require.Equal(t, uint64(4900), m.Stats().Refused)

	// After the TTL, the app's pods that were not seen again are gone and
	// new ones get in.
	m.Observe(podAppObs("batch", "job", "job-new", podAppT0.Add(o.TTL+2*time.Hour)))
	_, ok = m.AppOf("batch", "job-new")
	require.True(t, ok)
	st := m.Stats()
	require.Equal(t, 2, st.Pods, "job-0, seen again, and job-new")
	require.Equal(t, 1, st.Apps)
}
