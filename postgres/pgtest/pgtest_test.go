package pgtest_test

import (
	"context"
	"sync/atomic"
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

var (
	fills    atomic.Int32
	snapshot = pgtest.NewSnapshot("one cursor", func(ctx context.Context, dsn postgres.DSN) error {
		fills.Add(1)
		db, err := postgres.Open(ctx, postgres.Options{URL: dsn, MaxConns: 1})
		if err != nil {
			return err
		}
		defer db.Close()
		return db.WriteRollup(ctx, &egressd.Rollup{Cursors: []egressd.Cursor{{Source: "relay", Time: snapshotTime}}})
	})
	snapshotTime = time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)
)

// TestSnapshotFilledOnceCopiedIsolated: every copy holds what the fill
// wrote, the fill runs once, and a write to one copy shows in no other.
func TestSnapshotFilledOnceCopiedIsolated(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	var dbs []*postgres.DB
	for range 3 {
		db, err := postgres.Open(ctx, postgres.Options{URL: snapshot.URL(t), MaxConns: 1})
		require.NoError(t, err)
		t.Cleanup(db.Close)
		got, err := db.Cursor(ctx, "relay")
		require.NoError(t, err)
		require.Equal(t, snapshotTime, got)
		dbs = append(dbs, db)
	}
	require.Equal(t, int32(1), fills.Load())
	later := snapshotTime.Add(time.Hour)
	require.NoError(t, dbs[0].WriteRollup(ctx, &egressd.Rollup{Cursors: []egressd.Cursor{{Source: "relay", Time: later}}}))
	got, err := dbs[1].Cursor(ctx, "relay")
	require.NoError(t, err)
	require.Equal(t, snapshotTime, got, "a write to one copy shows in another")
}

var derived = pgtest.NewSnapshotFrom(snapshot, "two cursors", func(ctx context.Context, dsn postgres.DSN) error {
	db, err := postgres.Open(ctx, postgres.Options{URL: dsn, MaxConns: 1})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.WriteRollup(ctx, &egressd.Rollup{Cursors: []egressd.Cursor{{Source: "agent", Time: snapshotTime}}})
})

// TestSnapshotFromAnother: a snapshot built on another holds what both
// fills wrote.
func TestSnapshotFromAnother(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, err := postgres.Open(ctx, postgres.Options{URL: derived.URL(t), MaxConns: 1})
	require.NoError(t, err)
	defer db.Close()
	for _, source := range []string{"relay", "agent"} {
		got, err := db.Cursor(ctx, source)
		require.NoError(t, err, source)
		require.Equal(t, snapshotTime, got, source)
	}
}
