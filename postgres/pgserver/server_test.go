package pgserver_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgserver"
)

func TestStopRestartKeepsData(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e, err := pgserver.Start(ctx, pgserver.Options{})
	require.NoError(t, err, "running as uid %d", os.Geteuid())
	t.Cleanup(func() { e.Close() })
	url := e.URL()
	db := open(t, url)
	require.NoError(t, db.Migrate(ctx))
	require.NoError(t, db.Ping(ctx))

	e.Stop()
	e.Stop() // stopping a stopped server does nothing
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	require.Error(t, db.Ping(pctx), "server still answers after Stop")
	cancel()

	require.NoError(t, e.Restart(ctx))
	require.Equal(t, url, e.URL(), "same port, same URL")
	// The pool reconnects, and the migrated schema is still there.
	pingEventually(t, db)
	_, err = db.FlowTotal(ctx)
	require.NoError(t, err)
	require.NoError(t, e.Restart(ctx), "restart of a running server")
	pingEventually(t, db)
	db.Close()

	require.NoError(t, e.Close())
	require.Error(t, e.Restart(ctx), "restart after Close")
}

// pingEventually pings db until it answers: the first use of a connection
// the server closed fails, and the pool then drops it.
func pingEventually(t *testing.T, db *postgres.DB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := db.Ping(t.Context())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server does not answer after Restart: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStart(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e, err := pgserver.Start(ctx, pgserver.Options{})
	require.NoError(t, err, "running as uid %d", os.Geteuid())
	t.Cleanup(func() { e.Close() })

	require.Regexp(t, `^postgres://egressd:xxxxx@127\.0\.0\.1:\d+/egressd\?sslmode=disable$`, e.URL().String())
	db := open(t, e.URL())
	require.NoError(t, db.Migrate(ctx))
	require.NoError(t, db.Ping(ctx))
	db.Close()

	require.NoError(t, e.Close())
	require.NoError(t, e.Close(), "second Close")
	opts := postgres.DefaultOptions()
	opts.URL = e.URL()
	opts.ConnectTimeout = 2 * time.Second
	_, err = postgres.Open(ctx, opts)
	require.Error(t, err, "server still answers after Close")
}

func TestStartNoBinaries(t *testing.T) {
	t.Parallel()
	_, err := pgserver.Start(t.Context(), pgserver.Options{BinDir: t.TempDir()})
	require.ErrorContains(t, err, "apt-get install postgresql")
	require.ErrorContains(t, err, "TEST_DATABASE_URL")
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
