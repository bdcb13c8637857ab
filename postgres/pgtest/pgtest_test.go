package pgtest_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgtest"
)

func TestMain(m *testing.M) {
	pgtest.Main(m)
}

func TestNewDBIsolated(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	a, b := pgtest.NewDB(t), pgtest.NewDB(t)
	now := time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)
	require.NoError(t, a.WriteRollup(ctx, &egressd.Rollup{Cursors: []egressd.Cursor{{Source: "relay", Time: now}}}))

	got, err := a.Cursor(ctx, "relay")
	require.NoError(t, err)
	require.Equal(t, now, got)
	_, err = b.Cursor(ctx, "relay")
	require.ErrorIs(t, err, egressd.ErrNotFound, "a write to one test database shows in another")
}

func TestURLMigrated(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	latest, err := postgres.LatestSchemaVersion()
	require.NoError(t, err)
	for _, tt := range []struct {
		name string
		url  postgres.DSN
		want int
	}{
		{name: "URL", url: pgtest.URL(t), want: latest},
		{name: "EmptyURL", url: pgtest.EmptyURL(t), want: 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			db, err := postgres.Open(ctx, postgres.Options{URL: tt.url, MaxConns: 1})
			require.NoError(t, err)
			defer db.Close()
			v, err := db.SchemaVersion(ctx)
			require.NoError(t, err)
			require.Equal(t, tt.want, v)
		})
	}
}
