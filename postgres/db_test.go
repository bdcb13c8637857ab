package postgres_test

import (
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
