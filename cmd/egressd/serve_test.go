package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/collector/flowgen"
	"github.com/egressd/egressd/collector/hubbletest"
	"github.com/egressd/egressd/detector"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgtest"
)

// startServe runs the real service in-process against addr until the
// returned stop function is called.
func startServe(t *testing.T, db *postgres.DB, addr string) (httpAddr string, stop func()) {
	t.Helper()
	co := collector.DefaultClientOptions()
	co.Address = addr
	co.BackoffMin, co.BackoffMax = 10*time.Millisecond, 50*time.Millisecond
	agg := collector.DefaultAggregatorOptions()
	agg.FlushInterval = 50 * time.Millisecond
	m, stop := runMain(t, ServeConfig{DB: db, Client: co, Pipeline: collector.DefaultOptions(), Aggregate: agg, Listen: "127.0.0.1:0", Detect: detector.DefaultOptions()})
	return m.Addr(context.Background()), stop
}

// startHubble starts the test Hubble server, stopped when tb ends.
func startHubble(tb testing.TB, opts hubbletest.Options) (*hubbletest.Server, string) {
	tb.Helper()
	srv := hubbletest.NewServer(opts)
	addr, err := srv.Start()
	require.NoError(tb, err)
	tb.Cleanup(srv.Stop)
	return srv, addr
}

// runMain runs the service built from cfg, its log discarded, until the
// returned stop is called or the test ends. stop may be called more than
// once; it checks that Run returned nil.
func runMain(t testing.TB, cfg ServeConfig) (m *Main, stop func()) {
	t.Helper()
	return runMainLog(t, cfg, slog.New(slog.DiscardHandler))
}

// runMainLog is runMain logging to log.
func runMainLog(t testing.TB, cfg ServeConfig, log *slog.Logger) (m *Main, stop func()) {
	t.Helper()
	m, err := NewMain(cfg, log)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			require.NoError(t, <-done)
		})
	}
	t.Cleanup(stop)
	return m, stop
}

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func httpStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// TestServeLearnsLiveAndResumesAfterRestart runs `serve` against the test
// Hubble server: flows streamed live land in PostgreSQL, /readyz follows the
// stream, a restart resumes from the stored cursor and counts nothing twice.
func TestServeLearnsLiveAndResumesAfterRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	day, err := flowgen.HomeLab(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), 24*time.Hour).Generate()
	require.NoError(t, err)
	half := len(day) / 2

	srv, addr := startHubble(t, hubbletest.Options{})
	db := pgtest.NewDB(t)

	httpAddr, stop := startServe(t, db, addr)
	require.Equal(t, http.StatusOK, httpStatus(t, "http://"+httpAddr+"/healthz"))
	require.NoError(t, srv.WaitStreams(ctx, 1))
	srv.Add(day[:half]...)
	waitUntil(t, "the first half is stored", func() bool { return storedUpTo(t, db, addr, lastStreamed(day[:half])) })
	require.Equal(t, http.StatusOK, httpStatus(t, "http://"+httpAddr+"/readyz"))
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(body), "egressd_collector_observations_total{kind=\"connect\"}")
	stop()

	// Restart: the second half arrives while egressd is down; the new
	// stream asks for flows since the cursor and gets them.
	srv.Add(day[half:]...)
	_, stop = startServe(t, db, addr)
	waitUntil(t, "the second half is stored", func() bool { return storedUpTo(t, db, addr, lastStreamed(day[half:])) })
	stop()
	reqs := srv.Requests()
	require.Len(t, reqs, 2)
	require.Nil(t, reqs[0].GetSince())
	require.NotNil(t, reqs[1].GetSince(), "the restart resumed from the stored cursor")

	// Counts equal a single replay of the same day.
	want := pgtest.NewDB(t)
	replayInto(t, want, day)
	require.Equal(t, rowsOf(t, want), rowsOf(t, db))
}

// lastStreamed returns the newest flow that passes egressd's default
// server-side filters (egress, or DNS): the cursor can only reach flows the
// stream delivers.
func lastStreamed(resps []*observer.GetFlowsResponse) *observer.GetFlowsResponse {
	for i := len(resps) - 1; i >= 0; i-- {
		f := resps[i].GetFlow()
		if f.GetTrafficDirection() == flowpb.TrafficDirection_EGRESS || f.GetL7().GetDns() != nil {
			return resps[i]
		}
	}
	return nil
}

// storedUpTo reports whether the cursor of the Hubble source reached r.
func storedUpTo(t *testing.T, db *postgres.DB, addr string, r *observer.GetFlowsResponse) bool {
	cur, err := db.Cursor(context.Background(), "hubble:"+addr)
	if egressd.ErrorCode(err) == egressd.ENOTFOUND {
		return false
	}
	require.NoError(t, err)
	return !cur.Before(r.GetFlow().GetTime().AsTime())
}

func replayInto(t *testing.T, db *postgres.DB, resps []*observer.GetFlowsResponse) {
	t.Helper()
	srv, addr := startHubble(t, hubbletest.Options{})
	srv.Add(resps...)
	co := collector.DefaultClientOptions()
	co.Address, co.Follow = addr, false
	agg := collector.DefaultAggregatorOptions()
	m, err := NewMain(ServeConfig{DB: db, Client: co, Pipeline: collector.DefaultOptions(), Aggregate: agg, Listen: "127.0.0.1:0", Detect: detector.DefaultOptions()},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	// Without follow, egressd reads what the server has buffered and stops.
	require.NoError(t, m.Run(context.Background()))
}

func rowsOf(t *testing.T, db *postgres.DB) []string {
	t.Helper()
	ctx := context.Background()
	apps, err := db.Apps(ctx)
	require.NoError(t, err)
	var out []string
	for _, a := range apps {
		ds, err := db.Destinations(ctx, a.App)
		require.NoError(t, err)
		for _, d := range ds {
			out = append(out, a.App.String()+" "+d.Destination.String()+" "+
				d.FirstSeen.Format(time.RFC3339Nano)+" "+d.LastSeen.Format(time.RFC3339Nano)+" "+
				itoa64(d.Flows)+"/"+itoa64(d.DroppedFlows)+" "+strings.Join(d.Verdicts.Names(), ","))
		}
	}
	return out
}
