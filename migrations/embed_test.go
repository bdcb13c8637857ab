package migrations_test

import (
	"io/fs"
	"testing"

	"github.com/jackc/tern/v2/migrate"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/migrations"
)

func TestFS(t *testing.T) {
	t.Parallel()

	// FindMigrations fails on a gap or a duplicate number.
	names, err := migrate.FindMigrations(migrations.FS)
	require.NoError(t, err)
	require.NotEmpty(t, names)

	for _, name := range names {
		body, err := fs.ReadFile(migrations.FS, name)
		require.NoError(t, err)
		// tern evaluates each file as a Go template.
		require.NotContains(t, string(body), "{{", "%s: tern would read {{ as a template action", name)
	}
}
