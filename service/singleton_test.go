package service_test

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/postgres/pgtest"
	"github.com/egressd/egressd/service"
)

// TestSingletonRunsOnOneReplicaAtATime: three replicas share a lease on one
// database; one runs the job at a time, and when it stops, another takes
// the job over at once (the lease is released), never two at once.
func TestSingletonRunsOnOneReplicaAtATime(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	var running, most atomic.Int32
	started := make(chan string, 10)
	job := func(name string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			n := running.Add(1)
			defer running.Add(-1)
			for {
				m := most.Load()
				if n <= m || most.CompareAndSwap(m, n) {
					break
				}
			}
			started <- name
			<-ctx.Done()
			return nil
		}
	}
	type replica struct {
		stop func()
		done chan error
	}
	replicas := map[string]replica{}
	var mu sync.Mutex
	for _, name := range []string{"node-a", "node-b", "node-c"} {
		s := &service.Singleton{Leases: db, Name: "singleton:test", Holder: name,
			TTL: time.Minute, Renew: 50 * time.Millisecond, Poll: 20 * time.Millisecond, Log: slog.New(slog.DiscardHandler)}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx, job(name)) }()
		mu.Lock()
		replicas[name] = replica{stop: cancel, done: done}
		mu.Unlock()
		t.Cleanup(cancel)
	}
	var order []string
	for range 3 {
		select {
		case name := <-started:
			order = append(order, name)
			r := replicas[name]
			// Long renewals: a replica that takes over before the lease
			// expires (a minute) found it released.
			r.stop()
			require.NoError(t, <-r.done)
		case <-time.After(20 * time.Second):
			t.Fatalf("the job was not taken over; ran on %v", order)
		}
	}
	require.ElementsMatch(t, []string{"node-a", "node-b", "node-c"}, order)
	require.Equal(t, int32(1), most.Load(), "the job ran on two replicas at once")
}
