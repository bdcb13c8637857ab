// Command egressd-bench measures egressd's performance targets on this
// machine (BENCHMARKS.md): it runs the real collector, detector, alert
// sender and service against loopback Hubble, PostgreSQL and a real
// Alertmanager, and prints each figure with its target. It is its own
// binary so that the server, egressd, links none of this harness.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/detector"
	"github.com/egressd/egressd/postgres"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// run runs the harness with args and returns the exit status: 0, or 2 on
// a usage mistake or a failure.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	err := bench(ctx, args, stdout, stderr, getenv)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	default:
		fmt.Fprintln(stderr, "egressd-bench:", err)
		return 2
	}
}

func usageError(format string, args ...any) error {
	return egressd.Errorf(egressd.EINVALID, format, args...)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// openDB connects to url and migrates the database.
func openDB(ctx context.Context, url string) (*postgres.DB, error) {
	opts := postgres.DefaultOptions()
	opts.URL = postgres.DSN(url)
	db, err := postgres.Open(ctx, opts)
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// benchStore records anomalies as `egressd serve` does: in PostgreSQL, one
// outbox row per Alertmanager, then wakes the alert sender.
type benchStore struct {
	db      *postgres.DB
	targets []string
	wake    func()
}

func (s *benchStore) Raise(ctx context.Context, a egressd.Anomaly) (bool, error) {
	inserted, err := s.db.RecordAnomaly(ctx, a, s.targets, time.Now())
	if inserted && s.wake != nil {
		s.wake()
	}
	return inserted, err
}

func (s *benchStore) Resolve(ctx context.Context, fingerprint string, at time.Time) error {
	_, err := s.db.ResolveAnomaly(ctx, fingerprint, at)
	if err == nil && s.wake != nil {
		s.wake()
	}
	return err
}

var _ detector.Store = (*benchStore)(nil)
