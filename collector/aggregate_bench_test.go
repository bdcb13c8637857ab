package collector_test

import (
	"context"
	"log/slog"
	"runtime"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector"
)

// benchCardinalities are the numbers of distinct (app, destination, port)
// keys the memory benchmarks hold; DESIGN.md's target is stated at 1M.
var benchCardinalities = []int{10_000, 100_000, 1_000_000}

// keySpace is n distinct (app, destination, port) keys shaped like a large
// cluster: 100 destinations per app and 100 apps per namespace (10k apps
// in 100 namespaces at 1M keys), ports 443 (70%), 80 (20%) and others.
// App, namespace and pod names exist before a benchmark measures, as the
// pipeline interns them; each key's destination name is allocated while it
// is measured, since it is unique per key and production allocates it.
// detector/memory_bench_test.go holds the same generator.
type keySpace struct {
	apps []egressd.App
	pods []string
	buf  []byte
}

func newKeySpace(n int) *keySpace {
	ks := &keySpace{}
	nApps := max(1, n/100)
	for i := range nApps {
		name := "app-" + strconv.Itoa(i)
		ks.apps = append(ks.apps, egressd.App{Cluster: "prod", Namespace: "ns-" + strconv.Itoa(i/100), Name: name})
		ks.pods = append(ks.pods, name+"-7d9f8b6c5-x2k4p")
	}
	return ks
}

// observe fills o with key i (a fresh destination name) at t0.
func (ks *keySpace) observe(i int, o *egressd.Observation) {
	a := i % len(ks.apps) // apps interleave, as in real traffic
	b := append(ks.buf[:0], "api-"...)
	b = appendPadded(b, i, 6)
	b = append(b, ".vendor-"...)
	b = strconv.AppendInt(b, int64(i%50), 10)
	b = append(b, ".example.com"...)
	ks.buf = b
	port := uint16(443)
	switch i % 10 {
	case 7, 8:
		port = 80
	case 9:
		port = uint16(8000 + i%1000)
	}
	*o = egressd.Observation{
		Time: t0, Kind: egressd.KindConnect, App: ks.apps[a], Pod: ks.pods[a], Node: "node-1",
		Destination: egressd.Destination{Name: string(b), Port: port, Protocol: egressd.ProtoTCP},
		NameSource:  egressd.NameFromFlow, Verdict: egressd.VerdictForwarded, Source: "hubble",
	}
}

func appendPadded(b []byte, v, width int) []byte {
	s := strconv.Itoa(v)
	for range width - len(s) {
		b = append(b, '0')
	}
	return append(b, s...)
}

// liveHeap returns the bytes reachable after a full collection.
func liveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

type discardWriter struct{}

func (discardWriter) WriteRollup(context.Context, *egressd.Rollup) error { return nil }

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

// BenchmarkAggregatorMemory reports the heap an Aggregator holds per
// distinct key when one flush interval sees every key (its writer is not
// called while it measures). MaxKeys is raised so that nothing is dropped:
// each key counts twice against it (destination + hour bucket).
func BenchmarkAggregatorMemory(b *testing.B) {
	for _, n := range benchCardinalities {
		b.Run("keys="+strconv.Itoa(n), func(b *testing.B) {
			ks := newKeySpace(n)
			b.ReportAllocs()
			var perKey float64
			for range b.N {
				b.StopTimer()
				a := benchAggregator(b, 4*n)
				before := liveHeap()
				b.StartTimer()
				var o egressd.Observation
				for i := range n {
					ks.observe(i, &o)
					a.Observe(&o)
				}
				b.StopTimer()
				perKey += float64(liveHeap()-before) / float64(n)
				runtime.KeepAlive(a)
				b.StartTimer()
			}
			b.ReportMetric(perKey/float64(b.N), "B/key")
		})
	}
}

// BenchmarkAggregatorObserve is the hot path: observations of keys the
// aggregator already holds.
func BenchmarkAggregatorObserve(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run("keys="+strconv.Itoa(n), func(b *testing.B) {
			ks := newKeySpace(n)
			obs := make([]egressd.Observation, n)
			for i := range obs {
				ks.observe(i, &obs[i])
			}
			a := benchAggregator(b, 4*n)
			for i := range obs {
				a.Observe(&obs[i])
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				a.Observe(&obs[i%n])
			}
		})
	}
}

// BenchmarkAggregatorFlush is the conversion of a flush interval's state
// into the sorted rollup handed to the writer.
func BenchmarkAggregatorFlush(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run("keys="+strconv.Itoa(n), func(b *testing.B) {
			ks := newKeySpace(n)
			obs := make([]egressd.Observation, n)
			for i := range obs {
				ks.observe(i, &obs[i])
			}
			a := benchAggregator(b, 4*n)
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				for i := range obs {
					a.Observe(&obs[i])
				}
				b.StartTimer()
				if err := a.Flush(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
