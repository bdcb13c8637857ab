package postgres_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgtest"
)

// TestPodFactsMergeAndBound: label sets and resolvers of two flushes merge
// (times widen, the newest name source wins), apps that only carried
// labels get their row, the window leaves out what it did not see, and
// reading keeps the most recent MaxLabelSetsPerApp sets of an app.
func TestPodFactsMergeAndBound(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	ctx := t.Context()
	sa := egressd.Label{Key: "io.cilium.k8s.policy.serviceaccount", Value: "recyclarr"}
	name := egressd.Label{Key: "app.kubernetes.io/name", Value: "recyclarr"}
	first := egressd.Rollup{
		LabelSets: []egressd.AppLabelSet{
			{App: recyclarr, Labels: []egressd.Label{name, sa}, NameFrom: "workload", FirstSeen: at(time.Minute), LastSeen: at(time.Minute)},
			{App: shop, Labels: []egressd.Label{{Key: "app", Value: "shop"}}, NameFrom: "label:app", FirstSeen: at(-48 * time.Hour), LastSeen: at(-48 * time.Hour)},
		},
		Resolvers: []egressd.AppResolver{
			{App: recyclarr, Kind: egressd.ResolverCluster, LastSeen: at(time.Minute)},
			{App: recyclarr, Kind: egressd.ResolverNodeLocal, Addr: "169.254.20.10", LastSeen: at(time.Minute)},
		},
	}
	second := egressd.Rollup{
		LabelSets: []egressd.AppLabelSet{
			{App: recyclarr, Labels: []egressd.Label{name, sa}, NameFrom: "label:app.kubernetes.io/name", FirstSeen: at(-time.Minute), LastSeen: at(5 * time.Minute)},
		},
		Resolvers: []egressd.AppResolver{
			{App: recyclarr, Kind: egressd.ResolverCluster, LastSeen: at(10 * time.Minute)},
		},
	}
	require.NoError(t, db.WriteRollup(ctx, &first))
	require.NoError(t, db.WriteRollup(ctx, &second))

	got, err := db.WindowPodFacts(ctx, at(-time.Hour), at(time.Hour))
	require.NoError(t, err)
	want := postgres.PodFacts{
		LabelSets: []egressd.AppLabelSet{
			{App: recyclarr, Labels: []egressd.Label{name, sa}, NameFrom: "label:app.kubernetes.io/name", FirstSeen: at(-time.Minute), LastSeen: at(5 * time.Minute)},
		},
		Resolvers: []egressd.AppResolver{
			{App: recyclarr, Kind: egressd.ResolverCluster, LastSeen: at(10 * time.Minute)},
			{App: recyclarr, Kind: egressd.ResolverNodeLocal, Addr: "169.254.20.10", LastSeen: at(time.Minute)},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("pod facts (-want +got):\n%s", diff)
	}

	// Many sets: the most recent are read.
	var many egressd.Rollup
	for i := range egressd.MaxLabelSetsPerApp + 4 {
		seen := at(time.Duration(i) * time.Second)
		many.LabelSets = append(many.LabelSets, egressd.AppLabelSet{App: shop, NameFrom: "pod",
			Labels: []egressd.Label{{Key: "i", Value: fmt.Sprint(i)}}, FirstSeen: seen, LastSeen: seen})
	}
	require.NoError(t, db.WriteRollup(ctx, &many))
	got, err = db.WindowPodFacts(ctx, at(-time.Hour), at(time.Hour))
	require.NoError(t, err)
	n := 0
	for _, s := range got.LabelSets {
		if s.App == shop {
			n++
			require.NotEqual(t, "0", s.Labels[0].Value, "the oldest sets are left out")
		}
	}
	require.Equal(t, egressd.MaxLabelSetsPerApp, n)

	// Retention drops them with the rest of the app's history.
	_, err = db.PruneBefore(ctx, at(time.Hour))
	require.NoError(t, err)
	got, err = db.WindowPodFacts(ctx, at(-100*time.Hour), at(time.Hour))
	require.NoError(t, err)
	require.Empty(t, got.LabelSets)
	require.Empty(t, got.Resolvers)
}

// TestLostEventsOncePerRecord: a lost_events record written twice (a retry,
// a replay) counts once; the window sums each node's records in it.
func TestLostEventsOncePerRecord(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	ctx := t.Context()
	r := egressd.Rollup{Lost: []egressd.LostEvents{
		{Node: "n1", Time: at(time.Minute), Source: "HUBBLE_RING_BUFFER", Events: 4},
		{Node: "n1", Time: at(2 * time.Minute), Source: "HUBBLE_RING_BUFFER", Events: 6},
		{Node: "n1", Time: at(2 * time.Minute), Source: "PERF_EVENT_RING_BUFFER", Events: 1},
		{Node: "n2", Time: at(-2 * time.Hour), Source: "HUBBLE_RING_BUFFER", Events: 9},
	}}
	require.NoError(t, db.WriteRollup(ctx, &r))
	require.NoError(t, db.WriteRollup(ctx, &r))
	got, err := db.WindowLostEvents(ctx, at(-time.Hour), at(time.Hour))
	require.NoError(t, err)
	require.Equal(t, []egressd.NodeLoss{{Node: "n1", Events: 11, First: at(time.Minute), Last: at(2 * time.Minute)}}, got)
	got, err = db.WindowLostEvents(ctx, at(-3*time.Hour), at(time.Hour))
	require.NoError(t, err)
	require.Len(t, got, 2)

	_, err = db.PruneBefore(ctx, at(0))
	require.NoError(t, err)
	got, err = db.WindowLostEvents(ctx, at(-3*time.Hour), at(time.Hour))
	require.NoError(t, err)
	require.Equal(t, []egressd.NodeLoss{{Node: "n1", Events: 11, First: at(time.Minute), Last: at(2 * time.Minute)}}, got)
}
