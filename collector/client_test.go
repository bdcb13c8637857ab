package collector_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/collector/hubbletest"
)

// chanSink collects observations from the client's goroutine and lets the
// test wait for a count without sleeping.
type chanSink struct {
	mu   sync.Mutex
	obs  []egressd.Observation
	last time.Time
	cond chan struct{}
}

func newChanSink() *chanSink { return &chanSink{cond: make(chan struct{}, 1)} }

func (s *chanSink) Observe(o *egressd.Observation) {
	s.mu.Lock()
	s.obs = append(s.obs, *o)
	s.mu.Unlock()
	select {
	case s.cond <- struct{}{}:
	default:
	}
}

func (s *chanSink) Advance(_ string, t time.Time) {
	s.mu.Lock()
	s.last = t
	s.mu.Unlock()
}

func (s *chanSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.obs)
}

// waitFor waits until the sink holds n observations.
func (s *chanSink) waitFor(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for s.count() < n {
		select {
		case <-s.cond:
		case <-deadline:
			t.Fatalf("timed out waiting for %d observations, have %d", n, s.count())
		}
	}
}

func startHubble(t *testing.T) (*hubbletest.Server, string) {
	t.Helper()
	srv := hubbletest.NewServer(hubbletest.Options{})
	addr, err := srv.Start()
	require.NoError(t, err)
	t.Cleanup(srv.Stop)
	return srv, addr
}

func runClient(t *testing.T, addr string, p *collector.Pipeline, m *collector.Metrics, follow bool) (stop func()) {
	t.Helper()
	opts := collector.DefaultClientOptions()
	opts.Address = addr
	opts.Follow = follow
	opts.BackoffMin, opts.BackoffMax = 5*time.Millisecond, 20*time.Millisecond
	c, err := collector.NewClient(opts, slog.New(slog.NewTextHandler(testWriter{t}, nil)), m)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- c.Run(ctx, func() time.Time { return p.Resume("hubble") }, func(msg []byte) error { return p.Handle("hubble", msg) })
	}()
	if !follow {
		// Without follow the client returns once Hubble has sent all.
		require.NoError(t, <-done)
		cancel()
		return func() {}
	}
	return func() {
		cancel()
		require.NoError(t, <-done)
	}
}

// testWriter sends log lines to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func flowsAt(n int, start time.Time) []*flowpb.Flow {
	var fs []*flowpb.Flow
	for i := 0; i < n; i++ {
		fs = append(fs, podFlow(start.Add(time.Duration(i)*time.Second), "140.82.112.6", 443))
	}
	return fs
}

func TestClientStreamsFollowsAndCountsLostEvents(t *testing.T) {
	t.Parallel()
	srv, addr := startHubble(t)
	srv.Add(hubbletest.Responses(flowsAt(3, t0.Add(-time.Hour))...)...)
	sink := newChanSink()
	m := collector.NewMetrics(prometheus.NewRegistry())
	p, err := collector.NewPipeline(collector.DefaultOptions(), m, sink)
	require.NoError(t, err)
	stop := runClient(t, addr, p, m, true)
	// Without a cursor, follow starts from now: the buffered flows are
	// not replayed, only what comes next.
	require.NoError(t, srv.WaitStreams(context.Background(), 1))
	srv.Add(hubbletest.Responses(flowsAt(3, t0)...)...)
	sink.waitFor(t, 3)
	// Follow: flows added later arrive on the open stream, and so do
	// Hubble's own loss reports, whatever the filters.
	srv.Add(hubbletest.LostEventsResponse(flowpb.LostEventSource_PERF_EVENT_RING_BUFFER, 11, "k8s-node-1", t0.Add(time.Hour)))
	srv.Add(hubbletest.Responses(flowsAt(2, t0.Add(time.Hour))...)...)
	sink.waitFor(t, 5)
	stop()
	require.Equal(t, 11.0, testutil.ToFloat64(m.LostEvents.WithLabelValues("PERF_EVENT_RING_BUFFER")))
	reqs := srv.Requests()
	require.Len(t, reqs, 1)
	require.True(t, reqs[0].GetFollow())
	require.Nil(t, reqs[0].GetSince(), "a first start without a cursor starts from now")
	require.NotEmpty(t, reqs[0].GetWhitelist())
}

func TestClientReconnectsAndResumesWithoutDoubleCounting(t *testing.T) {
	t.Parallel()
	srv, addr := startHubble(t)
	sink := newChanSink()
	m := collector.NewMetrics(prometheus.NewRegistry())
	p, err := collector.NewPipeline(collector.DefaultOptions(), m, sink)
	require.NoError(t, err)
	stop := runClient(t, addr, p, m, true)
	require.NoError(t, srv.WaitStreams(context.Background(), 1))
	srv.CutStreamsAfter(4) // the stream breaks after 4 flows
	srv.Add(hubbletest.Responses(flowsAt(10, t0)...)...)
	sink.waitFor(t, 10)
	// A Relay replay: the same flows again, plus new ones.
	srv.Add(hubbletest.Responses(flowsAt(10, t0)...)...)
	srv.Add(hubbletest.Responses(flowsAt(2, t0.Add(time.Hour))...)...)
	sink.waitFor(t, 12)
	stop()
	require.Equal(t, 12, sink.count(), "every flow counted exactly once")
	reqs := srv.Requests()
	require.GreaterOrEqual(t, len(reqs), 2)
	// The reconnect asked for flows since the last one handled (inclusive):
	// the 4th flow, which the pipeline then dropped as a duplicate.
	require.Equal(t, t0.Add(3*time.Second), reqs[1].GetSince().AsTime())
	require.GreaterOrEqual(t, testutil.ToFloat64(m.Skipped.WithLabelValues("duplicate")), 1.0)
	require.GreaterOrEqual(t, testutil.ToFloat64(m.Reconnects), 1.0)
}

func TestClientResumesFromStoredCursor(t *testing.T) {
	t.Parallel()
	srv, addr := startHubble(t)
	srv.Add(hubbletest.Responses(flowsAt(6, t0)...)...)
	sink := newChanSink()
	m := collector.NewMetrics(prometheus.NewRegistry())
	p, err := collector.NewPipeline(collector.DefaultOptions(), m, sink)
	require.NoError(t, err)
	p.SkipUntil("hubble", t0.Add(2*time.Second)) // three flows were stored before a restart
	stop := runClient(t, addr, p, m, false)
	stop()
	require.Equal(t, 3, sink.count())
	require.Equal(t, t0.Add(2*time.Second), srv.Requests()[0].GetSince().AsTime())
	require.Equal(t, 1.0, testutil.ToFloat64(m.Skipped.WithLabelValues("already_stored")), "since is inclusive: the stored flow came again")
}
