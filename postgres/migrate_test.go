package postgres_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgtest"
)

func TestMigrate(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	latest, err := postgres.LatestSchemaVersion()
	require.NoError(t, err)
	require.Positive(t, latest)

	t.Run("from empty, twice", func(t *testing.T) {
		t.Parallel()
		db := open(t, pgtest.EmptyURL(t))
		v, err := db.SchemaVersion(ctx)
		require.NoError(t, err)
		require.Equal(t, 0, v)

		require.NoError(t, db.Migrate(ctx))
		v, err = db.SchemaVersion(ctx)
		require.NoError(t, err)
		require.Equal(t, latest, v)

		// The second run finds nothing to do and changes nothing.
		require.NoError(t, db.Migrate(ctx))
		v, err = db.SchemaVersion(ctx)
		require.NoError(t, err)
		require.Equal(t, latest, v)
	})

	t.Run("already migrated", func(t *testing.T) {
		t.Parallel()
		db := pgtest.NewDB(t)
		require.NoError(t, db.Migrate(ctx))
		v, err := db.SchemaVersion(ctx)
		require.NoError(t, err)
		require.Equal(t, latest, v)
	})

	t.Run("concurrently from two pools", func(t *testing.T) {
		t.Parallel()
		// Two pools stand for two egressd processes starting at once.
		url := pgtest.EmptyURL(t)
		dbs := []*postgres.DB{open(t, url), open(t, url), open(t, url)}
		errs := make([]error, len(dbs))
		var wg sync.WaitGroup
		for i, db := range dbs {
			wg.Go(func() { errs[i] = db.Migrate(ctx) })
		}
		wg.Wait()
		for _, err := range errs {
			require.NoError(t, err)
		}
		v, err := dbs[0].SchemaVersion(ctx)
		require.NoError(t, err)
		require.Equal(t, latest, v)
	})
}

func open(t testing.TB, url postgres.DSN) *postgres.DB {
	t.Helper()
	opts := postgres.DefaultOptions()
	opts.URL = url
	opts.MaxConns = 4
	db, err := postgres.Open(context.Background(), opts)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	return db
}
