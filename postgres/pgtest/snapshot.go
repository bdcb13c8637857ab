package pgtest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/egressd/egressd/postgres"
)

// Snapshot is a database filled once per test binary, the first time a
// test asks for it, that tests then copy: several tests that start from
// the same costly state (a week of flows replayed, a detector's learning
// done) pay for it once. PostgreSQL copies a database from a template
// file by file, in a fraction of the time the replay took.
//
// Declare one per state, at package level:
//
//	var learnt = pgtest.NewSnapshot("learnt", func(ctx context.Context, dsn postgres.DSN) error {
//		... replay the learning week into dsn, close every connection ...
//	})
type Snapshot struct {
	name string
	base *Snapshot // nil: filled from the migrated template
	fill func(ctx context.Context, dsn postgres.DSN) error

	once sync.Once
	db   string // the filled database, "" until fill succeeded
	err  error
}

// NewSnapshot returns a Snapshot that fill builds from a fresh, migrated
// database. fill must close every connection it opened before it returns:
// PostgreSQL copies only a database nobody is connected to. name appears
// in error messages.
func NewSnapshot(name string, fill func(ctx context.Context, dsn postgres.DSN) error) *Snapshot {
	return &Snapshot{name: name, fill: fill}
}

// NewSnapshotFrom is NewSnapshot, fill starting from a copy of base
// instead of an empty database: a state built on another one.
func NewSnapshotFrom(base *Snapshot, name string, fill func(ctx context.Context, dsn postgres.DSN) error) *Snapshot {
	return &Snapshot{name: name, base: base, fill: fill}
}

// URL returns the URL of a fresh copy of the snapshot, dropped when t
// ends. The first call fills the snapshot, and fails every test that asks
// for it if that fails.
func (s *Snapshot) URL(t testing.TB) postgres.DSN {
	t.Helper()
	srv := get(t)
	db, err := s.filled(srv)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return srv.createDB(t, db)
}

// filled returns the snapshot's database, filling it (and its base) the
// first time.
func (s *Snapshot) filled(srv *server) (string, error) {
	s.once.Do(func() {
		from := srv.template
		if s.base != nil {
			if from, s.err = s.base.filled(srv); s.err != nil {
				return
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		s.db, s.err = srv.snapshot(ctx, from, s.fill)
		if s.err != nil {
			s.err = fmt.Errorf("snapshot %s: %w", s.name, s.err)
		}
	})
	return s.db, s.err
}

// snapshot fills a new database copied from the database from, kept until
// the server closes.
func (s *server) snapshot(ctx context.Context, from string, fill func(context.Context, postgres.DSN) error) (string, error) {
	name := dbPrefix + "snapshot_" + randomHex(6)
	if _, err := s.admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, from)); err != nil {
		return "", fmt.Errorf("create database: %v", err)
	}
	s.mu.Lock()
	s.snapshots = append(s.snapshots, name)
	s.mu.Unlock()
	dsn, err := withDatabase(s.base, name)
	if err != nil {
		return "", err
	}
	if err := fill(ctx, dsn); err != nil {
		return "", err
	}
	return name, nil
}
