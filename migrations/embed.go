package migrations

import "embed"

// FS holds the numbered migration files at its root, in the layout tern's
// migrate.Migrator.LoadMigrations expects.
//
//go:embed *.sql
var FS embed.FS
