package postgres_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/migrations"
	"github.com/egressd/egressd/postgres/pgtest"
)

func TestKnownDestinations(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)

	other := egressd.App{Cluster: "prod", Namespace: "media", Name: "recyclarr"}
	// Written newest first: the result does not depend on the order.
	for _, r := range []*egressd.Rollup{
		{Destinations: []egressd.DestinationRollup{
			// Denied after it was allowed: known from its allowed flows only.
			destRollup(DestOpts{App: recyclarr, Destination: dnsUDP, FirstSeen: at(2*time.Hour + 5*time.Minute), Flows: 2, DroppedFlows: 2}),
			destRollup(DestOpts{App: recyclarr, Destination: github, FirstSeen: at(3 * time.Hour), LastSeen: at(3*time.Hour + 50*time.Minute), Flows: 30}),
		}},
		{Destinations: []egressd.DestinationRollup{
			destRollup(DestOpts{App: recyclarr, Destination: github, FirstSeen: at(10 * time.Minute), LastSeen: at(time.Hour), Flows: 10}),
			destRollup(DestOpts{App: recyclarr, Destination: dnsUDP, FirstSeen: at(time.Hour + 5*time.Minute), Flows: 3}),
			// Only ever denied: never known.
			destRollup(DestOpts{App: recyclarr, Destination: blocked, FirstSeen: at(0), LastSeen: at(4 * time.Hour), Flows: 9, DroppedFlows: 9}),
			destRollup(DestOpts{App: shop, Destination: rawIP, FirstSeen: at(time.Hour), Flows: 1}),
			destRollup(DestOpts{App: other, Destination: github, FirstSeen: at(30 * time.Minute), Flows: 1}),
		}},
	} {
		require.NoError(t, db.WriteRollup(ctx, r))
	}

	entry := func(app egressd.App, d egressd.Destination, first, last time.Time, flows int64) egressd.WindowEntry {
		return egressd.WindowEntry{App: app, Destination: d, FirstSeen: first, LastSeen: last, Flows: flows}
	}
	githubEntry := entry(recyclarr, github, at(10*time.Minute), at(3*time.Hour+50*time.Minute), 40)
	dnsEntry := entry(recyclarr, dnsUDP, at(time.Hour+5*time.Minute), at(time.Hour+5*time.Minute), 3)
	tests := []struct {
		name  string
		since time.Time
		want  []egressd.WindowEntry
	}{
		{
			name:  "everything allowed, sorted by cluster, namespace, app, destination",
			since: time.Time{},
			want: []egressd.WindowEntry{
				githubEntry,
				dnsEntry,
				entry(other, github, at(30*time.Minute), at(30*time.Minute), 1),
				entry(shop, rawIP, at(time.Hour), at(time.Hour), 1),
			},
		},
		{name: "since is inclusive", since: at(time.Hour + 5*time.Minute), want: []egressd.WindowEntry{githubEntry, dnsEntry}},
		{name: "later denied flows do not count", since: at(time.Hour + 6*time.Minute), want: []egressd.WindowEntry{githubEntry}},
		{name: "after everything", since: at(4 * time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := db.KnownDestinations(t.Context(), tt.since)
			require.NoError(t, err)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("KnownDestinations(%s) (-want +got):\n%s", tt.since.Format(time.TimeOnly), diff)
			}
		})
	}

	// SeenDestinations also has what was only ever denied, and its last
	// seen time counts whatever the verdict.
	seen, err := db.SeenDestinations(ctx, at(2*time.Hour))
	require.NoError(t, err)
	want := []egressd.WindowEntry{
		githubEntry,
		entry(recyclarr, dnsUDP, at(time.Hour+5*time.Minute), at(2*time.Hour+5*time.Minute), 3),
		entry(recyclarr, blocked, at(0), at(4*time.Hour), 0),
	}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("SeenDestinations (-want +got):\n%s", diff)
	}
}

// TestKnownDestinationsMigrated checks the migration that adds
// destinations.last_allowed: rows stored before it are known from their last
// seen time when they ever had allowed flows.
func TestKnownDestinationsMigrated(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url := pgtest.EmptyURL(t)

	conn, err := pgx.Connect(ctx, string(url))
	require.NoError(t, err)
	defer conn.Close(ctx)
	m, err := migrate.NewMigrator(ctx, conn, "schema_version")
	require.NoError(t, err)
	require.NoError(t, m.LoadMigrations(migrations.FS))
	require.NoError(t, m.MigrateTo(ctx, 1))
	_, err = conn.Exec(ctx, `INSERT INTO apps (namespace, name, first_seen, last_seen) VALUES ('media', 'recyclarr', $1, $1)`, at(0))
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `
INSERT INTO destinations (app_id, name, port, protocol, first_seen, last_seen, flows, dropped_flows)
VALUES (1, 'api.github.com', 443, 'TCP', $1, $2, 5, 1), (1, 'evil.example', 443, 'TCP', $1, $2, 3, 3)`, at(0), at(time.Hour))
	require.NoError(t, err)

	db := open(t, url)
	require.NoError(t, db.Migrate(ctx))
	got, err := db.KnownDestinations(ctx, at(time.Hour))
	require.NoError(t, err)
	want := []egressd.WindowEntry{{App: recyclarr, Destination: github, FirstSeen: at(0), LastSeen: at(time.Hour), Flows: 4}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("KnownDestinations after migrating (-want +got):\n%s", diff)
	}
}
