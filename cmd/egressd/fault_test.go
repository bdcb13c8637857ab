package main

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/cilium/api/v1/observer"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/collector/flowgen"
	"github.com/egressd/egressd/collector/hubbletest"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgtest"
)

// The fault tests run the real components (egressd's Main or binary, a
// throwaway PostgreSQL, the in-process Hubble server) and break one of them
// while flows stream. Each checks README.md's "Failure modes" promise for
// that fault by exact counts: every flow streamed is stored once, no more,
// no fewer, unless the README says it is lost.

// TestFaultPostgresRestartWhileFlowsStream: PostgreSQL stops (fast
// shutdown) for several flush intervals while flows keep streaming, then
// starts again on the same port and data. The flushes that failed are
// retried: the stored total is exactly the flows streamed, per key, and the
// cursor is the last flow. An outage longer than the source's lease changes
// nothing when no other replica took the source over.
func TestFaultPostgresRestartWhileFlowsStream(t *testing.T) {
	t.Parallel()
	const flush = 150 * time.Millisecond
	for _, tc := range []struct {
		name string
		// outage is the least time PostgreSQL stays down, on top of
		// three failed flushes.
		outage time.Duration
		edit   func(*ServeConfig)
	}{
		{name: "a few flush intervals", edit: func(*ServeConfig) {}},
		{name: "longer than the lease", outage: 2 * time.Second, edit: func(c *ServeConfig) {
			c.LeaseTTL, c.LeaseRenew, c.LeasePoll = 500*time.Millisecond, 100*time.Millisecond, 100*time.Millisecond
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			pg, db := faultPostgres(ctx, t)

			srv, addr := startHubble(t, hubbletest.Options{})
			m, stop := faultServe(t, db, addr, flush, tc.edit)
			require.NoError(t, srv.WaitStreams(ctx, 1))
			f := startFaultFeed(t, srv, 2*time.Millisecond)
			waitUntil(t, "flows are stored", func() bool { return faultFlowTotal(db) > 0 })

			failed := m.CollectorMetrics().Flushes.WithLabelValues("error")
			failedBefore := testutil.ToFloat64(failed)
			pg.Stop()
			stoppedAt := time.Now()
			streamedBefore := f.Len()
			// Flows keep arriving while PostgreSQL is down; each flush
			// fails and keeps its aggregates for the next.
			waitUntil(t, "three flushes failed", func() bool {
				// The feed must also have moved on: a slow Stop can let
				// three flushes fail before the first check.
				return testutil.ToFloat64(failed) >= failedBefore+3 && time.Since(stoppedAt) >= tc.outage &&
					f.Len() > streamedBefore
			})
			require.Greater(t, f.Len(), streamedBefore, "flows streamed during the outage")
			require.NoError(t, pg.Restart(ctx))
			outage := time.Since(stoppedAt)
			n := f.Len()
			waitUntil(t, "more flows stream after the restart", func() bool { return f.Len() >= n+100 })
			f.Stop()

			times := f.Times()
			last := times[len(times)-1]
			waitUntil(t, "the cursor reaches the last flow", func() bool {
				cur, err := faultCursor(db, addr)
				return err == nil && !cur.Before(last)
			})
			cur, err := faultCursor(db, addr)
			require.NoError(t, err)
			require.Equal(t, last, cur, "the cursor is the last flow streamed")
			require.Equal(t, int64(len(times)), faultFlowTotal(db), "every flow stored exactly once")
			require.Equal(t, f.Counts(), faultCountsOf(t, db))

			// The final flush at shutdown adds nothing: everything was
			// written.
			stop()
			require.Equal(t, int64(len(times)), faultFlowTotal(db))
			t.Logf("%d flows streamed, %d during the outage of %v, %.0f flushes failed",
				len(times), n-streamedBefore, outage.Round(time.Millisecond), testutil.ToFloat64(failed)-failedBefore)
		})
	}
}

// TestFaultHubbleStreamCutWithRelayReplays: the Hubble stream is cut in the
// middle of a batch and again while idle; egressd reconnects with `since`
// (inclusive, so it gets flows again), and Relay re-sends faultRecent flows as it
// does when a node reconnects. Stored rows equal one clean replay of the
// same flows.
func TestFaultHubbleStreamCutWithRelayReplays(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	day, err := flowgen.HomeLab(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), 24*time.Hour).Generate()
	require.NoError(t, err)
	a, b, c := len(day)/4, len(day)/2, 3*len(day)/4

	srv, addr := startHubble(t, hubbletest.Options{})
	db := pgtest.NewDB(t)
	m, stop := faultServe(t, db, addr, 100*time.Millisecond)
	require.NoError(t, srv.WaitStreams(ctx, 1))

	// 1. The stream ends after 100 responses of the first quarter, in the
	// middle of what the server is sending.
	srv.CutStreamsAfter(100)
	srv.Add(day[:a]...)
	require.NoError(t, srv.WaitRequests(ctx, 2), "egressd reconnects")
	// The resumed stream's start is fixed before anything else is added.
	require.NoError(t, srv.WaitStreams(ctx, 1))
	// Relay re-sends the faultRecent flows of a node that reconnected.
	srv.Add(faultRecent(day[:a])...)
	srv.Add(day[a:b]...)
	waitUntil(t, "the first half is stored", func() bool { return storedUpTo(t, db, addr, lastStreamed(day[:b])) })

	// 2. The stream ends while egressd waits for new flows.
	srv.CutStreamsAfter(0)
	require.NoError(t, srv.WaitRequests(ctx, 3), "egressd reconnects")
	require.NoError(t, srv.WaitStreams(ctx, 1))
	srv.Add(day[b:c]...)
	srv.Add(faultRecent(day[:c])...)
	srv.Add(day[c:]...)
	waitUntil(t, "every flow is stored", func() bool { return storedUpTo(t, db, addr, lastStreamed(day)) })
	stop()

	reqs := srv.Requests()
	require.Len(t, reqs, 3)
	require.NotNil(t, reqs[1].GetSince(), "the first reconnection resumes")
	require.NotNil(t, reqs[2].GetSince(), "the second reconnection resumes")
	first := day[0].GetFlow().GetTime().AsTime()
	since := reqs[1].GetSince().AsTime()
	require.True(t, !since.Before(first) && since.Before(lastStreamed(day[:a]).GetFlow().GetTime().AsTime()),
		"the first reconnection resumes mid-way through the first quarter, not at %v", since)
	since = reqs[2].GetSince().AsTime()
	require.False(t, since.Before(lastStreamed(day[:b]).GetFlow().GetTime().AsTime()),
		"the second reconnection resumes at the last flow handled, not at %v", since)
	require.Greater(t, testutil.ToFloat64(m.CollectorMetrics().Skipped.WithLabelValues("duplicate")), 0.0,
		"the cuts and replays brought duplicates")

	want := pgtest.NewDB(t)
	replayInto(t, want, day)
	require.Equal(t, rowsOf(t, want), rowsOf(t, db))
	require.Equal(t, faultFlowTotal(want), faultFlowTotal(db))
}

// faultRecent returns the responses of the last two minutes of flow time in
// resps: what a Relay re-sends when a node reconnects, well within the
// duplicate filter's window.
func faultRecent(resps []*observer.GetFlowsResponse) []*observer.GetFlowsResponse {
	end := resps[len(resps)-1].GetFlow().GetTime().AsTime()
	i := len(resps)
	for i > 0 && resps[i-1].GetFlow().GetTime().AsTime().After(end.Add(-2*time.Minute)) {
		i--
	}
	return resps[i:]
}

// TestFaultEgressdProcess runs the egressd binary as a subprocess and
// kills or stops it while flows stream.
func TestFaultEgressdProcess(t *testing.T) {
	t.Parallel()
	bin := faultBuild(t)
	const flush = 250 * time.Millisecond
	serve := func(t *testing.T, hubbleAddr string, dsn postgres.DSN, flush time.Duration, extra ...string) *faultProc {
		return faultStart(t, bin, append([]string{"serve",
			"--hubble-address", hubbleAddr, "--database-url", string(dsn),
			"--listen", "127.0.0.1:0", "--flush-interval", flush.String(),
			"--hubble-backoff-max", "1s", "--retention", "0", "--log-format", "json"}, extra...)...)
	}

	// README: "up to one flush interval of aggregates is lost from memory,
	// but the cursor only advances with a committed flush, so the restart
	// asks Hubble for those flows again".
	t.Run("SIGKILL mid-flush is recovered from Hubble's ring", func(t *testing.T) {
		t.Parallel()
		srv, addr := startHubble(t, hubbletest.Options{})
		dsn := pgtest.URL(t)
		db := openTestDB(t, dsn)

		// The same replica name before and after, as a restarted
		// container of one pod has ($POD_NAME).
		p := serve(t, addr, dsn, flush, "--replica-id", "egressd-pod-a")
		p.waitRequests(t, srv, 1)
		f := startFaultFeed(t, srv, 2*time.Millisecond)
		waitUntil(t, "several flushes are stored", func() bool { return faultFlowTotal(db) >= 200 })
		// Kill about half a flush interval after a flush was seen
		// committed, so that flows are held only in memory.
		n := f.Len()
		waitUntil(t, "more flows stream", func() bool { return f.Len() >= n+60 })
		killedAt := time.Now()
		require.Error(t, p.signal(t, syscall.SIGKILL))

		// What the dead process left: everything up to the cursor, and
		// nothing after it.
		cur, err := faultCursor(db, addr)
		require.NoError(t, err)
		stored := faultFlowTotal(db)
		times := f.Times()
		require.Equal(t, int64(faultCountUpTo(times, cur)), stored, "stored flows are exactly those up to the committed cursor")
		lostWindow := killedAt.Sub(cur)
		// One flush interval, plus the flush being written when the kill
		// came, the delivery of the flows and the scheduling slack of a
		// loaded test machine: this bounds the order of magnitude (the
		// default interval is 10 s), the exact counts above and below are
		// the precise checks.
		require.Less(t, lostWindow, flush+2*time.Second, "more than one flush interval was held only in memory")
		t.Logf("killed with %v of flows not yet committed (flush interval %v), %d flows stored of %d streamed",
			lostWindow, flush, stored, faultCountUpTo(times, killedAt))

		// Flows keep coming while egressd is down, and after it is back.
		n = f.Len()
		waitUntil(t, "flows stream while egressd is down", func() bool { return f.Len() >= n+100 })
		killed := faultLeaseOf(t, dsn, addr)
		restartedAt := time.Now()
		serve(t, addr, dsn, flush, "--replica-id", "egressd-pod-a").waitRequests(t, srv, 2)
		// Under the same name, the restarted process takes its lease back
		// at once (a new term: the killed one's token is fenced), without
		// waiting for it to expire.
		resumed := faultLeaseOf(t, dsn, addr)
		require.Equal(t, "egressd-pod-a", resumed.holder)
		require.Equal(t, killed.token+1, resumed.token)
		require.True(t, resumed.acquired.Before(killed.expires), "took the lease back at %v, before it expired at %v", resumed.acquired, killed.expires)
		t.Logf("the restarted egressd resumed the stream after %v", time.Since(restartedAt).Round(time.Millisecond))
		n = f.Len()
		waitUntil(t, "flows stream after the restart", func() bool { return f.Len() >= n+100 })
		f.Stop()
		reqs := srv.Requests()
		require.Equal(t, cur, reqs[1].GetSince().AsTime(), "the restart resumes at the committed cursor")

		times = f.Times()
		last := times[len(times)-1]
		waitUntil(t, "the cursor reaches the last flow", func() bool {
			c, err := faultCursor(db, addr)
			return err == nil && !c.Before(last)
		})
		require.Equal(t, int64(len(times)), faultFlowTotal(db), "every flow stored exactly once")
		require.Equal(t, f.Counts(), faultCountsOf(t, db))
	})

	// README: "They are recovered as long as Hubble's ring buffer still
	// holds them." When it does not, what is lost is exactly what the ring
	// dropped: nothing else, and nothing counted twice or made up.
	t.Run("SIGKILL loses what Hubble's ring no longer holds", func(t *testing.T) {
		t.Parallel()
		const capacity = 50
		srv, addr := startHubble(t, hubbletest.Options{Capacity: capacity})
		dsn := pgtest.URL(t)
		db := openTestDB(t, dsn)

		p := serve(t, addr, dsn, flush)
		p.waitRequests(t, srv, 1)
		f := startFaultFeed(t, srv, 2*time.Millisecond)
		waitUntil(t, "several flushes are stored", func() bool { return faultFlowTotal(db) >= 200 })
		require.Error(t, p.signal(t, syscall.SIGKILL))
		f.Stop()
		cur, err := faultCursor(db, addr)
		require.NoError(t, err)
		stored := faultFlowTotal(db)

		// While egressd is down, the ring turns over three times.
		f.add(3 * capacity)
		times := f.Times()
		ring := times[len(times)-capacity:]
		require.True(t, ring[0].After(cur), "the ring no longer holds the flows after the cursor")
		killed := faultLeaseOf(t, dsn, addr)
		serve(t, addr, dsn, flush).waitRequests(t, srv, 2)
		// A new replica name waits until the killed one's lease expired.
		resumed := faultLeaseOf(t, dsn, addr)
		require.NotEqual(t, killed.holder, resumed.holder)
		require.False(t, resumed.acquired.Before(killed.expires), "took the lease at %v, before it expired at %v", resumed.acquired, killed.expires)
		last := times[len(times)-1]
		waitUntil(t, "the cursor reaches the last flow", func() bool {
			c, err := faultCursor(db, addr)
			return err == nil && !c.Before(last)
		})
		want := stored + int64(len(ring))
		lost := int64(len(times)) - want
		require.Positive(t, lost)
		require.Equal(t, want, faultFlowTotal(db), "stored: what was committed before the kill plus what the ring still held")
		t.Logf("%d flows streamed, %d lost with the ring", len(times), lost)
	})

	// README: "the stream stops first, then the last flush is written ...
	// Nothing received is lost."
	t.Run("SIGTERM writes everything received", func(t *testing.T) {
		t.Parallel()
		srv, addr := startHubble(t, hubbletest.Options{})
		dsn := pgtest.URL(t)
		db := openTestDB(t, dsn)

		// No flush before the one at shutdown.
		p := serve(t, addr, dsn, time.Hour)
		httpAddr := p.httpAddr(t)
		p.waitRequests(t, srv, 1)
		f := newFaultFeed(srv)
		const n = 300
		f.add(n)
		waitUntil(t, "egressd received every flow", func() bool {
			return faultMetric(httpAddr, "egressd_collector_messages_received_total") == n
		})
		require.Zero(t, faultFlowTotal(db), "nothing flushed before the shutdown")
		require.NoError(t, p.signal(t, syscall.SIGTERM), "clean exit")
		require.Equal(t, int64(n), faultFlowTotal(db))
		require.Equal(t, f.Counts(), faultCountsOf(t, db))
		cur, err := faultCursor(db, addr)
		require.NoError(t, err)
		times := f.Times()
		require.Equal(t, times[len(times)-1], cur, fmt.Sprintf("cursor after %d flows", n))
	})
}
