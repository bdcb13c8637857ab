package postgres_test

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgtest"
)

// TestWindowDestinations checks WindowDestinations against WindowEntries,
// which aggregates the buckets, on random traffic over four days: allowed
// and denied flows mixed per hour, written in several flushes whose hours
// overlap, for windows that start and end anywhere, pinned in the past or
// after the newest data, in the oldest partition's day or later. One app
// is in two clusters. EachWindowApp gives the same keys, app by app.
func TestWindowDestinations(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)

	rng := rand.New(rand.NewPCG(14, 1))
	start := t0.Truncate(24 * time.Hour)
	const hours = 96
	for flush := range 6 {
		r := &egressd.Rollup{}
		for a := range 5 {
			app := egressd.App{Namespace: "ns", Name: fmt.Sprintf("app-%d", a)}
			if a == 4 { // app-0 in a second cluster: one baseline with the first
				app = egressd.App{Cluster: "east", Namespace: "ns", Name: "app-0"}
			}
			for d := range 8 {
				dest := egressd.Destination{Name: fmt.Sprintf("d%d.example.com", d), Port: 443, Protocol: egressd.ProtoTCP}
				var row *egressd.DestinationRollup
				for range rng.IntN(4) {
					hour := start.Add(time.Duration(rng.IntN(hours)) * time.Hour)
					flows := int64(1 + rng.IntN(3))
					dropped := int64(0)
					if rng.IntN(3) == 0 { // a third of the buckets only denied
						dropped = flows
					}
					seen := hour.Add(time.Duration(rng.IntN(3600)) * time.Second)
					r.Hourly = append(r.Hourly, hourly(app, dest, hour, flows, dropped))
					if row == nil {
						r.Destinations = append(r.Destinations, destRollup(DestOpts{App: app, Destination: dest, FirstSeen: seen, Flows: flows, DroppedFlows: dropped}))
						row = &r.Destinations[len(r.Destinations)-1]
						continue
					}
					if seen.Before(row.FirstSeen) {
						row.FirstSeen = seen
					}
					if seen.After(row.LastSeen) {
						row.LastSeen = seen
					}
					row.Flows += flows
					row.DroppedFlows += dropped
				}
			}
		}
		require.NoError(t, db.WriteRollup(ctx, r), "flush %d", flush)
	}

	windows := [][2]time.Duration{
		{0, hours * time.Hour},                                 // everything
		{30 * time.Hour, 200 * time.Hour},                      // after the oldest day, open-ended
		{30*time.Hour + 20*time.Minute, 40*time.Hour + 1},      // pinned in the past: straddling keys
		{50 * time.Hour, 51 * time.Hour},                       // one hour
		{72 * time.Hour, 1000 * time.Hour},                     // the last day
		{10 * time.Hour, 20 * time.Hour},                       // inside the oldest day
		{hours * time.Hour, 2 * hours * time.Hour},             // after the data
		{25*time.Hour + time.Minute, 95*time.Hour + time.Hour}, // almost all
	}
	for i := range 20 {
		from := time.Duration(24+rng.IntN(hours-24)) * time.Hour / 2 * 2
		windows = append(windows, [2]time.Duration{from, from + time.Duration(1+rng.IntN(48))*time.Hour + time.Duration(i)*time.Minute})
	}
	for _, w := range windows {
		requireWindowKeys(t, db, start.Add(w[0]), start.Add(w[1]))
	}
}

// requireWindowKeys checks that WindowDestinations returns the keys of
// WindowEntries for the window [from, to).
func requireWindowKeys(t *testing.T, db *postgres.DB, from, to time.Time) {
	t.Helper()
	want, err := db.WindowEntries(t.Context(), from, to)
	require.NoError(t, err)
	for i := range want {
		want[i] = egressd.WindowEntry{App: want[i].App, Destination: want[i].Destination}
	}
	got, err := db.WindowDestinations(t.Context(), from, to)
	require.NoError(t, err)
	if diff := gocmp.Diff(want, got); diff != "" {
		t.Errorf("WindowDestinations(%s, %s) (-buckets +columns):\n%s", from.Format(time.RFC3339), to.Format(time.RFC3339), diff)
	}

	// EachWindowApp: every key once, one call per namespace and name.
	var byApp []egressd.WindowEntry
	called := map[egressd.App]bool{}
	require.NoError(t, db.EachWindowApp(t.Context(), from, to, func(keys []egressd.WindowEntry) error {
		require.NotEmpty(t, keys)
		k := egressd.App{Namespace: keys[0].App.Namespace, Name: keys[0].App.Name}
		require.False(t, called[k], "EachWindowApp called twice for %s", k)
		called[k] = true
		for _, e := range keys {
			require.Equal(t, k, egressd.App{Namespace: e.App.Namespace, Name: e.App.Name}, "a key of another app in %s's call", k)
		}
		byApp = append(byApp, keys...)
		return nil
	}))
	slices.SortFunc(byApp, func(a, b egressd.WindowEntry) int {
		return cmp.Or(strings.Compare(a.App.Cluster, b.App.Cluster), strings.Compare(a.App.Namespace, b.App.Namespace),
			strings.Compare(a.App.Name, b.App.Name), strings.Compare(a.Destination.Name, b.Destination.Name),
			cmp.Compare(a.Destination.Port, b.Destination.Port), strings.Compare(a.Destination.Protocol, b.Destination.Protocol))
	})
	if diff := gocmp.Diff(want, byApp, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("EachWindowApp(%s, %s) (-buckets +by app):\n%s", from.Format(time.RFC3339), to.Format(time.RFC3339), diff)
	}
}
