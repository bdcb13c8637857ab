package postgres_test

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/postgres"
)

func TestOpenUnreachable(t *testing.T) {
	t.Parallel()
	opts := postgres.DefaultOptions()
	opts.URL = "postgres://egressd:s3cr3t@127.0.0.1:1/egressd?sslmode=disable"
	opts.ConnectTimeout = 2 * time.Second
	_, err := postgres.Open(t.Context(), opts)
	require.Error(t, err)
	require.Contains(t, err.Error(), "connect to postgres://egressd:xxxxx@127.0.0.1:1/egressd")
	require.NotContains(t, err.Error(), "s3cr3t")
	require.Equal(t, egressd.EINTERNAL, egressd.ErrorCode(err))
}

func TestStartEphemeral(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	e, err := postgres.StartEphemeral(ctx, postgres.EphemeralOptions{})
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

func TestStartEphemeralNoBinaries(t *testing.T) {
	t.Parallel()
	_, err := postgres.StartEphemeral(t.Context(), postgres.EphemeralOptions{BinDir: t.TempDir()})
	require.ErrorContains(t, err, "apt-get install postgresql")
	require.ErrorContains(t, err, "TEST_DATABASE_URL")
}
