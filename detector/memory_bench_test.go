package detector_test

import (
	"context"
	"log/slog"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/collector/flowgen"
	"github.com/egressd/egressd/detector"
)

// benchCardinalities are the numbers of distinct (app, destination, port)
// keys the memory benchmarks hold; BENCHMARKS.md's target is stated at 1M.
var benchCardinalities = []int{10_000, 100_000, 1_000_000}

// liveHeap returns the bytes reachable after a full collection.
func liveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// discardStore records nothing: the memory benchmarks measure the
// detector's in-memory index, not the database.
type discardStore struct{}

func (discardStore) Raise(context.Context, egressd.Anomaly) (bool, error) { return true, nil }
func (discardStore) Resolve(context.Context, string, time.Time) error     { return nil }

func benchDetector(b *testing.B) *detector.Detector {
	b.Helper()
	d, err := detector.New(detector.DefaultOptions(), discardStore{}, slog.New(slog.DiscardHandler), detector.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// primeApps ends every app's learning period, so that its new keys join
// the live window and raise (each app floods after five), and runs the
// store loop until stop is called, so the queue holds nothing when measured.
func primeApps(d *detector.Detector, ks *flowgen.KeySpace) (stop func()) {
	first := make(map[egressd.App]time.Time, len(ks.Apps()))
	for _, a := range ks.Apps() {
		first[a] = t0.Add(-48 * time.Hour)
	}
	d.LoadApps(first)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	return func() {
		cancel()
		<-done
	}
}

// measure reports the live heap per key that run leaves behind, b.N times
// on fresh sinks: setup (not measured) builds empty sinks and returns run,
// which feeds them every key, and stop, which ends their goroutines.
func measure(b *testing.B, n int, setup func() (run func() (stop func()))) {
	b.ReportAllocs()
	var perKey float64
	for range b.N {
		b.StopTimer()
		run := setup()
		before := liveHeap()
		b.StartTimer()
		stop := run()
		b.StopTimer()
		stop()
		perKey += float64(liveHeap()-before) / float64(n)
		runtime.KeepAlive(run) // and so the sinks it feeds
		b.StartTimer()
	}
	b.ReportMetric(perKey/float64(b.N), "B/key")
}

// BenchmarkMemory reports the heap held per distinct (app, destination,
// port) key, BENCHMARKS.md's "resident memory <= 300 bytes per active key at
// 1M keys": the detector (apps out of their learning period, so every key
// joins the live window; default options, so the volume rule's per-app
// Hubble flow counts are included), the aggregator's state for one flush
// interval that sees every key (its writer not called), and both fed the
// same observations, as serve does (each destination name counted once).
// Per-app state counts (10k apps at 1M keys); the empty sinks do not.
func BenchmarkMemory(b *testing.B) {
	for _, n := range benchCardinalities {
		ks := flowgen.NewKeySpace(n)
		feed := func(sinks ...func(*egressd.Observation)) {
			var o egressd.Observation
			for i := range n {
				ks.Observe(i, t0, &o)
				for _, s := range sinks {
					s(&o)
				}
			}
		}
		b.Run("sink=detector/keys="+strconv.Itoa(n), func(b *testing.B) {
			measure(b, n, func() func() func() {
				d := benchDetector(b)
				return func() func() {
					stop := primeApps(d, ks)
					feed(d.Observe)
					return stop
				}
			})
		})
		b.Run("sink=aggregator/keys="+strconv.Itoa(n), func(b *testing.B) {
			measure(b, n, func() func() func() {
				a := benchAggregator(b, 4*n)
				return func() func() {
					feed(a.Observe)
					return func() {}
				}
			})
		})
		b.Run("sink=both/keys="+strconv.Itoa(n), func(b *testing.B) {
			measure(b, n, func() func() func() {
				d := benchDetector(b)
				a := benchAggregator(b, 4*n)
				return func() func() {
					stop := primeApps(d, ks)
					feed(a.Observe, d.Observe)
					return stop
				}
			})
		})
	}
}

type discardWriter struct{}

func (discardWriter) WriteRollup(context.Context, *egressd.Rollup) error { return nil }

// benchAggregator returns an aggregator that holds 4n keys (each key
// counts twice against MaxKeys: destination and hour bucket) and is never
// flushed here.
func benchAggregator(b *testing.B, maxKeys int) *collector.Aggregator {
	b.Helper()
	opts := collector.DefaultAggregatorOptions()
	opts.MaxKeys = maxKeys
	a, err := collector.NewAggregator(opts, discardWriter{}, slog.New(slog.DiscardHandler), collector.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		b.Fatal(err)
	}
	return a
}

// BenchmarkObserve is the detector's hot path: observations of keys
// already judged normal.
func BenchmarkObserve(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run("keys="+strconv.Itoa(n), func(b *testing.B) {
			ks := flowgen.NewKeySpace(n)
			obs := ks.Observations(n, t0)
			d := benchDetector(b)
			stop := primeApps(d, ks)
			defer stop()
			for i := range obs {
				d.Observe(&obs[i])
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				d.Observe(&obs[i%n])
			}
		})
	}
}

// BenchmarkRefresh is what a refresh (SetAccepted and SetBaselines, every
// 30 s in serve) costs under the detector's lock once every key has been
// judged: half the apps have a baseline file that matches their keys, so
// half the keys were judged normal by it rather than by the window.
func BenchmarkRefresh(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run("keys="+strconv.Itoa(n), func(b *testing.B) {
			ks := flowgen.NewKeySpace(n)
			var files []egressd.Baseline
			for i, a := range ks.Apps() {
				if i%2 == 0 {
					files = append(files, egressd.Baseline{Namespace: a.Namespace, App: a.Name, Destinations: []egressd.BaselineDestination{
						{Name: "**.example.com", Ports: []egressd.Port{{Number: 443, Protocol: "TCP"}, {Number: 80, Protocol: "TCP"}}},
					}})
				}
			}
			d := benchDetector(b)
			stop := primeApps(d, ks)
			defer stop()
			d.SetBaselines(files)
			obs := ks.Observations(n, t0)
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				for i := range obs {
					d.Observe(&obs[i])
				}
				b.StartTimer()
				d.SetAccepted(nil)
				d.SetBaselines(files)
			}
		})
	}
}
