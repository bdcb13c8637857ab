package postgres_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgtest"
)

func TestClusterKnows(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)
	const week = 7 * 24 * time.Hour
	back := egressd.App{Namespace: "media", Name: "sonarr"}
	// recyclarr, first seen at 0, reached GitHub then; sonarr reached
	// GitHub at 0 and again eight days later, from another collector.
	for _, r := range []*egressd.Rollup{
		{
			Destinations: []egressd.DestinationRollup{
				destRollup(DestOpts{App: recyclarr, Destination: github, FirstSeen: at(0), LastSeen: at(10 * time.Minute)}),
				destRollup(DestOpts{App: back, Destination: github, FirstSeen: at(0)}),
			},
			Hourly: []egressd.HourlyRollup{hourly(recyclarr, github, t0, 1, 0), hourly(back, github, t0, 1, 0)},
		},
		{
			Destinations: []egressd.DestinationRollup{destRollup(DestOpts{App: back, Destination: github, FirstSeen: at(8 * 24 * time.Hour)})},
			Hourly:       []egressd.HourlyRollup{hourly(back, github, at(8*24*time.Hour), 1, 0)},
		},
	} {
		require.NoError(t, db.WriteRollup(ctx, r))
	}

	tests := []struct {
		name     string
		app      egressd.App
		dst      egressd.Destination
		at       time.Time
		learning time.Duration
		want     string
	}{
		{"an app no collector stored is new: learning", shop, github, at(0), time.Hour, postgres.KnownLearning},
		{"an app no collector stored, without a learning period", shop, github, at(0), 0, ""},
		{"within the learning period of the app's first sight anywhere", recyclarr, blocked, at(59 * time.Minute), time.Hour, postgres.KnownLearning},
		{"after it, a destination nobody stored is novel", recyclarr, blocked, at(2 * time.Hour), time.Hour, ""},
		{"one stored before, within the window, is known", recyclarr, github, at(2 * time.Hour), time.Hour, postgres.KnownSeen},
		{"another port of it is novel", recyclarr, egressd.Destination{Name: github.Name, Port: 80, Protocol: egressd.ProtoTCP}, at(2 * time.Hour), time.Hour, ""},
		{"the flow that stored it is not before itself", recyclarr, github, at(0), 0, ""},
		{"one last stored longer than the window ago is novel again", recyclarr, github, at(0).Add(week + 2*time.Hour), time.Hour, ""},
		{"one first stored long ago but seen again in the window is known", back, github, at(8*24*time.Hour + 2*time.Hour), time.Hour, postgres.KnownSeen},
		{"seen again earlier in the hour at hand", back, github, at(8 * 24 * time.Hour).Add(30 * time.Minute), time.Hour, postgres.KnownSeen},
		{"seen again only since: novel", back, github, at(7*24*time.Hour + 23*time.Hour), time.Hour, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := db.ClusterKnows(ctx, tt.app, tt.dst, tt.at, tt.learning, week)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}
