package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/alerts"
	"github.com/egressd/egressd/baseline"
	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/detector"
	"github.com/egressd/egressd/httpapi"
	"github.com/egressd/egressd/postgres"
)

// ServeConfig is everything `egressd serve` needs.
type ServeConfig struct {
	DB        *postgres.DB
	Client    collector.ClientOptions
	Pipeline  collector.Options
	Aggregate collector.AggregatorOptions
	// Listen is the HTTP address; "127.0.0.1:0" picks a free port.
	Listen string
	// Retention is how long hourly buckets are kept; whole days older than
	// it are dropped every hour. 0 keeps everything.
	Retention time.Duration
	// Detect configures the detector; Alerts the delivery to Alertmanager
	// (no Targets: anomalies are stored, not sent).
	Detect detector.Options
	Alerts alerts.Options
	// BaselineDir holds committed baseline files, reread every refresh.
	BaselineDir string
	// AlertTTL resolves a novel-destination alert nobody accepted.
	AlertTTL time.Duration
	// Prometheus, when URL is set, is the volume rule's rate source
	// (cAdvisor bytes); otherwise the flow rate from Hubble is used.
	Prometheus detector.PrometheusOptions
	// Refresh is how often accepted destinations, baseline files and alert
	// TTLs are checked.
	Refresh time.Duration
	// OnAnomaly, when set, is told of every anomaly stored for the first
	// time (the demo prints them).
	OnAnomaly func(egressd.Anomaly)
	// APIToken enables the API's mutations (accepting destinations).
	APIToken httpapi.Token
	// ReplicaID names this replica in the lease of its Hubble source
	// (default: the host name and a random suffix).
	ReplicaID string
	// LeaseTTL is how long the source's lease lasts unless renewed: a
	// standby replica takes over at most LeaseTTL + LeasePoll after the
	// active one stopped renewing (default 15 s).
	LeaseTTL time.Duration
	// LeaseRenew is how often the active replica renews its lease; less
	// than LeaseTTL (default LeaseTTL / 3).
	LeaseRenew time.Duration
	// LeasePoll is how often a standby tries to acquire the lease
	// (default 1 s).
	LeasePoll time.Duration
	// KeepLeaseOnStop, for tests only, leaves the lease held when Run
	// returns, as a crash would: a standby then takes over only once it
	// expires.
	KeepLeaseOnStop bool
}

// Main is the long-running egressd service: the Hubble client feeding the
// pipeline, the aggregator writing to PostgreSQL and the HTTP endpoints. It
// holds no signal handling, so tests run it in-process.
type Main struct {
	alertMetrics *alerts.Metrics
	refreshNow   chan struct{}
	detector     *detector.Detector
	sender       *alerts.Sender
	cfg          ServeConfig
	log          *slog.Logger
	reg          *prometheus.Registry
	metrics      *collector.Metrics
	addr         chan string
	client       *collector.Client
	listener     net.Listener
	// standbyOf is the holder of the source's lease while this replica
	// waits for it, nil otherwise.
	standbyOf atomic.Pointer[string]
	// active is set while this replica holds the lease.
	active atomic.Bool
}

// NewMain checks the configuration and registers the metrics.
func NewMain(cfg ServeConfig, log *slog.Logger) (*Main, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Main{cfg: cfg, log: log, reg: reg, metrics: collector.NewMetrics(reg), addr: make(chan string, 1), refreshNow: make(chan struct{}, 1)}
	client, err := collector.NewClient(cfg.Client, log.With("component", "hubble"), m.metrics)
	if err != nil {
		return nil, err
	}
	m.client = client
	m.alertMetrics = alerts.NewMetrics(reg)
	if len(cfg.Alerts.Targets) > 0 {
		m.sender, err = alerts.NewSender(cfg.DB, cfg.Alerts, log.With("component", "alerts"), m.alertMetrics)
		if err != nil {
			return nil, err
		}
	}
	store := &detectorStore{db: cfg.DB, targets: cfg.Alerts.Targets, now: time.Now, onNew: cfg.OnAnomaly}
	if m.sender != nil {
		store.wake = m.sender.Wake
	}
	m.detector, err = detector.New(cfg.Detect, store, log.With("component", "detector"), detector.NewMetrics(reg))
	if err != nil {
		return nil, err
	}
	if cfg.Refresh <= 0 {
		m.cfg.Refresh = 30 * time.Second
	}
	if m.cfg.ReplicaID == "" {
		m.cfg.ReplicaID = newReplicaID()
	}
	if m.cfg.LeaseTTL <= 0 {
		m.cfg.LeaseTTL = 15 * time.Second
	}
	if m.cfg.LeaseRenew <= 0 {
		m.cfg.LeaseRenew = m.cfg.LeaseTTL / 3
	}
	if m.cfg.LeasePoll <= 0 {
		m.cfg.LeasePoll = time.Second
	}
	if m.cfg.LeaseRenew >= m.cfg.LeaseTTL {
		return nil, fmt.Errorf("serve: ServeConfig.LeaseRenew (%s) must be shorter than LeaseTTL (%s)", m.cfg.LeaseRenew, m.cfg.LeaseTTL)
	}
	return m, nil
}

// loadDetector gives the detector what the database and the baseline
// directory know: apps' first sight, the live window, accepted destinations.
func (m *Main) loadDetector(ctx context.Context) error {
	if err := primeDetector(ctx, m.cfg.DB, m.detector, time.Now()); err != nil {
		return err
	}
	return m.refresh(ctx)
}

// refresh rereads accepted destinations and baseline files, and resolves
// novel-destination alerts older than the TTL.
func (m *Main) refresh(ctx context.Context) error {
	acc, err := m.cfg.DB.AcceptedAll(ctx)
	if err != nil {
		return err
	}
	m.detector.SetAccepted(acc)
	if m.cfg.BaselineDir != "" {
		bs, err := baseline.LoadDir(m.cfg.BaselineDir)
		if err != nil {
			// What loaded is used; the broken files are reported.
			m.log.Warn("baseline_dir_errors", "dir", m.cfg.BaselineDir, "err", err)
		}
		m.detector.SetBaselines(bs)
	}
	depth, err := m.cfg.DB.OutboxDepth(ctx)
	if err != nil {
		return err
	}
	for state, n := range depth {
		m.alertMetrics.OutboxPending.WithLabelValues(state).Set(float64(n))
	}
	if m.cfg.AlertTTL > 0 {
		now := time.Now()
		n, err := m.cfg.DB.ExpireNovel(ctx, now.Add(-m.cfg.AlertTTL), now)
		if err != nil {
			return err
		}
		if n > 0 {
			m.log.Info("novel_alerts_expired", "count", n)
			if m.sender != nil {
				m.sender.Wake()
			}
		}
	}
	return nil
}

func (m *Main) refreshLoop(ctx context.Context) {
	t := time.NewTicker(m.cfg.Refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.refreshNow:
		}
		if err := m.refresh(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("refresh_failed", "err", err)
		}
	}
}

// Addr returns the HTTP address once it listens, or "" if ctx ends first.
func (m *Main) Addr(ctx context.Context) string {
	select {
	case a := <-m.addr:
		m.addr <- a
		return a
	case <-ctx.Done():
		return ""
	}
}

// Run serves until ctx is cancelled. It streams the Hubble source only
// while it holds the source's lease (lease.go); until then, and whenever
// another replica takes the source over, it waits as a standby that still
// serves HTTP and sends alerts. Shutdown order matters and is:
//  1. the Hubble stream stops, so nothing new enters the pipeline;
//  2. the aggregator writes its last flush (with its own timeout, fenced by
//     the lease), so no observation that was received is lost and the
//     cursor covers it;
//  3. the lease is released, so a standby takes over at once, from that
//     cursor;
//  4. the detector records what it has queued, and the alert sender gets a
//     last round for those anomalies;
//  5. the HTTP server stops last, so /metrics and /readyz answer until the
//     last flush is written.
func (m *Main) Run(ctx context.Context) error {
	db := m.cfg.DB
	source := "hubble:" + m.cfg.Client.Address
	if err := m.loadDetector(ctx); err != nil {
		return fmt.Errorf("load detector state: %w", err)
	}
	// Each term of the lease adds its own aggregator in front of these.
	sinks := []collector.Sink{m.detector}
	var volumeSource detector.RateSource
	if m.cfg.Prometheus.URL != "" {
		pods, err := detector.NewPodAppMap(detector.DefaultPodAppOptions())
		if err != nil {
			return err
		}
		sinks = append(sinks, pods)
		volumeSource, err = detector.NewPrometheusSource(m.cfg.Prometheus, pods, m.log.With("component", "prometheus"))
		if err != nil {
			return err
		}
	}
	// Each term of the lease builds its pipeline and aggregator: their
	// options are checked here, before listening.
	if err := m.cfg.Pipeline.Validate(); err != nil {
		return err
	}
	if err := m.cfg.Aggregate.Validate(); err != nil {
		return err
	}

	lis, err := net.Listen("tcp", m.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on --listen %s: %w", m.cfg.Listen, err)
	}
	m.addr <- lis.Addr().String()
	apiOpts := httpapi.DefaultOptions()
	apiOpts.Gatherer = m.reg
	apiOpts.Token = m.cfg.APIToken
	apiOpts.LearningPeriod = m.cfg.Detect.LearningPeriod
	apiOpts.Ready = func(ctx context.Context) error {
		if err := db.Ping(ctx); err != nil {
			return errors.New("database unreachable")
		}
		if m.standbyOf.Load() != nil {
			// A standby is ready: otherwise a rolling update would wait
			// forever for a new pod while the old one holds the lease.
			return nil
		}
		if !m.client.Up() {
			return errors.New("hubble stream not established")
		}
		return nil
	}
	handler, err := httpapi.New(apiOpts, httpapi.Backends{
		Apps: db, Destinations: db, Anomalies: db, Accepted: db,
		Flags: m.detector,
		AcceptedChanged: func() {
			// The resolve is due now, and the detector should know at once.
			if m.sender != nil {
				m.sender.Wake()
			}
			select {
			case m.refreshNow <- struct{}{}:
			default:
			}
		},
	}, m.log.With("component", "httpapi"), httpapi.NewMetrics(m.reg))
	if err != nil {
		lis.Close()
		return err
	}
	srv := &http.Server{Handler: m.collectorHeader(handler), ReadHeaderTimeout: 10 * time.Second}

	httpCtx, stopHTTP := context.WithCancel(context.WithoutCancel(ctx))
	detCtx, stopDet := context.WithCancel(context.WithoutCancel(ctx))
	sendCtx, stopSend := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHTTP()
	defer stopDet()
	defer stopSend()

	var g errgroup.Group
	g.Go(func() error {
		m.log.Info("http_listening", "addr", lis.Addr().String())
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-httpCtx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	detDone := make(chan error, 1)
	go func() { detDone <- m.detector.Run(detCtx) }()
	sendDone := make(chan error, 1)
	go func() {
		if m.sender == nil {
			sendDone <- nil
			return
		}
		sendDone <- m.sender.Run(sendCtx)
	}()
	g.Go(func() error { m.refreshLoop(httpCtx); return nil })
	if volumeSource != nil {
		g.Go(func() error { return m.detector.RunVolume(httpCtx, volumeSource, time.Minute, time.Now) })
	}
	if m.cfg.Retention > 0 {
		g.Go(func() error { m.retention(httpCtx); return nil })
	}

	// 1.-3. collect returns once the stream has stopped (ctx cancelled,
	// or Hubble finished without --follow), the last flush is written and
	// the lease released.
	collectErr := m.collect(ctx, source, sinks)
	// 4. The detector records what it has queued; the sender gets a last
	// round for those anomalies.
	stopDet()
	detErr := <-detDone
	if m.sender != nil {
		m.sender.Wake()
	}
	stopSend()
	sendErr := <-sendDone
	// 5. HTTP.
	stopHTTP()
	httpErr := g.Wait()
	return errors.Join(collectErr, detErr, sendErr, httpErr)
}

// retention drops hourly buckets older than the retention period before the
// newest stored flow (postgres.DB.RetentionCutoff), at start
// and then every hour, until ctx ends. A failure is logged and retried at the
// next round: retention never stops the service.
func (m *Main) retention(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		cutoff, err := m.cfg.DB.RetentionCutoff(ctx, time.Now(), m.cfg.Retention)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				m.log.Warn("retention_failed", "err", err)
			}
		default:
			if n, err := m.cfg.DB.DropBucketsBefore(ctx, cutoff); err != nil && ctx.Err() == nil {
				m.log.Warn("retention_failed", "err", err)
			} else if n > 0 {
				m.log.Info("retention_dropped_days", "days", n, "before", cutoff)
			}
			m.cfg.DB.Prune(ctx, cutoff, m.log) // old outbox rows, resolved anomalies, destinations, DNS names, empty apps
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
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
