package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/alerts"
	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/detector"
	"github.com/egressd/egressd/httpapi"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/triage"
)

// Config is everything the service needs.
type Config struct {
	DB        *postgres.DB
	Client    collector.ClientOptions
	Pipeline  collector.Options
	Aggregate collector.AggregatorOptions
	// Listen is the HTTP address; "127.0.0.1:0" picks a free port.
	Listen string
	// Listener, when set, is used instead of listening on Listen (tests
	// close it to kill the HTTP server).
	Listener net.Listener
	// Retention is how long hourly buckets are kept, measured back from
	// the newest stored flow; whole days older than that are dropped every
	// hour. 0 keeps everything.
	Retention time.Duration
	// Detect configures the detector; Alerts the delivery to Alertmanager
	// (no Targets: anomalies are stored, not sent).
	Detect detector.Options
	Alerts alerts.Options
	// NewStore returns where the detector records anomalies; wake, nil
	// without Alertmanager targets, makes the alert sender look at the
	// outbox at once. Required.
	NewStore func(wake func()) detector.Store
	// Prime, when set, gives the detector what storage knows as of at,
	// where the source's stream resumes (its cursor; the wall clock when
	// the source has none): learning state, the live window, windows and
	// volume history that span a restart, anomalies never stored. It runs
	// at the start of each term of the source's lease, after the first
	// refresh (accepted destinations and baseline files, which priming
	// judges against) and before anything is streamed, so that a standby
	// taking over learns what the other replica stored meanwhile.
	Prime func(ctx context.Context, det *detector.Detector, at time.Time) error
	// BaselineDir holds committed baseline files, reread every refresh.
	BaselineDir string
	// AlertTTL resolves a novel-destination alert nobody accepted.
	AlertTTL time.Duration
	// Prometheus, when URL is set, is the volume rule's rate source
	// (cAdvisor bytes); otherwise the flow rate from Hubble is used.
	Prometheus detector.PrometheusOptions
	// Refresh is how often accepted destinations, baseline files and alert
	// TTLs are checked (default 30 s).
	Refresh time.Duration
	// OnAnomaly, when set, is told of every anomaly stored for the first
	// time (the demo prints them). NewStore is responsible for it.
	OnAnomaly func(egressd.Anomaly)
	// APIToken enables the API's mutations (accepting destinations).
	APIToken httpapi.Token
	// Source names the Hubble source in its lease and cursor (default
	// "hubble:" and the Hubble address). In per-node mode every node's
	// agent socket has the same address, so each needs its own name.
	Source string
	// PerNode says that this is one of several collectors, one per node,
	// each reading its node's agent and writing the same database: the
	// detector judges novelty for the whole cluster (detector
	// Options.Shared; NewStore must judge in the store too), learns the
	// apps' first sight from the database at every refresh, and the
	// flow-rate volume rule, which would see only this node's share of
	// each app, is off: the Prometheus volume rule (cAdvisor rates cover
	// every node) runs on one collector at a time (clusterVolume).
	PerNode bool
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

// Service is the long-running egressd service: the Hubble client feeding
// the pipeline, the aggregator writing to PostgreSQL, the detector, the
// alert sender and the HTTP endpoints. It holds no signal handling, so
// tests run it in-process.
type Service struct {
	cfg          Config
	log          *slog.Logger
	reg          *prometheus.Registry
	client       *collector.Client
	detector     *detector.Detector
	sender       *alerts.Sender
	collector    *Collector
	metrics      *collector.Metrics
	refresher    *Refresher
	volumeSource detector.RateSource
	addr         chan string
	// pods is the Prometheus source's pod -> app map, nil without
	// Prometheus; each term loads the stored pods into it.
	pods *detector.PodAppMap
}

// New checks the configuration, builds the components and registers the
// metrics. Nothing runs until Run.
func New(cfg Config, log *slog.Logger) (*Service, error) {
	if cfg.NewStore == nil {
		return nil, errors.New("service: Config.NewStore is nil")
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = 30 * time.Second
	}
	if cfg.Source == "" {
		cfg.Source = "hubble:" + cfg.Client.Address
	}
	if cfg.PerNode {
		cfg.Detect.Shared = true
		if cfg.Prometheus.URL == "" && cfg.Detect.Volume.Factor > 0 {
			log.Warn("per_node_volume_rule_off", "reason", "each collector sees only its node's flows of an app; set --prometheus-url for the volume rule")
			cfg.Detect.Volume.Factor = 0
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s := &Service{cfg: cfg, log: log, reg: reg, addr: make(chan string, 1)}
	metrics := collector.NewMetrics(reg)
	s.metrics = metrics
	client, err := collector.NewClient(cfg.Client, log.With("component", "hubble"), metrics)
	if err != nil {
		return nil, err
	}
	s.client = client
	alertMetrics := alerts.NewMetrics(reg)
	var wake func()
	if len(cfg.Alerts.Targets) > 0 {
		s.sender, err = alerts.NewSender(cfg.DB, cfg.Alerts, log.With("component", "alerts"), alertMetrics)
		if err != nil {
			return nil, err
		}
		wake = s.sender.Wake
	}
	s.detector, err = detector.New(cfg.Detect, cfg.NewStore(wake), log.With("component", "detector"), detector.NewMetrics(reg))
	if err != nil {
		return nil, err
	}
	// Each anomaly's prevalence comes from the stored destinations.
	s.detector.UseEvidence(cfg.DB)
	// Each term of the lease adds its own aggregator in front of these.
	sinks := []collector.Sink{s.detector}
	if cfg.Prometheus.URL != "" {
		pods, err := detector.NewPodAppMap(detector.DefaultPodAppOptions())
		if err != nil {
			return nil, err
		}
		detector.RegisterPodAppMetrics(reg, pods)
		sinks = append(sinks, pods)
		s.pods = pods
		s.volumeSource, err = detector.NewPrometheusSource(cfg.Prometheus, pods, log.With("component", "prometheus"))
		if err != nil {
			return nil, err
		}
	}
	s.collector, err = NewCollector(CollectorOptions{
		Source: cfg.Source, ReplicaID: cfg.ReplicaID,
		LeaseTTL: cfg.LeaseTTL, LeaseRenew: cfg.LeaseRenew, LeasePoll: cfg.LeasePoll, KeepLeaseOnStop: cfg.KeepLeaseOnStop,
		Pipeline: cfg.Pipeline, Aggregate: cfg.Aggregate, OnTerm: s.startTerm, OnFlusher: s.detector.SetFlush,
	}, cfg.DB, client, sinks, metrics, log)
	if err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	s.refresher = NewRefresher()
	s.refresher.DB, s.refresher.Detector = cfg.DB, s.detector
	s.refresher.BaselineDir, s.refresher.AlertTTL, s.refresher.Interval = cfg.BaselineDir, cfg.AlertTTL, cfg.Refresh
	s.refresher.OutboxPending, s.refresher.Log, s.refresher.Wake = alertMetrics.OutboxPending, log, wake
	if cfg.PerNode {
		s.refresher.Sync = s.syncApps
	}
	return s, nil
}

// Addr returns the HTTP address once it listens, or "" if ctx ends first.
func (s *Service) Addr(ctx context.Context) string {
	select {
	case a := <-s.addr:
		s.addr <- a
		return a
	case <-ctx.Done():
		return ""
	}
}

// Active reports whether this replica collects its Hubble source now.
func (s *Service) Active() bool { return s.collector.Active() }

// StandbyOf returns the replica that collects the source while this one
// waits as a standby; ok is false when this one is not waiting.
func (s *Service) StandbyOf() (holder string, ok bool) { return s.collector.StandbyOf() }

// CollectorMetrics returns the collector's metrics, also served on
// /metrics.
func (s *Service) CollectorMetrics() *collector.Metrics { return s.metrics }

// Pending returns how many anomalies wait to be recorded.
func (s *Service) Pending() int { return s.detector.Pending() }

// Run reads acceptances and baseline files, then runs the components until
// ctx is cancelled or one of them returns, and stops them in the order the
// package doc gives. It streams the Hubble source only while it holds the
// source's lease, priming the detector at the start of each term
// (startTerm); until then, and whenever another replica takes the source
// over, it waits as a standby that still serves HTTP and sends alerts.
func (s *Service) Run(ctx context.Context) error {
	db := s.cfg.DB
	// Before any term: priming judges the recent destinations against
	// acceptances and baselines.
	if err := s.refresher.Refresh(ctx); err != nil {
		return fmt.Errorf("load detector state: %w", err)
	}

	lis := s.cfg.Listener
	if lis == nil {
		var err error
		lis, err = net.Listen("tcp", s.cfg.Listen)
		if err != nil {
			return fmt.Errorf("listen on --listen %s: %w", s.cfg.Listen, err)
		}
	}
	apiOpts := httpapi.DefaultOptions()
	apiOpts.Gatherer = s.reg
	apiOpts.Token = s.cfg.APIToken
	apiOpts.LearningPeriod = s.cfg.Detect.LearningPeriod
	apiOpts.Ready = func(ctx context.Context) error {
		if err := db.Ping(ctx); err != nil {
			return errors.New("database unreachable")
		}
		if _, standby := s.collector.StandbyOf(); standby {
			// A standby is ready: otherwise a rolling update would wait
			// forever for a new pod while the old one holds the lease.
			return nil
		}
		if !s.client.Up() {
			return errors.New("hubble stream not established")
		}
		// Up, but most of what it sends cannot be decoded.
		return s.client.Health()
	}
	apiOpts.ReadyDetail = func() string {
		// Collection and novelty do not need Prometheus: still ready.
		if err := s.detector.VolumeSourceErr(); err != nil {
			return "volume source unreachable: " + err.Error()
		}
		return ""
	}
	// The API reads on a pool of its own: it cannot starve flushes and
	// lease renewals.
	apiDB := db.API()
	changed := func() {
		// The resolve is due now, and the detector should know at once.
		if s.sender != nil {
			s.sender.Wake()
		}
		s.refresher.Trigger()
	}
	pageOpts := triage.DefaultOptions()
	pageOpts.Token, pageOpts.ExternalURL = string(s.cfg.APIToken), s.cfg.Alerts.ExternalURL
	pages, err := triage.New(pageOpts, triage.Backends{Anomalies: apiDB, Traffic: apiDB, Actions: apiDB, Changed: changed},
		s.log.With("component", "triage"))
	if err != nil {
		lis.Close()
		return err
	}
	handler, err := httpapi.New(apiOpts, httpapi.Backends{
		Apps: apiDB, Destinations: apiDB, Anomalies: apiDB, Accepted: apiDB,
		Flags: s.detector, AcceptedChanged: changed, Pages: pages,
	}, s.log.With("component", "httpapi"), httpapi.NewMetrics(s.reg))
	if err != nil {
		lis.Close()
		return err
	}
	srv, err := httpapi.NewServer(apiOpts, s.collectorHeader(handler))
	if err != nil {
		lis.Close()
		return err
	}
	s.addr <- lis.Addr().String()
	s.log.Info("http_listening", "addr", lis.Addr().String())

	// The stop order, one component after the other (package doc): what
	// a component hands on while stopping must reach the next one before
	// that one stops.
	g := NewGroup(s.log)
	g.Add("collector", s.collector.Run)
	if s.volumeSource != nil {
		volume := func(ctx context.Context) error {
			return s.detector.RunVolume(ctx, s.volumeSource, time.Minute, time.Now)
		}
		if s.cfg.PerNode {
			volume = s.clusterVolume(volume)
		}
		g.Add("volume", volume)
	}
	g.Add("refresh", s.refresher.Run)
	if s.cfg.Retention > 0 {
		r := &Retention{DB: db, Keep: s.cfg.Retention, Log: s.log}
		g.Add("retention", r.Run)
	}
	g.Add("detector", s.detector.Run)
	if s.sender != nil {
		g.Add("alerts", s.sender.Run)
	}
	g.Add("lease", s.collector.ReleaseOnStop)
	g.Add("http", func(ctx context.Context) error { return serveHTTP(ctx, srv, lis) })
	return g.Run(ctx)
}

// startTerm loads what storage knows as of resume, where the term's stream
// resumes, before anything is streamed: the detector's state (Prime), the
// DNS answers pods received, still valid then, which name the connections
// that follow them, the stored apps, which --max-apps keeps whatever their
// number, and, with Prometheus, the pods each app's flows came
// from (not only those this process sees again), for the volume rule.
func (s *Service) startTerm(ctx context.Context, resume time.Time, pipe *collector.Pipeline) error {
	if s.cfg.Prime != nil {
		if err := s.cfg.Prime(ctx, s.detector, resume); err != nil {
			return fmt.Errorf("prime detector: %w", err)
		}
	}
	answers, err := s.cfg.DB.DNSAnswers(ctx, resume)
	if err != nil {
		return fmt.Errorf("read dns answers: %w", err)
	}
	pipe.LoadDNSAnswers(answers)
	if err := s.cfg.DB.EachApp(ctx, pipe.KeepApp); err != nil {
		return fmt.Errorf("read stored apps: %w", err)
	}
	if s.pods != nil {
		pods, err := s.cfg.DB.AppPods(ctx, resume.Add(-detector.DefaultPodAppOptions().TTL))
		if err != nil {
			return fmt.Errorf("read app pods: %w", err)
		}
		s.pods.Load(pods)
	}
	return nil
}

// syncApps gives the detector the apps' first sight as every collector
// stored it, in per-node mode: an app this collector first sees late is
// then judged by the cluster's learning period without asking the store.
func (s *Service) syncApps(ctx context.Context) error {
	apps, err := s.cfg.DB.Apps(ctx)
	if err != nil {
		return fmt.Errorf("sync apps: %w", err)
	}
	first := make(map[egressd.App]time.Time, len(apps))
	for _, a := range apps {
		first[a.App] = a.FirstSeen
	}
	s.detector.LoadApps(first)
	return nil
}

// volumeLease names the lease of the one collector that runs the
// Prometheus volume rule in per-node mode.
const volumeLease = "singleton:volume"

// clusterVolume runs the Prometheus volume rule, in per-node mode, on one
// collector at a time, the holder of volumeLease: Prometheus' cAdvisor
// rates cover every node, and each collector would otherwise raise each
// episode once. While it holds the lease it keeps its pod -> app map up to
// date with the pods every collector stored, since an app's pods run on
// other nodes too.
func (s *Service) clusterVolume(volume func(ctx context.Context) error) func(ctx context.Context) error {
	o := s.collector.opts
	one := &Singleton{Leases: s.cfg.DB, Name: volumeLease, Holder: o.ReplicaID,
		TTL: o.LeaseTTL, Renew: o.LeaseRenew, Poll: o.LeasePoll, Log: s.log.With("component", "volume")}
	return func(ctx context.Context) error {
		return one.Run(ctx, func(ctx context.Context) error {
			syncCtx, stopSync := context.WithCancel(ctx)
			synced := make(chan struct{})
			go func() { defer close(synced); s.syncPods(syncCtx) }()
			err := volume(ctx)
			stopSync()
			<-synced
			return err
		})
	}
}

// syncPods loads the pods every collector stored into the pod -> app map,
// at every refresh interval, until ctx ends.
func (s *Service) syncPods(ctx context.Context) {
	since := time.Now().Add(-detector.DefaultPodAppOptions().TTL)
	t := time.NewTicker(s.cfg.Refresh)
	defer t.Stop()
	for {
		pods, err := s.cfg.DB.AppPods(ctx, since)
		switch {
		case err == nil:
			s.pods.Load(pods)
			for _, p := range pods {
				// Pods are stored at each flush: a minute back covers
				// flushes that committed out of order.
				if p.LastSeen.Add(-time.Minute).After(since) {
					since = p.LastSeen.Add(-time.Minute)
				}
			}
		case ctx.Err() == nil:
			s.log.Warn("sync_pods_failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// serveHTTP serves on lis until ctx ends, then shuts the server down,
// letting requests in flight finish for up to 5 s. A listener that fails
// ends it with an error, which stops the service.
func serveHTTP(ctx context.Context, srv *http.Server, lis net.Listener) error {
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// collectorHeader adds Egressd-Collector to /readyz answers: "active"
// while this replica collects its source, "standby; holder=REPLICA" while
// another does, "waiting" before either is known. The body says only
// "ready": a standby is ready too.
func (s *Service) collectorHeader(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			role := "waiting"
			if h, ok := s.collector.StandbyOf(); ok {
				role = "standby; holder=" + h
			} else if s.collector.Active() {
				role = "active"
			}
			w.Header().Set("Egressd-Collector", role)
		}
		next.ServeHTTP(w, r)
	})
}
