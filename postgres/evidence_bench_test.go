package postgres_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgtest"
)

// BenchmarkDestinationEvidence measures what gathering an anomaly's
// evidence costs, against a yardstick measured in the same run: recording
// the anomaly (RecordAnomaly, which the detector does for every anomaly
// anyway). Destinations: ten per app, under 100 registrable domains, plus
// one name every app reaches; the anomaly is a new name under the busiest
// domain, so the domain count reads the most rows it can.
func BenchmarkDestinationEvidence(b *testing.B) {
	for _, size := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("destinations=%d", size), func(b *testing.B) {
			ctx := b.Context()
			db := pgtest.NewDB(b)
			r := &egressd.Rollup{}
			apps := size / 10
			for i := range size {
				app := egressd.App{Namespace: "bench", Name: fmt.Sprintf("app-%05d", i%apps)}
				name := fmt.Sprintf("host-%d.domain-%d.example", i/apps, i%100)
				if i < apps {
					name = "api.github.com"
				}
				r.Destinations = append(r.Destinations, destRollup(DestOpts{
					App: app, Destination: egressd.Destination{Name: name, Port: 443, Protocol: egressd.ProtoTCP},
					FirstSeen: t0, LastSeen: t0.Add(time.Hour), Flows: 12,
				}))
				if len(r.Destinations) == 10_000 {
					require.NoError(b, db.WriteRollup(ctx, r))
					r = &egressd.Rollup{}
				}
			}
			if len(r.Destinations) > 0 {
				require.NoError(b, db.WriteRollup(ctx, r))
			}
			app := egressd.App{Namespace: "bench", Name: "app-00007"}
			at := t0.Add(2 * time.Hour)
			var evidence, record time.Duration
			n := 0
			b.ReportAllocs()
			for b.Loop() {
				dst := egressd.Destination{Name: "new-" + strconv.Itoa(n) + ".domain-7.example", Port: 443, Protocol: egressd.ProtoTCP}
				start := time.Now()
				e, err := db.DestinationEvidence(ctx, app, dst, "domain-7.example", at.Add(-7*24*time.Hour), at)
				evidence += time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
				if e.DomainApps == 0 {
					b.Fatal("no app under the domain")
				}
				a := egressd.Anomaly{Fingerprint: egressd.NoveltyFingerprint(app, dst), Kind: egressd.AnomalyNovelDestination,
					App: app, Destination: dst, Time: at, Evidence: e, Severity: egressd.SeverityWarning}
				start = time.Now()
				if _, err := db.RecordAnomaly(ctx, a, []string{"http://am:9093"}, at); err != nil {
					b.Fatal(err)
				}
				record += time.Since(start)
				n++
			}
			b.ReportMetric(float64(evidence.Microseconds())/1000/float64(n), "evidence-ms")
			b.ReportMetric(float64(record.Microseconds())/1000/float64(n), "record-ms")
			b.ReportMetric(float64(evidence)/float64(record), "evidence/record")
		})
	}
}

// BenchmarkNewDestinationsIndexCost measures what the index on reversed
// names (migration 006) adds to a flush of 10k destinations never seen
// before, the only writes it costs (updates of known destinations leave
// names alone and stay HOT): the same flushes into a database with the
// index and into one without it, alternately, in one run.
func BenchmarkNewDestinationsIndexCost(b *testing.B) {
	ctx := b.Context()
	with := pgtest.NewDB(b)
	withoutURL := pgtest.URL(b)
	opts := postgres.DefaultOptions()
	opts.URL = withoutURL
	without, err := postgres.Open(ctx, opts)
	require.NoError(b, err)
	b.Cleanup(without.Close)
	conn, err := pgx.Connect(ctx, string(withoutURL))
	require.NoError(b, err)
	_, err = conn.Exec(ctx, "DROP INDEX destinations_reverse_name_idx")
	require.NoError(b, err)
	require.NoError(b, conn.Close(ctx))

	const keys = 10_000
	var tWith, tWithout time.Duration
	n := 0
	for b.Loop() {
		r := &egressd.Rollup{}
		for i := range keys {
			app := egressd.App{Namespace: "bench", Name: fmt.Sprintf("app-%04d", i/10)}
			r.Destinations = append(r.Destinations, destRollup(DestOpts{App: app,
				Destination: egressd.Destination{Name: fmt.Sprintf("n%d-%d.domain-%d.example", n, i, i%100), Port: 443, Protocol: egressd.ProtoTCP},
				FirstSeen:   t0, LastSeen: t0.Add(time.Minute)}))
		}
		for _, w := range []struct {
			db *postgres.DB
			t  *time.Duration
		}{{with, &tWith}, {without, &tWithout}} {
			start := time.Now()
			if err := w.db.WriteRollup(ctx, r); err != nil {
				b.Fatal(err)
			}
			*w.t += time.Since(start)
		}
		n++
	}
	b.ReportMetric(float64(tWith.Microseconds())/1000/float64(n), "with-ms/flush")
	b.ReportMetric(float64(tWithout.Microseconds())/1000/float64(n), "without-ms/flush")
	b.ReportMetric(float64(tWith)/float64(tWithout), "with/without")
}
