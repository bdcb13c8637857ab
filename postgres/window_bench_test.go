package postgres_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/postgres/pgtest"
)

// BenchmarkWindowEntries measures loading the destinations of a 7-day
// window, as the detector does at start-up to learn every app's known
// destinations, three ways on the same data: WindowEntries aggregates the
// window's hourly buckets, KnownDestinations reads one row per destination,
// and WindowDestinations (baseline export) reads one row per destination
// for WindowEntries' exact keys. A destination seen 30 days earlier stands
// for the older partitions a database keeps for its retention period, so
// that the window's first day is not its oldest partition's.
//
// Ten destinations per app, each with allowed traffic in `hours` hourly
// buckets (a destination reached every hour of a week has 168): the bucket
// count is what WindowEntries' time grows with. Setting up the larger sizes
// takes a minute or two.
func BenchmarkWindowEntries(b *testing.B) {
	for _, size := range []struct{ entries, hours int }{
		{10_000, 1}, {10_000, 24}, {10_000, 168}, {100_000, 1}, {100_000, 24},
	} {
		b.Run(fmt.Sprintf("entries=%d/hours=%d", size.entries, size.hours), func(b *testing.B) {
			ctx := b.Context()
			db := pgtest.NewDB(b)
			end := t0.Add(time.Duration(size.hours) * time.Hour)
			for h := range size.hours {
				hour := t0.Add(time.Duration(h) * time.Hour)
				r := &egressd.Rollup{}
				for i := range size.entries {
					app := egressd.App{Namespace: "bench", Name: fmt.Sprintf("app-%05d", i/10)}
					dest := egressd.Destination{Name: fmt.Sprintf("host-%d.example.com", i%10), Port: 443, Protocol: egressd.ProtoTCP}
					r.Destinations = append(r.Destinations, destRollup(DestOpts{
						App: app, Destination: dest, FirstSeen: hour, LastSeen: hour.Add(30 * time.Minute), Flows: 12,
					}))
					r.Hourly = append(r.Hourly, hourly(app, dest, hour, 12, 0))
				}
				require.NoError(b, db.WriteRollup(ctx, r))
			}
			old := destRollup(DestOpts{App: egressd.App{Namespace: "bench", Name: "old"}, Destination: github, FirstSeen: t0.AddDate(0, 0, -30)})
			require.NoError(b, db.WriteRollup(ctx, &egressd.Rollup{
				Destinations: []egressd.DestinationRollup{old},
				Hourly:       []egressd.HourlyRollup{hourly(old.App, github, old.FirstSeen.Truncate(time.Hour), 1, 0)},
			}))
			from := end.Add(-7 * 24 * time.Hour)

			for _, read := range []struct {
				name string
				load func() ([]egressd.WindowEntry, error)
			}{
				{"window", func() ([]egressd.WindowEntry, error) { return db.WindowEntries(ctx, from, end) }},
				{"known", func() ([]egressd.WindowEntry, error) { return db.KnownDestinations(ctx, from) }},
				{"columns", func() ([]egressd.WindowEntry, error) { return db.WindowDestinations(ctx, from, end) }},
			} {
				b.Run("read="+read.name, func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						entries, err := read.load()
						if err != nil {
							b.Fatal(err)
						}
						if len(entries) != size.entries {
							b.Fatalf("%d entries, want %d", len(entries), size.entries)
						}
					}
					b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/load")
				})
			}
		})
	}
}
