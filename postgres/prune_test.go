package postgres_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgtest"
)

// TestPruneBefore: after a retention round (DropBucketsBefore, then
// PruneBefore), what has not moved since the cutoff is gone, and what is
// recent, accepted, firing or still to be delivered stays.
func TestPruneBefore(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)
	old := t0.Add(-60 * 24 * time.Hour)
	cutoff := t0.Add(-30 * 24 * time.Hour)
	gone := egressd.App{Namespace: "batch", Name: "gone"}
	oldName, newName := "old.example", "new.example"

	dest := func(app egressd.App, d egressd.Destination, seen time.Time) egressd.DestinationRollup {
		return destRollup(DestOpts{App: app, Destination: d, FirstSeen: seen})
	}
	require.NoError(t, db.WriteRollup(ctx, &egressd.Rollup{
		Destinations: []egressd.DestinationRollup{
			dest(recyclarr, github, old), // pruned
			dest(recyclarr, rawIP, old),  // accepted: kept
			dest(shop, blocked, old),     // pruned, and then shop
			dest(gone, github, old),      // pruned; gone has a firing anomaly
		},
		Hourly: []egressd.HourlyRollup{hourly(shop, blocked, old, 1, 0)},
		DNSQueries: []egressd.DNSQueryRollup{
			{App: recyclarr, Name: oldName, FirstSeen: old, LastSeen: old, Queries: 1},
			{App: shop, Name: oldName, FirstSeen: old, LastSeen: old, Queries: 1},
		},
	}))
	require.NoError(t, db.WriteRollup(ctx, &egressd.Rollup{
		Destinations: []egressd.DestinationRollup{dest(recyclarr, dnsUDP, t0)},
		DNSQueries:   []egressd.DNSQueryRollup{{App: recyclarr, Name: newName, FirstSeen: t0, LastSeen: t0, Queries: 1}},
	}))
	require.NoError(t, db.Accept(ctx, egressd.Accepted{App: egressd.App{Namespace: recyclarr.Namespace, Name: recyclarr.Name}, Destination: rawIP, By: "ops", At: old}))

	recordAt := func(a egressd.Anomaly, targets []string, now time.Time) egressd.Anomaly {
		t.Helper()
		ok, err := db.RecordAnomaly(ctx, a, targets, now)
		require.NoError(t, err)
		require.True(t, ok)
		return a
	}
	claim := func(now time.Time, n int) []egressd.Delivery {
		t.Helper()
		d, err := db.ClaimDeliveries(ctx, now, time.Minute, 100)
		require.NoError(t, err)
		require.Len(t, d, n)
		return d
	}
	resolve := func(a egressd.Anomaly, at time.Time) {
		t.Helper()
		ok, err := db.ResolveAnomaly(ctx, a.Fingerprint, at)
		require.NoError(t, err)
		require.True(t, ok)
	}
	// delivered: resolved long ago, both resolves sent: pruned with its
	// deliveries.
	delivered := recordAt(newAnomaly(AnomalyOpts{Destination: github, Time: old}), amTargets, old)
	require.NoError(t, db.DeliverySent(ctx, ids(claim(old.Add(time.Second), 2)), old.Add(2*time.Second), old.Add(time.Hour)))
	resolve(delivered, old.Add(time.Minute))
	require.NoError(t, db.DeliverySent(ctx, ids(claim(old.Add(time.Minute), 2)), old.Add(time.Minute), time.Time{}))
	// undelivered: resolved long ago, but its resolve is still to be sent:
	// kept.
	undelivered := recordAt(newAnomaly(AnomalyOpts{Destination: rawIP, Time: old}), amTargets, old.Add(time.Hour))
	require.NoError(t, db.DeliverySent(ctx, ids(claim(old.Add(time.Hour), 2)), old.Add(time.Hour), old.Add(2*time.Hour)))
	resolve(undelivered, old.Add(90*time.Minute))
	// firing: old and still firing: kept, and so its app; one delivery
	// was dropped long ago: pruned.
	firing := recordAt(newAnomaly(AnomalyOpts{App: gone, Destination: github, Time: old}), amTargets, old.Add(80*time.Minute))
	d := claim(old.Add(80*time.Minute), 2)
	require.NoError(t, db.DeliveryDropped(ctx, ids(d[:1]), "422"))
	require.NoError(t, db.DeliverySent(ctx, ids(d[1:]), old.Add(80*time.Minute), t0.Add(time.Hour)))
	// quiet: no deliveries, resolved long ago: pruned; recent: resolved
	// after the cutoff: kept.
	quiet := recordAt(newAnomaly(AnomalyOpts{App: shop, Destination: blocked, Time: old}), nil, old)
	resolve(quiet, old.Add(time.Hour))
	recent := recordAt(newAnomaly(AnomalyOpts{Destination: dnsUDP, Time: t0.Add(-time.Hour)}), nil, t0)
	resolve(recent, t0)

	_, err := db.DropBucketsBefore(ctx, cutoff)
	require.NoError(t, err)
	p, err := db.PruneBefore(ctx, cutoff)
	require.NoError(t, err)
	// Deliveries: delivered's two done ones, firing's dropped one.
	require.Equal(t, postgres.Pruned{Deliveries: 3, Anomalies: 2, Destinations: 3, DNSQueries: 2, Apps: 1, AppHistory: 1}, p) // AppHistory: shop's old hour

	apps, err := db.Apps(ctx)
	require.NoError(t, err)
	var names []egressd.App
	for _, a := range apps {
		names = append(names, a.App)
	}
	require.ElementsMatch(t, []egressd.App{recyclarr, gone}, names, "shop had nothing left")
	dests, err := db.Destinations(ctx, recyclarr)
	require.NoError(t, err)
	var kept []egressd.Destination
	for _, d := range dests {
		kept = append(kept, d.Destination)
	}
	require.ElementsMatch(t, []egressd.Destination{rawIP, dnsUDP}, kept)
	dns, err := db.DNSQueries(ctx, recyclarr)
	require.NoError(t, err)
	require.Len(t, dns, 1)
	require.Equal(t, newName, dns[0].Name)
	gd, err := db.Destinations(ctx, gone)
	require.NoError(t, err)
	require.Empty(t, gd)

	for _, a := range []egressd.Anomaly{delivered, quiet} {
		_, err := db.Anomaly(ctx, a.Fingerprint)
		require.ErrorIs(t, err, egressd.ErrNotFound, a.Fingerprint)
		require.Empty(t, deliveries(t, db, a.Fingerprint))
	}
	for _, a := range []egressd.Anomaly{undelivered, firing, recent} {
		_, err := db.Anomaly(ctx, a.Fingerprint)
		require.NoError(t, err, a.Fingerprint)
	}
	require.Len(t, deliveries(t, db, undelivered.Fingerprint), 2)
	fd := deliveries(t, db, firing.Fingerprint)
	require.Len(t, fd, 1)
	require.Equal(t, postgres.DeliveryFiring, fd[0].State)

	// The pruned destination raises again: its fingerprint is free.
	ok, err := db.RecordAnomaly(ctx, delivered, amTargets, t0)
	require.NoError(t, err)
	require.True(t, ok)

	// A second round finds nothing more.
	p, err = db.PruneBefore(ctx, cutoff)
	require.NoError(t, err)
	require.Zero(t, p.Total())
}

// TestTrimDeliveries: past the bound, the oldest resolved deliveries go
// first, then the oldest firing ones; each is dropped, counted per target.
func TestTrimDeliveries(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)
	var as []egressd.Anomaly
	for i, dst := range []egressd.Destination{github, rawIP, dnsUDP, blocked} {
		as = append(as, record(t, db, newAnomaly(AnomalyOpts{Destination: dst, Time: at(time.Duration(i) * time.Second)})))
	}
	for _, a := range as[:2] {
		_, err := db.ResolveAnomaly(ctx, a.Fingerprint, at(time.Minute))
		require.NoError(t, err)
	}
	// 8 pending: 4 resolved (as[0], as[1]), 4 firing; keep 3.
	dropped, err := db.TrimDeliveries(ctx, 3)
	require.NoError(t, err)
	require.Equal(t, 5, dropped[am1]+dropped[am2])
	state := func(a egressd.Anomaly) map[postgres.DeliveryState]int {
		out := map[postgres.DeliveryState]int{}
		for _, d := range deliveries(t, db, a.Fingerprint) {
			out[d.State]++
			if d.State == postgres.DeliveryDropped {
				require.Equal(t, "outbox full", d.LastError)
			}
		}
		return out
	}
	require.Equal(t, map[postgres.DeliveryState]int{postgres.DeliveryDropped: 2}, state(as[0]))
	require.Equal(t, map[postgres.DeliveryState]int{postgres.DeliveryDropped: 2}, state(as[1]))
	require.Equal(t, map[postgres.DeliveryState]int{postgres.DeliveryDropped: 1, postgres.DeliveryFiring: 1}, state(as[2]))
	require.Equal(t, map[postgres.DeliveryState]int{postgres.DeliveryFiring: 2}, state(as[3]))
	depth, err := db.OutboxDepth(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, depth["firing"]+depth["resolved"])

	dropped, err = db.TrimDeliveries(ctx, 3)
	require.NoError(t, err)
	require.Empty(t, dropped)
	_, err = db.TrimDeliveries(ctx, -1)
	require.Equal(t, egressd.EINVALID, egressd.ErrorCode(err))
}
