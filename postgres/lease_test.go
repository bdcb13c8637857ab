package postgres_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgtest"
)

const leaseSource = "hubble:relay:4245"

// leaseRollup is one flow to api.github.com, with the source's cursor at
// its time.
func leaseRollup(ts time.Time) *egressd.Rollup {
	return &egressd.Rollup{
		Destinations: []egressd.DestinationRollup{destRollup(DestOpts{App: recyclarr, Destination: github, FirstSeen: ts})},
		Hourly:       []egressd.HourlyRollup{hourly(recyclarr, github, ts.Truncate(time.Hour), 1, 0)},
		Cursors:      []egressd.Cursor{{Source: leaseSource, Time: ts}},
	}
}

func TestLeaseAcquireRenewRelease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	const ttl = time.Minute

	a, err := db.AcquireLease(ctx, leaseSource, "replica-a", ttl)
	require.NoError(t, err)
	require.Equal(t, int64(1), a.Token)
	require.Equal(t, "replica-a", a.Holder)

	// Another replica waits while the lease is held, and learns by whom.
	other, err := db.AcquireLease(ctx, leaseSource, "replica-b", ttl)
	require.True(t, postgres.LeaseLost(err), "err = %v", err)
	require.Equal(t, egressd.ECONFLICT, egressd.ErrorCode(err))
	require.Equal(t, "replica-a", other.Holder)

	// A different source is a different lease.
	_, err = db.AcquireLease(ctx, "hubble:other:4245", "replica-b", ttl)
	require.NoError(t, err)

	// Acquiring again what one holds renews it under a new token.
	a2, err := db.AcquireLease(ctx, leaseSource, "replica-a", ttl)
	require.NoError(t, err)
	require.Equal(t, int64(2), a2.Token)
	_, err = db.RenewLease(ctx, a, ttl)
	require.True(t, postgres.LeaseLost(err), "the superseded lease value still renews: %v", err)
	renewed, err := db.RenewLease(ctx, a2, ttl)
	require.NoError(t, err)
	require.False(t, renewed.Expires.Before(a2.Expires))

	// Released, it is taken at once.
	require.NoError(t, db.ReleaseLease(ctx, a2))
	b, err := db.AcquireLease(ctx, leaseSource, "replica-b", ttl)
	require.NoError(t, err)
	require.Equal(t, int64(3), b.Token)

	// The former holder can neither renew nor release it any more.
	_, err = db.RenewLease(ctx, a2, ttl)
	require.True(t, postgres.LeaseLost(err), "err = %v", err)
	require.NoError(t, db.ReleaseLease(ctx, a2))
	_, err = db.RenewLease(ctx, b, ttl)
	require.NoError(t, err, "releasing a lost lease took it from its new holder")

	_, err = db.AcquireLease(ctx, leaseSource, "replica-a", 0)
	require.Equal(t, egressd.EINVALID, egressd.ErrorCode(err))
}

// TestLeaseExpiresOnDatabaseClock: an unrenewed lease is taken over after
// its TTL, and the former holder then finds it lost.
func TestLeaseExpiresOnDatabaseClock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)

	a, err := db.AcquireLease(ctx, leaseSource, "replica-a", 200*time.Millisecond)
	require.NoError(t, err)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err = db.AcquireLease(ctx, leaseSource, "replica-b", time.Minute)
		if err == nil {
			break
		}
		require.True(t, postgres.LeaseLost(err), "err = %v", err)
		require.False(t, time.Now().After(deadline), "the expired lease was never taken over")
		time.Sleep(20 * time.Millisecond)
	}
	_, err = db.RenewLease(ctx, a, time.Minute)
	require.True(t, postgres.LeaseLost(err), "err = %v", err)
}

// TestLeaseOneWinner: replicas racing for a free source get one holder.
func TestLeaseOneWinner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)

	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = db.AcquireLease(ctx, leaseSource, "replica-"+string(rune('a'+i)), time.Minute)
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
			continue
		}
		require.True(t, postgres.LeaseLost(err), "err = %v", err)
	}
	require.Equal(t, 1, won)
}

// TestWriteRollupFenced: a rollup and its cursor are written only under the
// current lease; a refused rollup writes nothing at all.
func TestWriteRollupFenced(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	ts := at(5 * time.Minute)

	// No lease at all: refused.
	err := db.WriteRollupFenced(ctx, leaseRollup(ts), postgres.Lease{Source: leaseSource, Holder: "replica-a", Token: 1})
	require.True(t, postgres.LeaseLost(err), "err = %v", err)

	a, err := db.AcquireLease(ctx, leaseSource, "replica-a", time.Minute)
	require.NoError(t, err)
	require.NoError(t, db.WriteRollupFenced(ctx, leaseRollup(ts), a))
	n, err := db.FlowTotal(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(1), n)

	// Taken over: the former holder's rollup, flows and cursor, is
	// refused.
	require.NoError(t, db.ReleaseLease(ctx, a))
	b, err := db.AcquireLease(ctx, leaseSource, "replica-b", time.Minute)
	require.NoError(t, err)
	err = db.WriteRollupFenced(ctx, leaseRollup(ts.Add(time.Minute)), a)
	require.True(t, postgres.LeaseLost(err), "err = %v", err)
	require.Equal(t, egressd.ECONFLICT, egressd.ErrorCode(err))
	n, err = db.FlowTotal(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
	cur, err := db.Cursor(ctx, leaseSource)
	require.NoError(t, err)
	require.True(t, cur.Equal(ts), "cursor = %s, want %s", cur, ts)

	// The new holder writes.
	require.NoError(t, db.WriteRollupFenced(ctx, leaseRollup(ts.Add(time.Minute)), b))
	n, err = db.FlowTotal(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(2), n)

	// A lease that lapsed but that nobody took over still writes and
	// renews (a database outage longer than the TTL loses nothing).
	require.NoError(t, db.ReleaseLease(ctx, b))
	require.NoError(t, db.WriteRollupFenced(ctx, leaseRollup(ts.Add(2*time.Minute)), b))
	_, err = db.RenewLease(ctx, b, time.Minute)
	require.NoError(t, err)
	n, err = db.FlowTotal(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(3), n)
}

// TestWriteRollupFencedHoldsOffTakeover: a takeover waits for a fenced
// write in progress, so the new holder's cursor read sees its rollup.
func TestWriteRollupFencedHoldsOffTakeover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	ts := at(5 * time.Minute)

	a, err := db.AcquireLease(ctx, leaseSource, "replica-a", time.Microsecond)
	require.NoError(t, err)
	// Many fenced writes race with takeover attempts: whichever order
	// they commit in, every write that succeeded is stored, and none
	// succeeds after the takeover committed.
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Go(func() {
			errs[i] = db.WriteRollupFenced(ctx, leaseRollup(ts.Add(time.Duration(i)*time.Second)), a)
		})
	}
	var takeErr error
	var takenAt int64
	wg.Go(func() {
		if _, takeErr = db.AcquireLease(ctx, leaseSource, "replica-b", time.Minute); takeErr == nil {
			takenAt, takeErr = db.FlowTotal(ctx)
		}
	})
	wg.Wait()
	require.NoError(t, takeErr)
	written := int64(0)
	for _, err := range errs {
		if err == nil {
			written++
			continue
		}
		require.True(t, postgres.LeaseLost(err), "err = %v", err)
	}
	n, err := db.FlowTotal(ctx)
	require.NoError(t, err)
	require.Equal(t, written, n)
	require.Equal(t, written, takenAt, "a fenced write committed after the takeover")
}
