package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/migrations"
)

// versionTable records the number of the last applied migration (tern's
// format: one row, one column).
const versionTable = "schema_version"

// DB is a pool of connections to egressd's database. It is safe for
// concurrent use.
type DB struct {
	pool *pgxpool.Pool
	// apiPool is the HTTP API's own pool (see API); the main pool when
	// Options.APIMaxConns is 0.
	apiPool *pgxpool.Pool
	url     DSN
}

// Open validates opts, connects and checks that the server answers.
func Open(ctx context.Context, opts Options) (*DB, error) {
	cfg, err := opts.poolConfig()
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, wrap(err, "open %s", opts.URL)
	}
	db := &DB{pool: pool, apiPool: pool, url: opts.URL}
	if opts.APIMaxConns > 0 {
		// pgxpool dials on demand (MinConns is 0): this pool costs
		// nothing until the API is used.
		apiCfg := cfg.Copy()
		apiCfg.MaxConns, apiCfg.MinConns = opts.APIMaxConns, 0
		// API reads are a page of rows each. PostgreSQL's JIT compiler,
		// which a misestimated plan (fresh statistics pending) can switch
		// on, costs a quarter of a second per statement for nothing.
		apiCfg.ConnConfig.RuntimeParams["jit"] = "off"
		if opts.ApplicationName != "" && apiCfg.ConnConfig.RuntimeParams["application_name"] == opts.ApplicationName {
			apiCfg.ConnConfig.RuntimeParams["application_name"] = opts.ApplicationName + "-api"
		}
		if db.apiPool, err = pgxpool.NewWithConfig(ctx, apiCfg); err != nil {
			pool.Close()
			return nil, wrap(err, "open %s", opts.URL)
		}
	}
	if err := db.Ping(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// API returns the DB the HTTP API reads and accepts through: the same
// database and methods on a pool of its own (Options.APIMaxConns), so that
// however many API requests wait for a connection, the collector's flushes
// and lease renewals on the main pool never do. Closing db closes both;
// closing what API returns closes only the API's pool.
func (db *DB) API() *DB {
	return &DB{pool: db.apiPool, apiPool: db.apiPool, url: db.url}
}

// Close closes every connection, waiting for those in use to be released.
func (db *DB) Close() {
	db.pool.Close()
	db.apiPool.Close() // the same pool again, without APIMaxConns: a no-op
}

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.pool.Ping(ctx); err != nil {
		return wrap(err, "connect to %s", db.url)
	}
	return nil
}

// Migrate applies the migrations in migrations.FS that the database lacks,
// each in its own transaction, and records the version in schema_version.
// Concurrent calls, from this process or others, are safe: tern holds a
// session advisory lock while it migrates, so the second waits and then
// finds nothing to do.
func (db *DB) Migrate(ctx context.Context) error {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return wrap(err, "migrate: connect to %s", db.url)
	}
	defer conn.Release()

	m, err := migrate.NewMigrator(ctx, conn.Conn(), versionTable)
	if err != nil {
		return wrap(err, "migrate: create %s", versionTable)
	}
	if err := m.LoadMigrations(migrations.FS); err != nil {
		return fmt.Errorf("migrate: load migrations: %v", err)
	}
	before, err := m.GetCurrentVersion(ctx)
	if err != nil {
		return wrap(err, "migrate: read %s", versionTable)
	}
	if err := m.Migrate(ctx); err != nil {
		var mErr migrate.MigrationPgError
		if errors.As(err, &mErr) {
			return fmt.Errorf("migrate: %s: %s (SQLSTATE %s)", mErr.MigrationName, mErr.Message, mErr.Code)
		}
		return wrap(err, "migrate")
	}
	after, err := m.GetCurrentVersion(ctx)
	if err != nil {
		return wrap(err, "migrate: read %s", versionTable)
	}
	if after != before {
		// Connections may hold prepared statements planned against the old
		// schema; start afresh rather than risk "cached plan must not
		// change result type".
		conn.Release()
		db.pool.Reset()
	}
	return nil
}

// SchemaVersion returns the number of the last applied migration, 0 for an
// empty database.
func (db *DB) SchemaVersion(ctx context.Context) (int, error) {
	var exists bool
	err := db.pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, versionTable).Scan(&exists)
	if err != nil {
		return 0, wrap(err, "read schema version")
	}
	if !exists {
		return 0, nil
	}
	var v int32
	if err := db.pool.QueryRow(ctx, `SELECT version FROM `+versionTable).Scan(&v); err != nil {
		return 0, wrap(err, "read schema version")
	}
	return int(v), nil
}

// LatestSchemaVersion returns the number of the newest migration in
// migrations.FS: the version Migrate brings a database to.
func LatestSchemaVersion() (int, error) {
	names, err := migrate.FindMigrations(migrations.FS)
	if err != nil {
		return 0, fmt.Errorf("list migrations: %v", err)
	}
	return len(names), nil
}

// wrap converts an error from pgx into one that carries no pgx type, with
// context: "no rows" becomes egressd.ErrNotFound, a cancelled or expired
// context stays detectable with errors.Is, and a server error keeps its
// message and SQLSTATE.
func wrap(err error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return egressd.Errorf(egressd.ENOTFOUND, "%s: not found", msg)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("%s: %w", msg, context.Canceled)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w", msg, context.DeadlineExceeded)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return fmt.Errorf("%s: %s (SQLSTATE %s)", msg, pgErr.Message, pgErr.Code)
	}
	return fmt.Errorf("%s: %v", msg, err)
}
