package main

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/detector"
	"github.com/egressd/egressd/postgres/pgtest"
)

// BenchmarkPrime measures how long a restart takes to give the detector
// its state (detector.Detector.Prime over PostgreSQL): with `keys`
// destinations stored across 10k apps, each first seen ten days ago and
// seen again within the last day (the live window holds them all), with
// hourly counts for every app over the last day. Setting up 1M keys takes
// a few minutes.
func BenchmarkPrime(b *testing.B) {
	for _, keys := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			ctx := b.Context()
			db := pgtest.NewDB(b)
			end := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
			const apps, batch = 10_000, 50_000
			perApp := keys / apps
			for from := 0; from < keys; from += batch {
				r := &egressd.Rollup{}
				for i := from; i < min(from+batch, keys); i++ {
					app := egressd.App{Namespace: "bench", Name: fmt.Sprintf("app-%05d", i/perApp)}
					dest := egressd.Destination{Name: fmt.Sprintf("host-%d.example.com", i%perApp), Port: 443, Protocol: egressd.ProtoTCP}
					first := end.Add(-10 * 24 * time.Hour)
					last := end.Add(-time.Duration(i%24) * time.Hour)
					for _, at := range []time.Time{first, last} {
						r.Destinations = append(r.Destinations, egressd.DestinationRollup{
							App: app, Destination: dest, FirstSeen: at, LastSeen: at, Flows: 1,
							Verdicts: egressd.VerdictSet(0).Add(egressd.VerdictForwarded), ExamplePod: app.Name + "-pod",
						})
						r.Hourly = append(r.Hourly, egressd.HourlyRollup{App: app, Destination: dest, Hour: at.Truncate(time.Hour), Flows: 1})
					}
				}
				require.NoError(b, db.WriteRollup(ctx, r))
			}
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				det, err := detector.New(detector.DefaultOptions(), &detectorStore{db: db, now: time.Now}, log, detector.NewMetrics(prometheus.NewRegistry()))
				if err != nil {
					b.Fatal(err)
				}
				ps, err := det.Prime(ctx, detectorState{db}, end)
				if err != nil {
					b.Fatal(err)
				}
				if ps.WindowKeys != keys || ps.VolumeApps != apps || ps.Reraised != 0 {
					b.Fatalf("primed %+v, want %d window keys and %d volume apps", ps, keys, apps)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/prime")
		})
	}
}
