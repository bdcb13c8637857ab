package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
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

// Run serves until ctx is cancelled. Shutdown order matters and is:
//  1. the Hubble stream stops, so nothing new enters the pipeline;
//  2. the aggregator writes its last flush (with its own timeout), so no
//     observation that was received is lost and the cursor covers it;
//  3. the HTTP server stops last, so /metrics and /readyz answer until the
//     last flush is written.
func (m *Main) Run(ctx context.Context) error {
	db := m.cfg.DB
	source := "hubble:" + m.cfg.Client.Address
	agg, err := collector.NewAggregator(m.cfg.Aggregate, db, m.log.With("component", "aggregator"), m.metrics)
	if err != nil {
		return err
	}
	if err := m.loadDetector(ctx); err != nil {
		return fmt.Errorf("load detector state: %w", err)
	}
	sinks := []collector.Sink{agg, m.detector}
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
	pipe, err := collector.NewPipeline(m.cfg.Pipeline, m.metrics, sinks...)
	if err != nil {
		return err
	}
	cur, err := db.Cursor(ctx, source)
	switch {
	case err == nil:
		pipe.SkipUntil(source, cur)
		m.log.Info("resuming", "source", source, "since", cur)
	case egressd.ErrorCode(err) != egressd.ENOTFOUND:
		return fmt.Errorf("read cursor: %w", err)
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
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}

	httpCtx, stopHTTP := context.WithCancel(context.WithoutCancel(ctx))
	aggCtx, stopAgg := context.WithCancel(context.WithoutCancel(ctx))
	detCtx, stopDet := context.WithCancel(context.WithoutCancel(ctx))
	sendCtx, stopSend := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHTTP()
	defer stopAgg()
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
	aggDone := make(chan error, 1)
	go func() { aggDone <- agg.Run(aggCtx) }()
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

	clientErr := m.client.Run(ctx, func() time.Time { return pipe.Resume(source) }, func(msg []byte) error {
		return pipe.Handle(source, msg)
	})
	// 1. The stream has stopped (ctx cancelled, or Hubble finished
	// without --follow). 2. Last flush, and the detector records what it
	// has queued. 3. The sender gets a last round for those anomalies.
	stopAgg()
	stopDet()
	aggErr, detErr := <-aggDone, <-detDone
	if m.sender != nil {
		m.sender.Wake()
	}
	stopSend()
	sendErr := <-sendDone
	// 4. HTTP.
	stopHTTP()
	httpErr := g.Wait()
	return errors.Join(clientErr, aggErr, detErr, sendErr, httpErr)
}

// retention drops hourly buckets older than the retention period, at start
// and then every hour, until ctx ends. A failure is logged and retried at the
// next round: retention never stops the service.
func (m *Main) retention(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		cutoff := time.Now().Add(-m.cfg.Retention)
		if n, err := m.cfg.DB.DropBucketsBefore(ctx, cutoff); err != nil && ctx.Err() == nil {
			m.log.Warn("retention_failed", "err", err)
		} else if n > 0 {
			m.log.Info("retention_dropped_days", "days", n, "before", cutoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *CLI) serve(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("egressd serve", flag.ContinueOnError)
	cm := c.commonFlags(fs)
	pf := addPipelineFlags(fs)
	co := collector.DefaultClientOptions()
	fs.StringVar(&co.Address, "hubble-address", c.Getenv("HUBBLE_ADDRESS"),
		"Hubble Relay host:port (hubble-relay.kube-system:4245) or agent socket (unix:///var/run/cilium/hubble.sock); default $HUBBLE_ADDRESS")
	fs.BoolVar(&co.TLS, "hubble-tls", false, "use TLS to Hubble (implied by the other --hubble-tls-* flags)")
	fs.StringVar(&co.TLSCAFile, "hubble-tls-ca", "", "CA certificate file that signed Hubble's certificate")
	fs.StringVar(&co.TLSCertFile, "hubble-tls-cert", "", "client certificate file for mTLS")
	fs.StringVar(&co.TLSKeyFile, "hubble-tls-key", "", "client key file for mTLS")
	fs.StringVar(&co.TLSServerName, "hubble-tls-server-name", "", "name expected in Hubble's certificate (e.g. ui.hubble-relay.cilium.io)")
	fs.DurationVar(&co.BackoffMax, "hubble-backoff-max", co.BackoffMax, "longest wait between reconnects")
	listen := fs.String("listen", ":9090", "HTTP address of the API (/api/v1), /metrics, /healthz and /readyz")
	retention := fs.Duration("retention", 30*24*time.Hour, "how long hourly buckets are kept (at least the baseline window); 0 keeps everything")
	df := addDetectFlags(fs)
	ao := alerts.DefaultOptions()
	amURLs := fs.String("alertmanager-url", c.Getenv("ALERTMANAGER_URL"), "comma-separated Alertmanager base URLs; every one gets every alert (default $ALERTMANAGER_URL)")
	fs.StringVar(&ao.ExternalURL, "external-url", "", "egressd's URL as operators reach it, for links in alerts")
	fs.StringVar(&ao.Severity, "severity", ao.Severity, "severity label of alerts")
	fs.DurationVar(&ao.ResendInterval, "alert-resend-interval", ao.ResendInterval, "how often firing alerts are sent again")
	alertTTL := fs.Duration("alert-ttl", 24*time.Hour, "a novel-destination alert nobody accepted resolves after this")
	po := detector.DefaultPrometheusOptions()
	fs.StringVar(&po.URL, "prometheus-url", c.Getenv("PROMETHEUS_URL"), "Prometheus with cAdvisor metrics, for the volume rule (default $PROMETHEUS_URL; without it: Hubble flow rate)")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usageError("serve: unexpected argument %q", rest[0])
	}
	if co.Address == "" {
		return usageError("serve: --hubble-address is required (e.g. hubble-relay.kube-system:4245)")
	}
	if *retention != 0 && *retention < 168*time.Hour {
		return usageError("serve: --retention %s is shorter than the default baseline window (168h): exports would lose destinations", *retention)
	}
	log, err := c.logger(cm)
	if err != nil {
		return err
	}
	opts, aggOpts, err := pf.options()
	if err != nil {
		return err
	}
	db, err := openDB(ctx, cm, true)
	if err != nil {
		return err
	}
	defer db.Close()
	detOpts, err := df.options(po.URL != "")
	if err != nil {
		return err
	}
	ao.Targets = splitList(*amURLs)
	if len(ao.Targets) > 0 {
		if err := ao.Validate(); err != nil {
			return usageError("%v", err)
		}
	}
	if po.URL != "" {
		po.ShortWindow, po.HistoryWindow = detOpts.Volume.ShortWindow, detOpts.Volume.HistoryWindow
		if err := po.Validate(); err != nil {
			return usageError("%v", err)
		}
	}
	token := httpapi.Token(c.Getenv("EGRESSD_API_TOKEN"))
	if token != "" {
		o := httpapi.DefaultOptions()
		o.Token = token
		if err := o.Validate(); err != nil {
			return usageError("EGRESSD_API_TOKEN: %v", err)
		}
	}
	m, err := NewMain(ServeConfig{
		APIToken: token,
		DB:       db, Client: co, Pipeline: opts, Aggregate: aggOpts, Listen: *listen, Retention: *retention,
		Detect: detOpts, Alerts: ao, BaselineDir: df.baselineDir, AlertTTL: *alertTTL, Prometheus: po,
	}, log)
	if err != nil {
		return err
	}
	return m.Run(ctx)
}
