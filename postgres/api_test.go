package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgtest"
)

// apiOther is recyclarr's namespace and name in another cluster.
var apiOther = egressd.App{Cluster: "prod", Namespace: "media", Name: "recyclarr"}

// seedAPI stores the traffic the API read models are tested on:
//
//	recyclarr: github (hours 0-3), dnsUDP (hour 26, half denied), blocked (denied, hour 2)
//	apiOther:  github (hour 0)
//	shop:      rawIP (hour 1)
func seedAPI(t *testing.T, db *postgres.DB) {
	t.Helper()
	require.NoError(t, db.WriteRollup(t.Context(), &egressd.Rollup{
		Destinations: []egressd.DestinationRollup{
			destRollup(DestOpts{App: recyclarr, Destination: github, FirstSeen: at(10 * time.Minute), LastSeen: at(3*time.Hour + 50*time.Minute), Flows: 40, ExamplePod: "recyclarr-7d9f8c-x2x4z", NameSource: egressd.NameFromFlow}),
			destRollup(DestOpts{App: recyclarr, Destination: dnsUDP, FirstSeen: at(26 * time.Hour), LastSeen: at(26*time.Hour + 5*time.Minute), Flows: 4, DroppedFlows: 2, NameSource: egressd.NameFromDNS}),
			destRollup(DestOpts{App: recyclarr, Destination: blocked, FirstSeen: at(2 * time.Hour), Flows: 3, DroppedFlows: 3}),
			destRollup(DestOpts{App: apiOther, Destination: github, FirstSeen: at(0), LastSeen: at(30 * time.Minute), Flows: 1}),
			destRollup(DestOpts{App: shop, Destination: rawIP, FirstSeen: at(time.Hour), Flows: 1, NameSource: egressd.NameIsIP}),
		},
		Hourly: []egressd.HourlyRollup{
			hourly(recyclarr, github, at(0), 10, 0),
			hourly(recyclarr, github, at(time.Hour), 10, 0),
			hourly(recyclarr, github, at(2*time.Hour), 10, 0),
			hourly(recyclarr, github, at(3*time.Hour), 10, 0),
			hourly(recyclarr, dnsUDP, at(26*time.Hour), 4, 2),
			hourly(recyclarr, blocked, at(2*time.Hour), 3, 3),
			hourly(apiOther, github, at(0), 1, 0),
			hourly(shop, rawIP, at(time.Hour), 1, 0),
		},
	}))
}

func TestAppSummaries(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)
	seedAPI(t, db)
	// Two firing anomalies and a resolved one for recyclarr, none elsewhere.
	record(t, db, newAnomaly(AnomalyOpts{Destination: github}))
	record(t, db, newAnomaly(AnomalyOpts{Destination: dnsUDP}))
	resolved := record(t, db, newAnomaly(AnomalyOpts{Destination: rawIP}))
	_, err := db.ResolveAnomaly(ctx, resolved.Fingerprint, at(time.Hour))
	require.NoError(t, err)

	tests := []struct {
		name  string
		since time.Time
		want  []postgres.AppSummary
	}{
		{
			name: "every destination",
			want: []postgres.AppSummary{
				{App: recyclarr, FirstSeen: at(0), LastSeen: at(26*time.Hour + 5*time.Minute), Destinations: 3, Firing: 2},
				{App: apiOther, FirstSeen: at(0), LastSeen: at(30 * time.Minute), Destinations: 1},
				{App: shop, FirstSeen: at(time.Hour), LastSeen: at(time.Hour), Destinations: 1},
			},
		},
		{
			name:  "destinations last seen since",
			since: at(3 * time.Hour),
			want: []postgres.AppSummary{
				{App: recyclarr, FirstSeen: at(0), LastSeen: at(26*time.Hour + 5*time.Minute), Destinations: 2, Firing: 2},
				{App: apiOther, FirstSeen: at(0), LastSeen: at(30 * time.Minute)},
				{App: shop, FirstSeen: at(time.Hour), LastSeen: at(time.Hour)},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := db.AppSummaries(ctx, egressd.AppFilter{Since: tt.since})
			require.NoError(t, err)
			// The apps row's first seen is the hour bucket's or the
			// anomaly's, whichever came first; compare counts and order.
			for i := range got {
				got[i].FirstSeen, got[i].LastSeen = time.Time{}, time.Time{}
			}
			for i := range tt.want {
				tt.want[i].FirstSeen, tt.want[i].LastSeen = time.Time{}, time.Time{}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("AppSummaries (-want +got):\n%s", diff)
			}
		})
	}

	apps, err := db.Apps(ctx)
	require.NoError(t, err)
	got, err := db.AppSummaries(ctx, egressd.AppFilter{})
	require.NoError(t, err)
	require.Len(t, got, len(apps))
	for i, a := range apps {
		require.Equal(t, a.App, got[i].App)
		require.Equal(t, a.FirstSeen, got[i].FirstSeen, "first seen of %s", a.App)
		require.Equal(t, a.LastSeen, got[i].LastSeen, "last seen of %s", a.App)
	}

	empty, err := pgtest.NewDB(t).AppSummaries(ctx, egressd.AppFilter{})
	require.NoError(t, err)
	require.Empty(t, empty)
}

func TestAppClusters(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)
	seedAPI(t, db)

	got, err := db.AppClusters(ctx, "media", "recyclarr")
	require.NoError(t, err)
	require.Equal(t, []string{"", "prod"}, got)
	got, err = db.AppClusters(ctx, "web", "shop")
	require.NoError(t, err)
	require.Equal(t, []string{"prod"}, got)
	got, err = db.AppClusters(ctx, "web", "nope")
	require.NoError(t, err)
	require.Empty(t, got)
}

func TestAppDestinations(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)
	seedAPI(t, db)
	all, err := db.Destinations(ctx, recyclarr)
	require.NoError(t, err)
	other, err := db.Destinations(ctx, apiOther)
	require.NoError(t, err)
	byName := map[string]egressd.DestinationRollup{}
	for _, d := range all {
		byName[d.Destination.Name] = d
	}

	tests := []struct {
		name  string
		app   egressd.App
		since time.Time
		want  []egressd.DestinationRollup
	}{
		{
			name: "every cluster, sorted by cluster then destination",
			app:  egressd.App{Namespace: "media", Name: "recyclarr"},
			want: append(append([]egressd.DestinationRollup{}, all...), other...),
		},
		{
			name: "one cluster",
			app:  apiOther,
			want: other,
		},
		{
			name:  "last seen since",
			app:   egressd.App{Namespace: "media", Name: "recyclarr"},
			since: at(3 * time.Hour),
			want:  []egressd.DestinationRollup{byName[github.Name], byName[dnsUDP.Name]},
		},
		{
			name:  "known app, nothing in the window",
			app:   shop,
			since: at(48 * time.Hour),
			want:  []egressd.DestinationRollup{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := db.AppDestinations(ctx, egressd.DestinationFilter{App: tt.app, Since: tt.since})
			require.NoError(t, err)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("AppDestinations (-want +got):\n%s", diff)
			}
		})
	}
	// The rollups carry everything the API shows.
	require.Equal(t, "recyclarr-7d9f8c-x2x4z", byName[github.Name].ExamplePod)
	require.Equal(t, egressd.NameFromDNS, byName[dnsUDP.Name].NameSource)
	require.Equal(t, []string{"FORWARDED", "DROPPED"}, byName[dnsUDP.Name].Verdicts.Names())

	for _, app := range []egressd.App{
		{Namespace: "media", Name: "nope"},
		{Cluster: "staging", Namespace: "media", Name: "recyclarr"},
	} {
		_, err := db.AppDestinations(ctx, egressd.DestinationFilter{App: app})
		require.ErrorIs(t, err, egressd.ErrNotFound, "%+v", app)
		require.Contains(t, egressd.ErrorMessage(err), app.String())
	}
}

// TestAppListingsPage walks the app and destination listings one row at a
// time and checks that the pages, put together, are the whole listing, with
// rows written between two pages never skipped or repeated.
func TestAppListingsPage(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)
	seedAPI(t, db)

	whole, err := db.AppSummaries(ctx, egressd.AppFilter{})
	require.NoError(t, err)
	require.Len(t, whole, 3)
	var walked []egressd.AppSummary
	f := egressd.AppFilter{Limit: 1}
	for range 10 {
		page, err := db.AppSummaries(ctx, f)
		require.NoError(t, err)
		if len(page) == 0 {
			break
		}
		require.Len(t, page, 1)
		walked = append(walked, page...)
		f.After = &page[0].App
	}
	if diff := cmp.Diff(whole, walked); diff != "" {
		t.Errorf("apps page by page (-whole +walked):\n%s", diff)
	}
	// A cursor between two apps continues after it, whether or not it
	// names a stored app.
	page, err := db.AppSummaries(ctx, egressd.AppFilter{After: &egressd.App{Cluster: "prod", Namespace: "a", Name: "b"}})
	require.NoError(t, err)
	require.Equal(t, []egressd.App{apiOther, shop}, []egressd.App{page[0].App, page[1].App})

	everyCluster := egressd.App{Namespace: "media", Name: "recyclarr"}
	all, err := db.AppDestinations(ctx, egressd.DestinationFilter{App: everyCluster})
	require.NoError(t, err)
	require.Len(t, all, 4)
	var dests []egressd.DestinationRollup
	df := egressd.DestinationFilter{App: everyCluster, Limit: 1}
	for range 10 {
		page, err := db.AppDestinations(ctx, df)
		require.NoError(t, err)
		if len(page) == 0 {
			break
		}
		require.Len(t, page, 1)
		dests = append(dests, page...)
		df.After = &egressd.DestinationCursor{Cluster: page[0].App.Cluster, Destination: page[0].Destination}
		if len(dests) == 1 {
			// A destination sorted before the cursor, written now, is
			// not on a later page; one sorted after it is.
			require.NoError(t, db.WriteRollup(ctx, &egressd.Rollup{Destinations: []egressd.DestinationRollup{
				destRollup(DestOpts{App: recyclarr, Destination: egressd.Destination{Name: "0.example", Port: 443, Protocol: egressd.ProtoTCP}, FirstSeen: at(time.Hour), Flows: 1}),
				destRollup(DestOpts{App: recyclarr, Destination: egressd.Destination{Name: "zz.example", Port: 443, Protocol: egressd.ProtoTCP}, FirstSeen: at(time.Hour), Flows: 1}),
			}}))
		}
	}
	names := make([]string, len(dests))
	for i, d := range dests {
		names[i] = d.App.Cluster + "/" + d.Destination.Name
	}
	want := make([]string, 0, 5)
	for i, d := range all {
		want = append(want, d.App.Cluster+"/"+d.Destination.Name)
		if i == 2 { // the last destination of cluster ""
			want = append(want, "/zz.example")
		}
	}
	require.Equal(t, want, names)

	// An empty page of a known app is not an unknown app.
	last := dests[len(dests)-1]
	empty, err := db.AppDestinations(ctx, egressd.DestinationFilter{App: everyCluster, After: &egressd.DestinationCursor{Cluster: last.App.Cluster, Destination: last.Destination}})
	require.NoError(t, err)
	require.Empty(t, empty)

	_, err = db.AppSummaries(ctx, egressd.AppFilter{Limit: -1})
	require.Equal(t, egressd.EINVALID, egressd.ErrorCode(err))
	_, err = db.AppDestinations(ctx, egressd.DestinationFilter{App: everyCluster, Limit: -1})
	require.Equal(t, egressd.EINVALID, egressd.ErrorCode(err))
}

func TestAppWindowEntries(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)
	seedAPI(t, db)

	windows := []struct{ from, to time.Time }{
		{at(-time.Hour), at(48 * time.Hour)},
		{at(time.Hour + 30*time.Minute), at(3 * time.Hour)},
		{at(26 * time.Hour), at(27 * time.Hour)},
	}
	apps := []egressd.App{
		{Namespace: "media", Name: "recyclarr"}, // every cluster
		apiOther,
		recyclarr, // cluster "" selects every cluster too
		{Namespace: "web", Name: "shop"},
	}
	for _, w := range windows {
		all, err := db.WindowEntries(ctx, w.from, w.to)
		require.NoError(t, err)
		for _, app := range apps {
			want := []egressd.WindowEntry{}
			for _, e := range all {
				if e.App.Namespace == app.Namespace && e.App.Name == app.Name && (app.Cluster == "" || e.App.Cluster == app.Cluster) {
					want = append(want, e)
				}
			}
			got, err := db.AppWindowEntries(ctx, app, w.from, w.to)
			require.NoError(t, err)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("AppWindowEntries(%+v, %s, %s) (-want +got):\n%s", app, w.from, w.to, diff)
			}
		}
	}

	_, err := db.AppWindowEntries(ctx, egressd.App{Namespace: "media", Name: "nope"}, at(0), at(time.Hour))
	require.ErrorIs(t, err, egressd.ErrNotFound)
	_, err = db.AppWindowEntries(ctx, egressd.App{Cluster: "staging", Namespace: "web", Name: "shop"}, at(0), at(time.Hour))
	require.ErrorIs(t, err, egressd.ErrNotFound)
}

func TestIsAccepted(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)
	anyPort := egressd.Destination{Name: "api.github.com", Protocol: egressd.ProtoAny}
	require.NoError(t, db.Accept(ctx, egressd.Accepted{App: recyclarr, Destination: github, By: "ops", At: at(0)}))
	require.NoError(t, db.Accept(ctx, egressd.Accepted{App: shop, Destination: anyPort, By: "ops", At: at(0)}))

	tests := []struct {
		name string
		app  egressd.App
		dest egressd.Destination
		want bool
	}{
		{"exact", recyclarr, github, true},
		{"name spelled otherwise", recyclarr, egressd.Destination{Name: "API.GitHub.com.", Port: 443, Protocol: "tcp"}, true},
		{"other port", recyclarr, egressd.Destination{Name: github.Name, Port: 80, Protocol: egressd.ProtoTCP}, false},
		{"every port", shop, anyPort, true},
		{"every port is one key, not a match", shop, github, false},
		{"other cluster", apiOther, github, false},
	}
	for _, tt := range tests {
		got, err := db.IsAccepted(ctx, tt.app, tt.dest)
		require.NoError(t, err, tt.name)
		require.Equal(t, tt.want, got, tt.name)
	}
	_, err := db.IsAccepted(ctx, recyclarr, egressd.Destination{Name: "bad name", Protocol: egressd.ProtoTCP})
	require.Equal(t, egressd.EINVALID, egressd.ErrorCode(err))
	_, err = db.IsAccepted(context.Background(), egressd.App{Namespace: "../x", Name: "a"}, github)
	require.Equal(t, egressd.EINVALID, egressd.ErrorCode(err))
}

// TestAPIPool checks that the API's pool is its own: with every API
// connection taken, API reads wait (until their deadline) while the
// collector's pool still answers at once.
func TestAPIPool(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	opts := postgres.DefaultOptions()
	opts.URL = pgtest.URL(t)
	opts.MaxConns, opts.APIMaxConns = 2, 1
	db, err := postgres.Open(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	seedAPI(t, db)
	api := db.API()

	release, err := postgres.HoldAPIConn(ctx, db)
	require.NoError(t, err)
	st := api.PoolStat()
	require.Equal(t, [2]int32{1, 1}, [2]int32{st.Max, st.Acquired}, "the API's pool: max and acquired")
	require.Equal(t, int32(0), db.PoolStat().Acquired, "the main pool")
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err = api.AppSummaries(short, egressd.AppFilter{})
	require.ErrorIs(t, err, context.DeadlineExceeded, "the API's only connection is taken")
	for range 2 { // more than the main pool's size: each read returns its connection
		apps, err := db.Apps(ctx)
		require.NoError(t, err, "the main pool is not the API's")
		require.Len(t, apps, 3)
	}
	release()
	page, err := api.AppSummaries(ctx, egressd.AppFilter{})
	require.NoError(t, err)
	require.Len(t, page, 3)

	opts.APIMaxConns = -1
	_, err = postgres.Open(ctx, opts)
	require.ErrorContains(t, err, "Options.APIMaxConns")
}
