package postgres_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/postgres/pgtest"
)

func TestDestinationEvidence(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)
	sonarr := egressd.App{Namespace: "media", Name: "sonarr"}
	radarr := egressd.App{Namespace: "media", Name: "radarr"}
	remote := egressd.App{Cluster: "edge", Namespace: "media", Name: "sonarr"}
	tcp := func(name string, port uint16) egressd.Destination {
		return egressd.Destination{Name: name, Port: port, Protocol: egressd.ProtoTCP}
	}
	anomalyAt := at(10 * 24 * time.Hour)
	require.NoError(t, db.WriteRollup(ctx, &egressd.Rollup{Destinations: []egressd.DestinationRollup{
		// recyclarr's own history: api.github.com on 443 for long, a
		// sibling under github.com in its window, one outside it.
		destRollup(DestOpts{App: recyclarr, Destination: github, FirstSeen: at(0), LastSeen: at(9 * 24 * time.Hour), ExamplePod: "recyclarr-1"}),
		destRollup(DestOpts{App: recyclarr, Destination: tcp("raw.github.com", 443), FirstSeen: at(time.Hour), LastSeen: at(9 * 24 * time.Hour)}),
		destRollup(DestOpts{App: recyclarr, Destination: tcp("old.github.com", 443), FirstSeen: at(time.Hour), LastSeen: at(time.Hour)}),
		// Other apps: sonarr reached api.github.com on 443, radarr a
		// name under github.com, and an app of another cluster too.
		destRollup(DestOpts{App: sonarr, Destination: github, FirstSeen: at(-time.Hour)}),
		destRollup(DestOpts{App: radarr, Destination: tcp("gist.github.com", 443), FirstSeen: at(2 * time.Hour)}),
		destRollup(DestOpts{App: remote, Destination: github, FirstSeen: at(-48 * time.Hour)}),
		// Not counted: only refused, or first seen after the anomaly.
		destRollup(DestOpts{App: radarr, Destination: tcp("api.github.com", 22), FirstSeen: at(0), Flows: 3, DroppedFlows: 3}),
		destRollup(DestOpts{App: radarr, Destination: github, FirstSeen: anomalyAt.Add(time.Minute)}),
		// The anomaly's own destination, stored meanwhile.
		destRollup(DestOpts{App: recyclarr, Destination: tcp("api.github.com", 8443), FirstSeen: anomalyAt.Add(-time.Minute)}),
		// Names that merely end like the domain are not under it.
		destRollup(DestOpts{App: radarr, Destination: tcp("notgithub.com", 443), FirstSeen: at(0)}),
	}}))

	since := anomalyAt.Add(-7 * 24 * time.Hour)
	got, err := db.DestinationEvidence(ctx, recyclarr, tcp("api.github.com", 8443), "github.com", since, anomalyAt)
	require.NoError(t, err)
	want := egressd.Evidence{
		OtherApps: 2, OtherClusters: 1, DomainApps: 3,
		ClusterFirstSeen: at(-time.Hour),
		KnownPorts:       []string{"443/TCP"},
		Siblings:         []string{"raw.github.com"},
		Pods:             []string{"recyclarr-1"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("evidence (-want +got):\n%s", diff)
	}

	// A destination nobody reached; an IP (no domain).
	got, err = db.DestinationEvidence(ctx, recyclarr, tcp("exfil.example.net", 443), "example.net", since, anomalyAt)
	require.NoError(t, err)
	require.Equal(t, egressd.Evidence{}, got)
	got, err = db.DestinationEvidence(ctx, recyclarr, rawIP, "", since, anomalyAt)
	require.NoError(t, err)
	require.Equal(t, egressd.Evidence{}, got)

	// LIKE's wildcards in a name match only themselves.
	got, err = db.DestinationEvidence(ctx, shop, tcp("x.git_ub.com", 443), "git_ub.com", since, anomalyAt)
	require.NoError(t, err)
	require.Zero(t, got.DomainApps)
}
