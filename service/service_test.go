package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/alerts"
	"github.com/egressd/egressd/alerts/amtest"
	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/collector/hubbletest"
	"github.com/egressd/egressd/detector"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgtest"
	"github.com/egressd/egressd/service"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// syncBuffer collects the service's JSON log.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// stopped returns the components in the order they logged
// component_stopped, and the cause of the stop.
func (b *syncBuffer) stopped(t *testing.T) (order []string, cause string) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, line := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		var rec struct {
			Msg       string `json:"msg"`
			Component string `json:"component"`
			Cause     string `json:"cause"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
		switch rec.Msg {
		case "component_stopped":
			order = append(order, rec.Component)
		case "service_stopping":
			cause = rec.Cause
		}
	}
	return order, cause
}

// recordStore records anomalies in the database like serve's store, and
// says when it did; it never wakes the alert sender, so that only the
// sender's polls, or its last round, deliver.
type recordStore struct {
	db      *postgres.DB
	targets []string
	raised  chan egressd.Anomaly
}

func (s *recordStore) Raise(ctx context.Context, a egressd.Anomaly) (bool, error) {
	inserted, err := s.db.RecordAnomaly(ctx, a, s.targets, time.Now())
	if inserted {
		s.raised <- a
	}
	return inserted, err
}

func (s *recordStore) Resolve(ctx context.Context, fingerprint string, at time.Time) error {
	_, err := s.db.ResolveAnomaly(ctx, fingerprint, at)
	return err
}

// startHub starts a Hubble server, stopped when the test ends, and returns
// its address.
func startHub(t *testing.T) (*hubbletest.Server, string) {
	t.Helper()
	hub := hubbletest.NewServer(hubbletest.Options{})
	addr, err := hub.Start()
	require.NoError(t, err)
	t.Cleanup(hub.Stop)
	return hub, addr
}

// testConfig streams the Hubble server at addr into db, every new
// destination an anomaly.
func testConfig(db *postgres.DB, addr string, store *recordStore) service.Config {
	co := collector.DefaultClientOptions()
	co.Address = addr
	co.BackoffMin, co.BackoffMax = 10*time.Millisecond, 50*time.Millisecond
	agg := collector.DefaultAggregatorOptions()
	agg.FlushInterval = 50 * time.Millisecond
	det := detector.DefaultOptions()
	det.LearningPeriod = 0
	return service.Config{
		DB: db, Client: co, Pipeline: collector.DefaultOptions(), Aggregate: agg, Listen: "127.0.0.1:0",
		Detect: det, Refresh: time.Hour, LeaseTTL: time.Minute, ReplicaID: "replica-a",
		NewStore: func(func()) detector.Store { return store },
	}
}

func novelFlow(uuid, name string) *flowpb.Flow {
	return hubbletest.NewFlow(hubbletest.FlowSpec{
		Time: time.Now(), Node: "test/node-1", UUID: uuid,
		Src: hubbletest.Endpoint{IP: "10.42.1.17", Namespace: "media", Pod: "recyclarr-7d9f8b6c5d-x2k9p",
			Identity: 51234, Workload: "recyclarr", Labels: []string{"k8s:io.kubernetes.pod.namespace=media"}},
		Dst: hubbletest.WorldEndpoint("198.51.100.7", 443, name),
	})
}

// TestServiceStopsInOrderWhenHTTPDies: the HTTP listener failing stops
// every other component, in the written order, and the lease is released
// so that a standby takes over at once.
func TestServiceStopsInOrderWhenHTTPDies(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hub, addr := startHub(t)
	db := pgtest.NewDB(t)
	store := &recordStore{db: db, raised: make(chan egressd.Anomaly, 10)}
	cfg := testConfig(db, addr, store)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cfg.Listener = lis
	logs := &syncBuffer{}
	s, err := service.New(cfg, slog.New(slog.NewJSONHandler(logs, nil)))
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	require.NoError(t, hub.WaitStreams(ctx, 1))
	require.True(t, s.Active())

	// A flow in flight when HTTP dies is still counted: the stream
	// stops, then the last flush.
	hub.Add(hubbletest.Response(novelFlow("http-dies-1", "api.github.com")))
	select {
	case <-store.raised:
	case <-ctx.Done():
		t.Fatal("the flow was never judged")
	}
	require.NoError(t, lis.Close())
	select {
	case err = <-done:
	case <-ctx.Done():
		t.Fatal("Run did not return after the HTTP listener died")
	}
	require.ErrorContains(t, err, "http: serve 127.0.0.1:")
	order, cause := logs.stopped(t)
	require.Equal(t, "http", cause)
	require.Equal(t, []string{"http", "collector", "refresh", "detector", "lease"}, order)
	require.False(t, s.Active())

	total, err := db.FlowTotal(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(1), total, "the last flush was not written")
	// Released: another replica takes the source at once.
	_, err = db.AcquireLease(ctx, "hubble:"+addr, "replica-b", time.Minute)
	require.NoError(t, err)
}

// TestServiceLastRoundDeliversAnomalyRaisedAtStop: an anomaly recorded
// just before the service stops, which no poll would claim in time, is
// posted by the alert sender's last round to the real Alertmanager before
// Run returns; the lease is released only after that.
func TestServiceLastRoundDeliversAnomalyRaisedAtStop(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rcv := amtest.NewReceiver(t)
	am := amtest.Start(t, amtest.Options{WebhookURL: rcv.URL()})
	hub, addr := startHub(t)
	db := pgtest.NewDB(t)
	store := &recordStore{db: db, targets: []string{am.URL()}, raised: make(chan egressd.Anomaly, 10)}
	cfg := testConfig(db, addr, store)
	cfg.Alerts = alerts.DefaultOptions()
	cfg.Alerts.Targets = []string{am.URL()}
	cfg.Alerts.PollInterval = time.Hour // only the last round claims
	logs := &syncBuffer{}
	s, err := service.New(cfg, slog.New(slog.NewJSONHandler(logs, nil)))
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	require.NoError(t, hub.WaitStreams(ctx, 1))

	hub.Add(hubbletest.Response(novelFlow("last-round-1", "exfil.example.net")))
	select {
	case <-store.raised:
	case <-ctx.Done():
		t.Fatal("the novel flow was never recorded")
	}
	stop()
	require.NoError(t, <-done)

	got, err := am.Alerts(ctx, `destination="exfil.example.net"`)
	require.NoError(t, err)
	require.Len(t, got, 1, "Alertmanager does not list the anomaly raised at stop")
	order, _ := logs.stopped(t)
	require.Equal(t, []string{"collector", "refresh", "detector", "alerts", "lease", "http"}, order)
}

// TestServiceStopsWhenTheStreamEnds: Hubble ending the stream (no
// --follow) stops the service like a signal, in the same order, after the
// last flush; Run returns nil.
func TestServiceStopsWhenTheStreamEnds(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hub, addr := startHub(t)
	hub.Add(hubbletest.Response(novelFlow("stream-ends-1", "api.github.com")), hubbletest.Response(novelFlow("stream-ends-2", "ghcr.io")))
	db := pgtest.NewDB(t)
	store := &recordStore{db: db, raised: make(chan egressd.Anomaly, 10)}
	cfg := testConfig(db, addr, store)
	cfg.Client.Follow = false
	logs := &syncBuffer{}
	s, err := service.New(cfg, slog.New(slog.NewJSONHandler(logs, nil)))
	require.NoError(t, err)
	require.NoError(t, s.Run(ctx))

	order, cause := logs.stopped(t)
	require.Equal(t, "collector", cause)
	require.Equal(t, []string{"collector", "refresh", "detector", "lease", "http"}, order)
	total, err := db.FlowTotal(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(2), total)
	require.Len(t, store.raised, 2, "the anomalies of the last flows were not recorded")
}
