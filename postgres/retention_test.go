package postgres_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/postgres/pgtest"
)

func TestDropBucketsBefore(t *testing.T) {
	t.Parallel()
	day := func(d int) time.Time { return time.Date(2025, 3, d, 0, 0, 0, 0, time.UTC) }
	// Hours on three UTC days, the first at the last hour of its day.
	rollup := &egressd.Rollup{
		Destinations: []egressd.DestinationRollup{destRollup(DestOpts{
			App: recyclarr, Destination: github, FirstSeen: day(8).Add(23 * time.Hour), LastSeen: day(10).Add(5 * time.Hour), Flows: 4,
		})},
		Hourly: []egressd.HourlyRollup{
			hourly(recyclarr, github, day(8).Add(23*time.Hour), 1, 0),
			hourly(recyclarr, github, day(9), 1, 0),
			hourly(recyclarr, github, day(9).Add(12*time.Hour), 1, 0),
			hourly(recyclarr, github, day(10).Add(5*time.Hour), 1, 0),
		},
	}

	tests := []struct {
		name        string
		cutoff      time.Time
		wantDropped int
		wantDays    []time.Time
	}{
		{name: "before every day", cutoff: day(8).Add(12 * time.Hour), wantDropped: 0, wantDays: []time.Time{day(8), day(9), day(10)}},
		{name: "inside a day keeps it whole", cutoff: day(9).Add(12 * time.Hour), wantDropped: 1, wantDays: []time.Time{day(9), day(10)}},
		{name: "at the end of a day drops it", cutoff: day(10), wantDropped: 2, wantDays: []time.Time{day(10)}},
		{name: "after every day", cutoff: day(12), wantDropped: 3, wantDays: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			db := pgtest.NewDB(t)
			require.NoError(t, db.WriteRollup(ctx, rollup))
			days, err := db.HourlyPartitions(ctx)
			require.NoError(t, err)
			require.Equal(t, []time.Time{day(8), day(9), day(10)}, days)

			dropped, err := db.DropBucketsBefore(ctx, tt.cutoff)
			require.NoError(t, err)
			require.Equal(t, tt.wantDropped, dropped)

			days, err = db.HourlyPartitions(ctx)
			require.NoError(t, err)
			if diff := cmp.Diff(tt.wantDays, days); diff != "" {
				t.Errorf("partitions (-want +got):\n%s", diff)
			}
			// Only buckets of the remaining days are left.
			hours, err := db.Hourly(ctx, recyclarr, time.Time{}, day(31))
			require.NoError(t, err)
			for _, h := range hours {
				require.False(t, h.Hour.Before(tt.cutoff.Truncate(24*time.Hour)), "bucket %s survived retention at %s", h.Hour, tt.cutoff)
			}
			// Lifetime totals stay.
			dests, err := db.Destinations(ctx, recyclarr)
			require.NoError(t, err)
			require.Len(t, dests, 1)
			require.Equal(t, int64(4), dests[0].Flows)

			// A second run finds nothing more to drop.
			dropped, err = db.DropBucketsBefore(ctx, tt.cutoff)
			require.NoError(t, err)
			require.Zero(t, dropped)

			// A late rollup for a dropped day recreates its partition.
			require.NoError(t, db.WriteRollup(ctx, &egressd.Rollup{Hourly: rollup.Hourly[:1]}))
			days, err = db.HourlyPartitions(ctx)
			require.NoError(t, err)
			require.Equal(t, day(8), days[0])
		})
	}
}

// TestDropBucketsBeforeConcurrentWrites runs retention while writers fill
// the days it drops: no writer may fail because its partition vanished.
func TestDropBucketsBeforeConcurrentWrites(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)
	done := make(chan error)
	go func() {
		var err error
		defer func() { done <- err }()
		for i := range 50 {
			hour := t0.Add(time.Duration(i%3) * 24 * time.Hour)
			if err = db.WriteRollup(ctx, &egressd.Rollup{Hourly: []egressd.HourlyRollup{hourly(shop, github, hour, 1, 0)}}); err != nil {
				return
			}
		}
	}()
	for range 20 {
		_, err := db.DropBucketsBefore(ctx, t0.Add(48*time.Hour))
		require.NoError(t, err)
	}
	require.NoError(t, <-done)
}
