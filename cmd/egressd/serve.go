package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/egressd/egressd/detector"
	"github.com/egressd/egressd/service"
)

// ServeConfig is everything `egressd serve` needs (service.Config).
type ServeConfig = service.Config

// Main is the long-running egressd service that `egressd serve` runs
// (service.Service). It holds no signal handling, so tests run it
// in-process.
type Main = service.Service

// NewMain builds the service of cfg with its detector primed from, and
// recording anomalies in, cfg.DB (detect.go), unless cfg sets its own. The
// service primes at each term of the source's lease, as of the source's
// cursor.
func NewMain(cfg ServeConfig, log *slog.Logger) (*Main, error) {
	if cfg.Prime == nil {
		cfg.Prime = func(ctx context.Context, det *detector.Detector, at time.Time) error {
			_, err := det.Prime(ctx, detectorState{cfg.DB}, at)
			return err
		}
	}
	if cfg.NewStore == nil {
		cfg.NewStore = func(wake func()) detector.Store {
			st := &detectorStore{db: cfg.DB, targets: cfg.Alerts.Targets, now: time.Now, wake: wake, onNew: cfg.OnAnomaly}
			if cfg.PerNode {
				st.cluster, st.learning = cfg.DB, cfg.Detect.LearningPeriod
			}
			return st
		}
	}
	return service.New(cfg, log)
}

func (c *CLI) serve(ctx context.Context, args []string) error {
	s, err := c.parseServe(args)
	if err != nil {
		return err
	}
	db, err := openDB(ctx, s.common, true)
	if err != nil {
		return err
	}
	defer db.Close()
	cfg := s.config
	cfg.DB = db
	m, err := NewMain(cfg, s.log)
	if err != nil {
		return err
	}
	return m.Run(ctx)
}
