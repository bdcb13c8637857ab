package service_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector/hubbletest"
	"github.com/egressd/egressd/detector"
	"github.com/egressd/egressd/postgres/pgtest"
	"github.com/egressd/egressd/service"
)

// TestServiceTermLoadsStoredState: a term primes the detector as of the
// source's stored cursor, and names a connection from a DNS answer the
// previous process stored, before it streams.
func TestServiceTermLoadsStoredState(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hub, addr := startHub(t)
	db := pgtest.NewDB(t)
	cursor := time.Now().Add(-time.Minute).Truncate(time.Millisecond).UTC()
	require.NoError(t, db.WriteRollup(ctx, &egressd.Rollup{
		DNSAnswers: []egressd.DNSAnswer{{Namespace: "media", Pod: "recyclarr-7d9f8b6c5d-x2k9p",
			Addr: netip.MustParseAddr("198.51.100.7"), Name: "cdn.example.net", Expires: cursor.Add(time.Hour)}},
		Cursors: []egressd.Cursor{{Source: "hubble:" + addr, Time: cursor}},
	}))

	store := &recordStore{db: db, raised: make(chan egressd.Anomaly, 10)}
	cfg := testConfig(db, addr, store)
	var mu sync.Mutex
	var primed []time.Time
	cfg.Prime = func(_ context.Context, _ *detector.Detector, at time.Time) error {
		mu.Lock()
		defer mu.Unlock()
		primed = append(primed, at)
		return nil
	}
	s, err := service.New(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	require.NoError(t, hub.WaitStreams(ctx, 1))

	hub.Add(hubbletest.Response(novelFlow("term-1", ""))) // no name of its own
	select {
	case a := <-store.raised:
		require.Equal(t, "cdn.example.net", a.Destination.Name, "not named from the stored DNS answer")
	case <-ctx.Done():
		t.Fatal("the flow was never judged")
	}
	stop()
	require.NoError(t, <-done)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, primed, 1)
	require.True(t, cursor.Equal(primed[0]), "primed as of %s, not the cursor %s", primed[0], cursor)
}

// TestServiceReadyWhileVolumeSourceDown: the volume rule's Prometheus not
// answering leaves /readyz at 200, and its body says so.
func TestServiceReadyWhileVolumeSourceDown(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hub, addr := startHub(t)
	db := pgtest.NewDB(t)
	store := &recordStore{db: db, raised: make(chan egressd.Anomaly, 10)}
	cfg := testConfig(db, addr, store)
	cfg.Prometheus = detector.DefaultPrometheusOptions()
	cfg.Prometheus.URL = "http://127.0.0.1:1" // nothing listens
	cfg.Prometheus.Timeout = time.Second
	s, err := service.New(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	require.NoError(t, hub.WaitStreams(ctx, 1))
	hub.Add(hubbletest.Response(novelFlow("ready-1", "api.github.com"))) // the stream is up
	base := "http://" + s.Addr(ctx)

	var body map[string]string
	eventually(t, "/readyz names the volume source", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = nil
		_ = json.Unmarshal(b, &body)
		return resp.StatusCode == http.StatusOK && body["detail"] != ""
	})
	require.Equal(t, "ready", body["status"])
	require.Contains(t, body["detail"], "volume source unreachable: ")
	stop()
	require.NoError(t, <-done)
}
