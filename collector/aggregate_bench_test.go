package collector_test

import (
	"context"
	"log/slog"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/collector/flowgen"
)

// The heap an aggregator holds per key is measured, with the detector's,
// by detector.BenchmarkMemory (sink=aggregator).

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

// BenchmarkAggregatorObserve is the hot path: observations of keys the
// aggregator already holds.
func BenchmarkAggregatorObserve(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run("keys="+strconv.Itoa(n), func(b *testing.B) {
			obs := flowgen.NewKeySpace(n).Observations(n, t0)
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
			obs := flowgen.NewKeySpace(n).Observations(n, t0)
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
