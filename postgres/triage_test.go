package postgres_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgtest"
)

// TestResolveBy: the first operator's resolution is recorded with the
// resolve (deliveries become resolved ones); a second one resolves nothing
// and records nothing; an unknown fingerprint is not found.
func TestResolveBy(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)
	a := record(t, db, newAnomaly(AnomalyOpts{}))
	other := record(t, db, newAnomaly(AnomalyOpts{Destination: dnsUDP}))

	none, err := db.Resolution(ctx, a.Fingerprint)
	require.NoError(t, err)
	require.Zero(t, none)

	first := egressd.Resolution{Kind: egressd.ResolutionDismissed, By: "alice", At: at(time.Hour)}
	ok, err := db.ResolveBy(ctx, a.Fingerprint, first)
	require.NoError(t, err)
	require.True(t, ok)
	got, err := db.Anomaly(ctx, a.Fingerprint)
	require.NoError(t, err)
	require.Equal(t, first.At, got.ResolvedAt)
	for _, d := range deliveries(t, db, a.Fingerprint) {
		require.Equal(t, postgres.DeliveryResolved, d.State)
	}
	for _, d := range deliveries(t, db, other.Fingerprint) {
		require.Equal(t, postgres.DeliveryFiring, d.State, "another anomaly's delivery changed")
	}

	ok, err = db.ResolveBy(ctx, a.Fingerprint, egressd.Resolution{Kind: egressd.ResolutionAccepted, By: "bob", At: at(2 * time.Hour), Note: "api.github.com 443/TCP"})
	require.NoError(t, err)
	require.False(t, ok, "a second resolution overwrote the first")
	r, err := db.Resolution(ctx, a.Fingerprint)
	require.NoError(t, err)
	if diff := cmp.Diff(first, r); diff != "" {
		t.Fatalf("Resolution (-want +got):\n%s", diff)
	}

	_, err = db.ResolveBy(ctx, "0123456789abcdef0123456789abcdef", first)
	require.ErrorIs(t, err, egressd.ErrNotFound)
	_, err = db.Resolution(ctx, "0123456789abcdef0123456789abcdef")
	require.ErrorIs(t, err, egressd.ErrNotFound)
	_, err = db.ResolveBy(ctx, other.Fingerprint, egressd.Resolution{Kind: "approved", At: at(time.Hour)})
	require.Equal(t, egressd.EINVALID, egressd.ErrorCode(err), "%v", err)
}

// TestDestinationUsersAndHours: every app reaching a name, newest first,
// and one app's hourly flows to one destination, newest hour first.
func TestDestinationUsersAndHours(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)
	github80 := egressd.Destination{Name: github.Name, Port: 80, Protocol: egressd.ProtoTCP}
	require.NoError(t, db.WriteRollup(ctx, &egressd.Rollup{
		Destinations: []egressd.DestinationRollup{
			destRollup(DestOpts{App: recyclarr, Destination: github, FirstSeen: at(0), LastSeen: at(3 * time.Hour), Flows: 5, ExamplePod: "recyclarr-1"}),
			destRollup(DestOpts{App: shop, Destination: github, FirstSeen: at(time.Hour), LastSeen: at(4 * time.Hour), Flows: 2, DroppedFlows: 1}),
			destRollup(DestOpts{App: shop, Destination: github80, FirstSeen: at(time.Hour)}),
			destRollup(DestOpts{App: recyclarr, Destination: dnsUDP, FirstSeen: at(0)}),
		},
		Hourly: []egressd.HourlyRollup{
			hourly(recyclarr, github, at(0), 2, 0),
			hourly(recyclarr, github, at(3*time.Hour), 3, 1),
			hourly(recyclarr, dnsUDP, at(0), 1, 0),
			hourly(shop, github, at(time.Hour), 2, 1),
		},
	}))

	users, err := db.DestinationUsers(ctx, github.Name, 0)
	require.NoError(t, err)
	type row struct {
		App            string
		Dest           string
		Flows, Dropped int64
	}
	var gotUsers []row
	for _, u := range users {
		gotUsers = append(gotUsers, row{u.App.Cluster + ":" + u.App.String(), u.Destination.String(), u.Flows, u.DroppedFlows})
	}
	wantUsers := []row{
		{"prod:web/shop", "api.github.com:443/TCP", 2, 1},
		{":media/recyclarr", "api.github.com:443/TCP", 5, 0},
		{"prod:web/shop", "api.github.com:80/TCP", 1, 0},
	}
	if diff := cmp.Diff(wantUsers, gotUsers); diff != "" {
		t.Fatalf("DestinationUsers (-want +got):\n%s", diff)
	}
	one, err := db.DestinationUsers(ctx, github.Name, 1)
	require.NoError(t, err)
	require.Len(t, one, 1)
	none, err := db.DestinationUsers(ctx, "never.example", 0)
	require.NoError(t, err)
	require.Empty(t, none)

	hours, err := db.DestinationHours(ctx, recyclarr, github, at(0), at(24*time.Hour))
	require.NoError(t, err)
	want := []egressd.HourlyRollup{hourly(recyclarr, github, at(3*time.Hour), 3, 1), hourly(recyclarr, github, at(0), 2, 0)}
	if diff := cmp.Diff(want, hours); diff != "" {
		t.Fatalf("DestinationHours (-want +got):\n%s", diff)
	}
	hours, err = db.DestinationHours(ctx, recyclarr, github, at(time.Hour), at(24*time.Hour))
	require.NoError(t, err)
	require.Len(t, hours, 1, "the window's start is ignored")
}
