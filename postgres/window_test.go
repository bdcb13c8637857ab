package postgres_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/postgres/pgtest"
)

func TestWindowEntries(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)

	other := egressd.App{Cluster: "prod", Namespace: "media", Name: "recyclarr"} // same names, other cluster
	require.NoError(t, db.WriteRollup(ctx, &egressd.Rollup{
		Destinations: []egressd.DestinationRollup{
			// Allowed in hours 0 to 3, first at 0:10, last at 3:50.
			destRollup(DestOpts{App: recyclarr, Destination: github, FirstSeen: at(10 * time.Minute), LastSeen: at(3*time.Hour + 50*time.Minute), Flows: 40}),
			// Only ever denied: never in a baseline.
			destRollup(DestOpts{App: recyclarr, Destination: blocked, FirstSeen: at(0), LastSeen: at(2 * time.Hour), Flows: 9, DroppedFlows: 9}),
			// Denied in hour 1, allowed in hour 2.
			destRollup(DestOpts{App: recyclarr, Destination: dnsUDP, FirstSeen: at(time.Hour + 5*time.Minute), LastSeen: at(2*time.Hour + 5*time.Minute), Flows: 5, DroppedFlows: 2}),
			destRollup(DestOpts{App: shop, Destination: rawIP, FirstSeen: at(time.Hour), LastSeen: at(time.Hour), Flows: 1}),
			destRollup(DestOpts{App: other, Destination: github, FirstSeen: at(0), LastSeen: at(30 * time.Minute), Flows: 1}),
		},
		Hourly: []egressd.HourlyRollup{
			hourly(recyclarr, github, at(0), 10, 0),
			hourly(recyclarr, github, at(1*time.Hour), 10, 0),
			hourly(recyclarr, github, at(2*time.Hour), 10, 0),
			hourly(recyclarr, github, at(3*time.Hour), 10, 0),
			hourly(recyclarr, blocked, at(0), 4, 4),
			hourly(recyclarr, blocked, at(2*time.Hour), 5, 5),
			hourly(recyclarr, dnsUDP, at(time.Hour), 2, 2),
			hourly(recyclarr, dnsUDP, at(2*time.Hour), 3, 0),
			hourly(shop, rawIP, at(time.Hour), 1, 0),
			hourly(other, github, at(0), 1, 0),
		},
	}))

	entry := func(app egressd.App, d egressd.Destination, first, last time.Time, flows int64) egressd.WindowEntry {
		return egressd.WindowEntry{App: app, Destination: d, FirstSeen: first, LastSeen: last, Flows: flows}
	}
	tests := []struct {
		name     string
		from, to time.Time
		want     []egressd.WindowEntry
	}{
		{
			name: "everything, sorted by cluster, namespace, app, destination",
			from: at(-time.Hour), to: at(24 * time.Hour),
			want: []egressd.WindowEntry{
				entry(recyclarr, github, at(10*time.Minute), at(3*time.Hour+50*time.Minute), 40),
				entry(recyclarr, dnsUDP, at(2*time.Hour), at(2*time.Hour+5*time.Minute), 3),
				entry(other, github, at(0), at(30*time.Minute), 1),
				entry(shop, rawIP, at(time.Hour), at(time.Hour), 1),
			},
		},
		{
			name: "from inside an hour includes that hour's bucket; to excludes its own",
			from: at(time.Hour + 30*time.Minute), to: at(3 * time.Hour),
			want: []egressd.WindowEntry{
				// Bucket-precise where the destination's own times lie outside.
				entry(recyclarr, github, at(time.Hour), at(3*time.Hour), 20),
				entry(recyclarr, dnsUDP, at(2*time.Hour), at(2*time.Hour+5*time.Minute), 3),
				entry(shop, rawIP, at(time.Hour), at(time.Hour), 1),
			},
		},
		{
			name: "to just after an hour starts includes its bucket",
			from: at(3 * time.Hour), to: at(3*time.Hour + time.Second),
			want: []egressd.WindowEntry{
				entry(recyclarr, github, at(3*time.Hour), at(3*time.Hour+50*time.Minute), 10),
			},
		},
		{
			name: "denied-only hour",
			from: at(time.Hour), to: at(2 * time.Hour),
			want: []egressd.WindowEntry{
				entry(recyclarr, github, at(time.Hour), at(2*time.Hour), 10),
				entry(shop, rawIP, at(time.Hour), at(time.Hour), 1),
			},
		},
		{name: "empty window", from: at(5 * time.Hour), to: at(6 * time.Hour), want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := db.WindowEntries(t.Context(), tt.from, tt.to)
			require.NoError(t, err)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("WindowEntries(%s, %s) (-want +got):\n%s", tt.from.Format(time.TimeOnly), tt.to.Format(time.TimeOnly), diff)
			}
		})
	}
}
