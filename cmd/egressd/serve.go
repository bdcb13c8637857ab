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
	"github.com/egressd/egressd/collector"
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
}

// Main is the long-running egressd service: the Hubble client feeding the
// pipeline, the aggregator writing to PostgreSQL and the HTTP endpoints. It
// holds no signal handling, so tests run it in-process.
type Main struct {
	cfg      ServeConfig
	log      *slog.Logger
	reg      *prometheus.Registry
	metrics  *collector.Metrics
	addr     chan string
	client   *collector.Client
	listener net.Listener
}

// NewMain checks the configuration and registers the metrics.
func NewMain(cfg ServeConfig, log *slog.Logger) (*Main, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Main{cfg: cfg, log: log, reg: reg, metrics: collector.NewMetrics(reg), addr: make(chan string, 1)}
	client, err := collector.NewClient(cfg.Client, log.With("component", "hubble"), m.metrics)
	if err != nil {
		return nil, err
	}
	m.client = client
	return m, nil
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
	pipe, err := collector.NewPipeline(m.cfg.Pipeline, m.metrics, agg)
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
	srv := &http.Server{
		Handler: httpapi.NewRouter(httpapi.Options{
			Gatherer: m.reg,
			Ready: func(ctx context.Context) error {
				if err := db.Ping(ctx); err != nil {
					return errors.New("database unreachable")
				}
				if !m.client.Up() {
					return errors.New("hubble stream not established")
				}
				return nil
			},
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}

	httpCtx, stopHTTP := context.WithCancel(context.WithoutCancel(ctx))
	aggCtx, stopAgg := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHTTP()
	defer stopAgg()

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
	if m.cfg.Retention > 0 {
		g.Go(func() error { m.retention(httpCtx); return nil })
	}

	clientErr := m.client.Run(ctx, func() time.Time { return pipe.Resume(source) }, func(msg []byte) error {
		return pipe.Handle(source, msg)
	})
	// 1. The stream has stopped (ctx cancelled, or Hubble finished
	// without --follow). 2. Last flush.
	stopAgg()
	aggErr := <-aggDone
	// 3. HTTP.
	stopHTTP()
	httpErr := g.Wait()
	return errors.Join(clientErr, aggErr, httpErr)
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
	listen := fs.String("listen", ":9090", "HTTP address for /metrics, /healthz and /readyz")
	retention := fs.Duration("retention", 30*24*time.Hour, "how long hourly buckets are kept (at least the baseline window); 0 keeps everything")
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
	m, err := NewMain(ServeConfig{DB: db, Client: co, Pipeline: opts, Aggregate: aggOpts, Listen: *listen, Retention: *retention}, log)
	if err != nil {
		return err
	}
	return m.Run(ctx)
}
