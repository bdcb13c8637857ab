package service

import (
	"context"
	"log/slog"
	"time"

	"github.com/egressd/egressd"
)

// LeaseTable is what holding a lease needs (postgres.DB): a Singleton's,
// and a Collector's besides its fenced writes.
type LeaseTable interface {
	AcquireLease(ctx context.Context, source, holder string, ttl time.Duration) (egressd.Lease, error)
	RenewLease(ctx context.Context, l egressd.Lease, ttl time.Duration) (egressd.Lease, error)
	ReleaseLease(ctx context.Context, l egressd.Lease) error
}

// Singleton runs a job on one replica of many at a time: the one holding
// the lease Name. In per-node mode every node's egressd would otherwise
// run the Prometheus volume rule, and raise each app's volume anomaly once
// per node (its fingerprint carries the start of the episode, which each
// would see at a slightly different time).
type Singleton struct {
	Leases LeaseTable
	// Name is the lease's name, in the table of the sources' leases.
	Name, Holder string
	// TTL, Renew and Poll are as the collector's lease timings.
	TTL, Renew, Poll time.Duration
	Log              *slog.Logger
}

// Run runs job while this replica holds the lease, until ctx ends: it
// waits for the lease, runs job under a context that ends when the lease
// is lost (job should then return; it is run again once the lease is back),
// and releases the lease when ctx ends.
func (s *Singleton) Run(ctx context.Context, job func(ctx context.Context) error) error {
	for {
		l, err := s.Leases.AcquireLease(ctx, s.Name, s.Holder, s.TTL)
		if err != nil {
			if !egressd.LeaseLost(err) && ctx.Err() == nil {
				s.Log.Warn("singleton_acquire_failed", "lease", s.Name, "err", err)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(s.Poll):
			}
			continue
		}
		s.Log.Info("singleton_acquired", "lease", s.Name, "replica", s.Holder)
		jobCtx, lost := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- job(jobCtx) }()
		err = s.hold(jobCtx, l, lost, done)
		lost()
		if ctx.Err() != nil {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if rerr := s.Leases.ReleaseLease(rctx, l); rerr != nil {
				s.Log.Warn("singleton_release_failed", "lease", s.Name, "err", rerr)
			}
			cancel()
			return err
		}
		if err != nil {
			return err
		}
	}
}

// hold renews l until the job returns (its error), ctx ends or the lease
// is lost (lost is then called); it waits for the job either way.
func (s *Singleton) hold(ctx context.Context, l egressd.Lease, lost func(), done <-chan error) error {
	t := time.NewTicker(s.Renew)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			return <-done
		case <-t.C:
		}
		renewed, err := s.Leases.RenewLease(ctx, l, s.TTL)
		switch {
		case err == nil:
			l = renewed
		case egressd.LeaseLost(err):
			s.Log.Warn("singleton_lost", "lease", s.Name, "err", err)
			lost()
			return <-done
		case ctx.Err() == nil:
			s.Log.Warn("singleton_renew_failed", "lease", s.Name, "err", err)
		}
	}
}
