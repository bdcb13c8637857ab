package main

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/detector"
	"github.com/egressd/egressd/postgres"
)

// TestNoveltyNotLostWhenDatabaseDown: with PostgreSQL stopped, one novel
// destination's anomaly waits in the detector's retries, another fills its
// queue, and a third is dropped. Once PostgreSQL is back the first two are
// stored; the third, never seen again by that process, is raised by the
// next one at start, from the destination the collector stored: no novelty
// is learnt without its alert.
func TestNoveltyNotLostWhenDatabaseDown(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, db := faultPostgres(ctx, t)

	app := egressd.App{Namespace: "media", Name: "recyclarr"}
	t0 := time.Date(2026, 11, 8, 12, 0, 0, 0, time.UTC)
	dest := func(name string) egressd.Destination {
		return egressd.Destination{Name: name, Port: 443, Protocol: egressd.ProtoTCP}
	}
	rollup := func(at time.Time, names ...string) *egressd.Rollup {
		r := &egressd.Rollup{}
		for _, n := range names {
			r.Destinations = append(r.Destinations, egressd.DestinationRollup{App: app, Destination: dest(n), FirstSeen: at, LastSeen: at,
				Flows: 1, Verdicts: egressd.VerdictSet(0).Add(egressd.VerdictForwarded), NameSource: egressd.NameFromFlow, ExamplePod: "recyclarr-1"})
			r.Hourly = append(r.Hourly, egressd.HourlyRollup{App: app, Destination: dest(n), Hour: at.Truncate(time.Hour), Flows: 1})
		}
		return r
	}
	// A week of history: recyclarr is past learning.
	require.NoError(t, db.WriteRollup(ctx, rollup(t0.Add(-7*24*time.Hour), "api.github.com")))
	require.NoError(t, db.WriteRollup(ctx, rollup(t0.Add(-time.Minute), "api.github.com")))

	var mu sync.Mutex
	var printed []string
	start := func(queue int) (*detector.Detector, *detector.Metrics, func()) {
		o := detector.DefaultOptions()
		o.QueueSize = queue
		m := detector.NewMetrics(prometheus.NewRegistry())
		store := &detectorStore{db: db, now: time.Now, onNew: func(a egressd.Anomaly) {
			mu.Lock()
			defer mu.Unlock()
			printed = append(printed, a.Destination.Name)
		}}
		d, err := detector.New(o, store, slog.New(slog.NewTextHandler(io.Discard, nil)), m)
		require.NoError(t, err)
		_, err = d.Prime(ctx, detectorState{db}, time.Time{})
		require.NoError(t, err)
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- d.Run(runCtx) }()
		return d, m, func() { stop(); <-done }
	}
	stored := func(names ...string) func() bool {
		return func() bool {
			for _, n := range names {
				if _, err := db.Anomaly(ctx, egressd.NoveltyFingerprint(app, dest(n))); err != nil {
					return false
				}
			}
			return true
		}
	}
	conn := func(name string, at time.Time) *egressd.Observation {
		return &egressd.Observation{Kind: egressd.KindConnect, App: app, Destination: dest(name), Time: at,
			Pod: "recyclarr-1", Verdict: egressd.VerdictForwarded, NameSource: egressd.NameFromFlow}
	}

	d, m, stop := start(1)
	pg.Stop()
	d.Observe(conn("a.example", t0))
	waitUntil(t, "the detector took a.example from its queue", func() bool { return d.Pending() == 0 })
	d.Observe(conn("b.example", t0.Add(time.Second)))
	d.Observe(conn("c.example", t0.Add(2*time.Second))) // dropped: the queue is full
	require.Equal(t, 1.0, testutil.ToFloat64(m.QueueDropped))
	require.NoError(t, pg.Restart(ctx))
	waitUntil(t, "a.example and b.example stored", stored("a.example", "b.example"))
	stop()
	// The collector's flush, retried once PostgreSQL was back, stored all
	// three destinations.
	require.NoError(t, db.WriteRollup(ctx, rollup(t0.Add(2*time.Second), "a.example", "b.example", "c.example")))

	// The next process raises c.example at start, and only c.example.
	_, _, stop = start(100)
	defer stop()
	waitUntil(t, "c.example stored", stored("c.example"))
	mu.Lock()
	defer mu.Unlock()
	require.ElementsMatch(t, []string{"a.example", "b.example", "c.example"}, printed, "each stored once")
	as, err := db.Anomalies(ctx, postgres.AnomalyFilter{})
	require.NoError(t, err)
	require.Len(t, as, 3)
	for _, a := range as {
		if a.Destination.Name == "c.example" {
			require.Equal(t, t0.Add(2*time.Second), a.Time, "raised as of its first flow")
		}
	}
}
