package service_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/service"
)

// fakeLeases is service.Leases with function fields; nil ones succeed.
type fakeLeases struct {
	acquire func(source, holder string) (egressd.Lease, error)
	renew   func(l egressd.Lease) (egressd.Lease, error)
	// cursor is the source's cursor; zero means none is stored.
	cursor time.Time
	// resumeBlocks makes ResumeCursor wait for its context to end, as a
	// query does when the service stops while it runs.
	resumeBlocks bool

	mu       sync.Mutex
	released []egressd.Lease
}

func (f *fakeLeases) AcquireLease(_ context.Context, source, holder string, ttl time.Duration) (egressd.Lease, error) {
	if f.acquire != nil {
		return f.acquire(source, holder)
	}
	return egressd.Lease{Source: source, Holder: holder, Token: 1, Expires: time.Now().Add(ttl)}, nil
}

func (f *fakeLeases) RenewLease(_ context.Context, l egressd.Lease, _ time.Duration) (egressd.Lease, error) {
	if f.renew != nil {
		return f.renew(l)
	}
	return l, nil
}

func (f *fakeLeases) ReleaseLease(_ context.Context, l egressd.Lease) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.released = append(f.released, l)
	return nil
}

func (f *fakeLeases) Released() []egressd.Lease {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]egressd.Lease(nil), f.released...)
}

func (f *fakeLeases) WriteRollupFenced(context.Context, *egressd.Rollup, egressd.Lease) error {
	return nil
}

func (f *fakeLeases) ResumeCursor(ctx context.Context, source string, _ time.Time, _ *slog.Logger) (time.Time, error) {
	if f.resumeBlocks {
		<-ctx.Done()
		return time.Time{}, fmt.Errorf("cursor of source %q: %w", source, ctx.Err())
	}
	if !f.cursor.IsZero() {
		return f.cursor, nil
	}
	return time.Time{}, egressd.Errorf(egressd.ENOTFOUND, "no cursor")
}

// streamFunc is a service.Stream.
type streamFunc func(ctx context.Context) error

func (f streamFunc) Run(ctx context.Context, _ func() time.Time, _ func([]byte) error) error {
	return f(ctx)
}

// untilCancelled streams nothing until ctx ends, counting its streams.
func untilCancelled(n *atomic.Int32) streamFunc {
	return func(ctx context.Context) error {
		n.Add(1)
		<-ctx.Done()
		return nil
	}
}

func lost(holder string) error {
	return fmt.Errorf("source held by %s: %w", holder, egressd.ErrLeaseLost)
}

func newCollector(t *testing.T, leases service.Leases, stream service.Stream, edit func(*service.CollectorOptions)) *service.Collector {
	t.Helper()
	opts := service.CollectorOptions{
		Source: "hubble:test", ReplicaID: "replica-a",
		LeaseTTL: time.Minute, LeaseRenew: 10 * time.Millisecond, LeasePoll: 5 * time.Millisecond,
		Pipeline: collector.DefaultOptions(), Aggregate: collector.DefaultAggregatorOptions(),
	}
	if edit != nil {
		edit(&opts)
	}
	c, err := service.NewCollector(opts, leases, stream, nil, nil, nil)
	require.NoError(t, err)
	return c
}

// run runs f until the returned stop is called; stop returns f's error.
func run(f func(ctx context.Context) error) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	return func() error { cancel(); return <-done }
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestCollectorReleasesOnlyAtItsTurn: the collector stops streaming when
// its context ends but keeps the lease; ReleaseOnStop, a later component,
// releases it.
func TestCollectorReleasesOnlyAtItsTurn(t *testing.T) {
	t.Parallel()
	leases := &fakeLeases{}
	var streams atomic.Int32
	c := newCollector(t, leases, untilCancelled(&streams), nil)
	stopRun := run(c.Run)
	stopRelease := run(c.ReleaseOnStop)
	eventually(t, "the collector streams", func() bool { return c.Active() && streams.Load() == 1 })

	require.NoError(t, stopRun())
	require.False(t, c.Active())
	require.Empty(t, leases.Released(), "released before its turn")
	require.NoError(t, stopRelease())
	require.Equal(t, []egressd.Lease{{Source: "hubble:test", Holder: "replica-a", Token: 1}},
		zeroExpiry(leases.Released()))
}

// TestCollectorStreamFinished: a stream that ends by itself (no --follow)
// ends Run, which stops the service; the lease is still released.
func TestCollectorStreamFinished(t *testing.T) {
	t.Parallel()
	leases := &fakeLeases{}
	c := newCollector(t, leases, streamFunc(func(context.Context) error { return nil }), nil)
	require.NoError(t, c.Run(context.Background()))
	stopRelease := run(c.ReleaseOnStop)
	require.NoError(t, stopRelease())
	require.Len(t, leases.Released(), 1)
}

// TestCollectorStandbyThenTakesOver: while another replica holds the
// lease this one is a standby that names it; once free, it streams.
func TestCollectorStandbyThenTakesOver(t *testing.T) {
	t.Parallel()
	var free atomic.Bool
	leases := &fakeLeases{acquire: func(source, holder string) (egressd.Lease, error) {
		if !free.Load() {
			return egressd.Lease{Source: source, Holder: "replica-b"}, lost("replica-b")
		}
		return egressd.Lease{Source: source, Holder: holder, Token: 2}, nil
	}}
	var streams atomic.Int32
	c := newCollector(t, leases, untilCancelled(&streams), nil)
	stopRun := run(c.Run)
	eventually(t, "a standby of replica-b", func() bool { h, ok := c.StandbyOf(); return ok && h == "replica-b" })
	require.False(t, c.Active())
	require.Zero(t, streams.Load(), "a standby streams")

	free.Store(true)
	eventually(t, "the collector streams", func() bool { return c.Active() && streams.Load() == 1 })
	_, standby := c.StandbyOf()
	require.False(t, standby)
	require.NoError(t, stopRun())
}

// TestCollectorLeaseLostOnRenewal: a renewal that finds the source taken
// over ends the stream; the replica waits again and never releases a
// lease that is not its own.
func TestCollectorLeaseLostOnRenewal(t *testing.T) {
	t.Parallel()
	var taken atomic.Bool
	leases := &fakeLeases{
		acquire: func(source, holder string) (egressd.Lease, error) {
			if taken.Load() {
				return egressd.Lease{Source: source, Holder: "thief"}, lost("thief")
			}
			return egressd.Lease{Source: source, Holder: holder, Token: 1}, nil
		},
		renew: func(l egressd.Lease) (egressd.Lease, error) {
			taken.Store(true)
			return l, lost("thief")
		},
	}
	var streams atomic.Int32
	c := newCollector(t, leases, untilCancelled(&streams), nil)
	stopRun := run(c.Run)
	stopRelease := run(c.ReleaseOnStop)
	eventually(t, "a standby of the thief", func() bool { h, ok := c.StandbyOf(); return ok && h == "thief" })
	require.False(t, c.Active())
	require.Equal(t, int32(1), streams.Load())
	require.NoError(t, stopRun())
	require.NoError(t, stopRelease())
	require.Empty(t, leases.Released(), "released a lease another replica holds")
}

// TestCollectorKeepLeaseOnStop: as a crash would, the lease is left to
// expire.
func TestCollectorKeepLeaseOnStop(t *testing.T) {
	t.Parallel()
	leases := &fakeLeases{}
	var streams atomic.Int32
	c := newCollector(t, leases, untilCancelled(&streams), func(o *service.CollectorOptions) { o.KeepLeaseOnStop = true })
	stopRun := run(c.Run)
	stopRelease := run(c.ReleaseOnStop)
	eventually(t, "the collector streams", c.Active)
	require.NoError(t, stopRun())
	require.NoError(t, stopRelease())
	require.Empty(t, leases.Released())
}

// TestCollectorOnTermAtEachTerm: every term runs OnTerm with its own
// pipeline before it streams, as of the source's cursor, so a standby that
// takes over primes what the former holder stored.
func TestCollectorOnTermAtEachTerm(t *testing.T) {
	t.Parallel()
	cursor := time.Date(2026, 11, 8, 12, 0, 0, 0, time.UTC)
	var stolen atomic.Bool
	leases := &fakeLeases{
		cursor: cursor,
		renew: func(l egressd.Lease) (egressd.Lease, error) {
			if stolen.Swap(false) {
				return l, lost("replica-b")
			}
			return l, nil
		},
	}
	var streams atomic.Int32
	var mu sync.Mutex
	var resumes []time.Time
	var streamedBefore []int32
	pipes := map[*collector.Pipeline]bool{}
	c := newCollector(t, leases, untilCancelled(&streams), func(o *service.CollectorOptions) {
		o.OnTerm = func(_ context.Context, resume time.Time, pipe *collector.Pipeline) error {
			mu.Lock()
			defer mu.Unlock()
			streamedBefore = append(streamedBefore, streams.Load())
			resumes = append(resumes, resume)
			pipes[pipe] = true
			return nil
		}
	})
	stopRun := run(c.Run)
	eventually(t, "the first term streams", func() bool { return streams.Load() == 1 })
	stolen.Store(true) // the term ends; the next acquire starts another
	eventually(t, "the second term streams", func() bool { return streams.Load() == 2 })
	require.NoError(t, stopRun())
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []time.Time{cursor, cursor}, resumes)
	require.Equal(t, []int32{0, 1}, streamedBefore, "OnTerm after its term streamed")
	require.Len(t, pipes, 2, "a term reused its predecessor's pipeline")
}

// TestCollectorOnTermFails: a term that cannot load what storage knows
// streams nothing and ends Run with the error; its lease is still released.
func TestCollectorOnTermFails(t *testing.T) {
	t.Parallel()
	leases := &fakeLeases{}
	var streams atomic.Int32
	var resume time.Time
	c := newCollector(t, leases, untilCancelled(&streams), func(o *service.CollectorOptions) {
		o.OnTerm = func(_ context.Context, at time.Time, _ *collector.Pipeline) error {
			resume = at
			return fmt.Errorf("prime detector: database down")
		}
	})
	require.ErrorContains(t, c.Run(context.Background()), "prime detector: database down")
	require.WithinDuration(t, time.Now(), resume, time.Minute, "no cursor: the wall clock")
	require.Zero(t, streams.Load())
	require.NoError(t, run(c.ReleaseOnStop)())
	require.Len(t, leases.Released(), 1)
}

// TestCollectorStopsCleanlyBeforeStreaming: a stop that arrives while a
// term reads its cursor or primes the detector is a clean stop, not the
// cancelled query's error; the lease is still released at its turn.
func TestCollectorStopsCleanlyBeforeStreaming(t *testing.T) {
	t.Parallel()
	for _, step := range []string{"cursor", "prime"} {
		t.Run(step, func(t *testing.T) {
			t.Parallel()
			leases := &fakeLeases{resumeBlocks: step == "cursor"}
			var streams atomic.Int32
			started := make(chan struct{})
			c := newCollector(t, leases, untilCancelled(&streams), func(o *service.CollectorOptions) {
				o.OnTerm = func(ctx context.Context, _ time.Time, _ *collector.Pipeline) error {
					close(started)
					<-ctx.Done()
					return fmt.Errorf("prime detector: %w", ctx.Err())
				}
			})
			stopRun := run(c.Run)
			if step == "prime" {
				<-started
			} else {
				eventually(t, "the term holds its lease", c.Active)
			}
			require.NoError(t, stopRun())
			require.Zero(t, streams.Load())
			require.NoError(t, run(c.ReleaseOnStop)())
			require.Len(t, leases.Released(), 1)
		})
	}
}

func TestCollectorOptionsErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		edit func(*service.CollectorOptions)
		want string
	}{
		{"no source", func(o *service.CollectorOptions) { o.Source = "" }, "service: CollectorOptions.Source is empty"},
		{"renew not shorter than the TTL", func(o *service.CollectorOptions) { o.LeaseRenew = o.LeaseTTL },
			"service: CollectorOptions.LeaseRenew (1m0s) must be shorter than LeaseTTL (1m0s)"},
		{"bad aggregator", func(o *service.CollectorOptions) { o.Aggregate.FlushInterval = -1 }, "FlushInterval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := service.CollectorOptions{
				Source: "hubble:test", LeaseTTL: time.Minute,
				Pipeline: collector.DefaultOptions(), Aggregate: collector.DefaultAggregatorOptions(),
			}
			tc.edit(&opts)
			_, err := service.NewCollector(opts, &fakeLeases{}, streamFunc(nil), nil, nil, nil)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func zeroExpiry(ls []egressd.Lease) []egressd.Lease {
	for i := range ls {
		ls[i].Expires = time.Time{}
	}
	return ls
}
