package postgres_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/postgres/pgtest"
)

// BenchmarkAppSummaries measures the HTTP API's app listing, a page of 1000
// apps (two destinations each) at a time: the first page, a page deep in
// the listing (it should cost the same), and the whole listing page by page.
// The statistics are left as a bulk load leaves them (no ANALYZE), as a
// fresh installation's are.
// Setting up 100k apps takes a minute or so.
func BenchmarkAppSummaries(b *testing.B) {
	for _, apps := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("apps=%d", apps), func(b *testing.B) {
			ctx := b.Context()
			db := pgtest.NewDB(b)
			const batch = 20_000
			for start := 0; start < apps; start += batch {
				r := &egressd.Rollup{}
				for i := start; i < min(start+batch, apps); i++ {
					app := egressd.App{Cluster: "bench", Namespace: fmt.Sprintf("ns-%03d", i%100), Name: fmt.Sprintf("app-%07d", i)}
					for d := range 2 {
						dest := egressd.Destination{Name: fmt.Sprintf("host-%d.example.com", d), Port: 443, Protocol: egressd.ProtoTCP}
						r.Destinations = append(r.Destinations, destRollup(DestOpts{App: app, Destination: dest, FirstSeen: t0, LastSeen: t0.Add(time.Minute), Flows: 1}))
					}
				}
				require.NoError(b, db.WriteRollup(ctx, r))
			}
			since := t0.Add(-time.Hour)
			// As the API reads: on its own pool.
			api := db.API()
			deep, err := db.AppSummaries(ctx, egressd.AppFilter{Since: since, Limit: 1, After: &egressd.App{Cluster: "bench", Namespace: "ns-099"}})
			require.NoError(b, err)
			for _, bb := range []struct {
				name  string
				after *egressd.App
			}{
				{"page=first", nil},
				{"page=deep", &deep[0].App},
			} {
				b.Run(bb.name, func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						page, err := api.AppSummaries(ctx, egressd.AppFilter{Since: since, Limit: 1000, After: bb.after})
						if err != nil || len(page) == 0 {
							b.Fatalf("%d apps, err %v", len(page), err)
						}
					}
					b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/page")
				})
			}
			b.Run("listing=whole", func(b *testing.B) {
				for b.Loop() {
					n := 0
					f := egressd.AppFilter{Since: since, Limit: 1000}
					for {
						page, err := api.AppSummaries(ctx, f)
						if err != nil {
							b.Fatal(err)
						}
						n += len(page)
						if len(page) < f.Limit {
							break
						}
						f.After = &page[len(page)-1].App
					}
					if n != apps {
						b.Fatalf("%d apps listed, want %d", n, apps)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/listing")
			})
		})
	}
}
