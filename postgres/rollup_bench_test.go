package postgres_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/postgres/pgtest"
)

// BenchmarkWriteRollup measures a steady-state flush: every key already
// stored, each flush adding to its destination row and its current hourly
// bucket, as a collector does once its apps are known. Ten destinations per
// app.
func BenchmarkWriteRollup(b *testing.B) {
	for _, keys := range []int{1_000, 10_000} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			ctx := b.Context()
			db := pgtest.NewDB(b)
			r := benchRollup(keys)
			require.NoError(b, db.WriteRollup(ctx, r)) // insert; the loop updates

			b.ReportAllocs()
			for b.Loop() {
				if err := db.WriteRollup(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/flush")
		})
	}
}

func benchRollup(keys int) *egressd.Rollup {
	r := &egressd.Rollup{Cursors: []egressd.Cursor{{Source: "relay", Time: t0}}}
	for i := range keys {
		app := egressd.App{Namespace: "bench", Name: fmt.Sprintf("app-%05d", i/10)}
		dest := egressd.Destination{Name: fmt.Sprintf("host-%d.example.com", i%10), Port: 443, Protocol: egressd.ProtoTCP}
		r.Destinations = append(r.Destinations, destRollup(DestOpts{
			App: app, Destination: dest, FirstSeen: t0, LastSeen: t0.Add(10 * time.Second),
			Flows: 12, ExamplePod: app.Name + "-7d9f8c-x2x4z", NameSource: egressd.NameFromFlow,
		}))
		r.Hourly = append(r.Hourly, hourly(app, dest, t0, 12, 0))
	}
	return r
}
