package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgserver"
)

// EnvURL names the variable that points tests at an existing server. Its
// user needs the CREATEDB privilege.
const EnvURL = "TEST_DATABASE_URL"

// dbPrefix starts the name of every database pgtest creates, so that ones
// left behind by a killed test binary are easy to find and drop.
const dbPrefix = "egressd_test_"

var (
	inMain atomic.Bool

	setupOnce sync.Once
	srv       *server
	setupErr  error
)

// server is the PostgreSQL server of this test binary.
type server struct {
	ephemeral *pgserver.Server // nil with TEST_DATABASE_URL
	base      postgres.DSN     // any database of the server
	admin     *pgxpool.Pool    // connected to base, for CREATE/DROP DATABASE
	template  string           // migrated database the tests copy

	mu        sync.Mutex
	snapshots []string // databases of the Snapshots filled so far
}

// Main runs the tests of a package that uses pgtest, then runs after (the
// package's own cleanup of what its tests shared), stops the server and
// drops the template database. Call it from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
func Main(m *testing.M, after ...func()) {
	inMain.Store(true)
	code := m.Run()
	for _, f := range after {
		f()
	}
	if srv != nil {
		if err := srv.close(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// NewDB returns a connection pool on a fresh, migrated database that is
// dropped when t ends.
func NewDB(t testing.TB) *postgres.DB {
	t.Helper()
	dsn := URL(t)
	opts := postgres.DefaultOptions()
	opts.URL = dsn
	opts.MaxConns = 4
	db, err := postgres.Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	// Cleanups run last-in first-out: the pool closes before its database
	// is dropped.
	t.Cleanup(db.Close)
	return db
}

// URL returns the URL of a fresh, migrated database that is dropped when t
// ends, for tests that open their own connections or run the egressd
// binary.
func URL(t testing.TB) postgres.DSN {
	t.Helper()
	s := get(t)
	return s.createDB(t, s.template)
}

// EmptyURL returns the URL of a fresh database with no tables at all, for
// tests of migrations. It is dropped when t ends.
func EmptyURL(t testing.TB) postgres.DSN {
	t.Helper()
	return get(t).createDB(t, "template0")
}

func get(t testing.TB) *server {
	t.Helper()
	if !inMain.Load() {
		t.Fatal("pgtest: call pgtest.Main(m) from TestMain in this package, so the test database server is stopped after the tests")
	}
	setupOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		srv, setupErr = setup(ctx)
	})
	if setupErr != nil {
		t.Fatalf("pgtest: no test database: %v", setupErr)
	}
	return srv
}

func setup(ctx context.Context) (*server, error) {
	s := &server{}
	if u := os.Getenv(EnvURL); u != "" {
		s.base = postgres.DSN(u)
	} else {
		e, err := pgserver.Start(ctx, pgserver.Options{})
		if err != nil {
			return nil, fmt.Errorf("%s is unset and %w", EnvURL, err)
		}
		s.ephemeral = e
		s.base = e.URL()
	}
	cfg, err := pgxpool.ParseConfig(string(s.base))
	if err != nil {
		s.close()
		return nil, fmt.Errorf("%s %s: %v", EnvURL, s.base, err)
	}
	cfg.MaxConns = 4
	s.admin, err = pgxpool.NewWithConfig(ctx, cfg)
	if err == nil {
		err = s.admin.Ping(ctx)
	}
	if err != nil {
		s.close()
		return nil, fmt.Errorf("connect to %s: %v", s.base, err)
	}

	// One template per test binary: test binaries of several packages may
	// share a TEST_DATABASE_URL server at once.
	s.template = dbPrefix + "template_" + randomHex(6)
	if _, err := s.admin.Exec(ctx, "CREATE DATABASE "+s.template); err != nil {
		s.template = ""
		s.close()
		return nil, fmt.Errorf("create template database on %s (the user needs the CREATEDB privilege): %v", s.base, err)
	}
	dsn, err := withDatabase(s.base, s.template)
	if err != nil {
		s.close()
		return nil, err
	}
	db, err := postgres.Open(ctx, postgres.Options{URL: dsn, MaxConns: 1})
	if err != nil {
		s.close()
		return nil, err
	}
	err = db.Migrate(ctx)
	// CREATE DATABASE ... TEMPLATE fails while anyone is connected to the
	// template, so close before any test copies it.
	db.Close()
	if err != nil {
		s.close()
		return nil, fmt.Errorf("migrate template database: %w", err)
	}
	return s, nil
}

func (s *server) createDB(t testing.TB, template string) postgres.DSN {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := dbPrefix + randomHex(8)
	sql := fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, pgx.Identifier{template}.Sanitize())
	if _, err := s.admin.Exec(ctx, sql); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := s.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	dsn, err := withDatabase(s.base, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return dsn
}

func (s *server) close() error {
	var errs []string
	if s.admin != nil {
		if s.ephemeral == nil {
			// Snapshots first: each was copied from the template.
			s.mu.Lock()
			dbs := append(slices.Clone(s.snapshots), s.template)
			s.mu.Unlock()
			for _, name := range dbs {
				if name == "" {
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				_, err := s.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
				cancel()
				if err != nil {
					errs = append(errs, fmt.Sprintf("drop template database %s: %v", name, err))
				}
			}
		}
		s.admin.Close()
	}
	if s.ephemeral != nil {
		if err := s.ephemeral.Close(); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// withDatabase returns dsn with its database replaced by name.
func withDatabase(dsn postgres.DSN, name string) (postgres.DSN, error) {
	s := string(dsn)
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		u, err := url.Parse(s)
		if err != nil {
			return "", fmt.Errorf("parse %s: want postgres://USER:PASSWORD@HOST:PORT/DATABASE", dsn)
		}
		u.Path = "/" + name
		u.RawPath = ""
		return postgres.DSN(u.String()), nil
	}
	// Keyword/value form: a later keyword overrides an earlier one.
	return postgres.DSN(s + " dbname=" + name), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
