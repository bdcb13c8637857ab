package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/collector/hubbletest"
	"github.com/egressd/egressd/detector"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgtest"
)

// floodTimes are the service's timings in TestAPIFloodLeavesCollectorAlone.
// The lease lives long enough that renewals timing out on a machine other
// tests saturate do not lose it; only a renewal that never gets a
// connection for floodLeaseTTL would.
const (
	floodFlush      = 200 * time.Millisecond
	floodLeaseTTL   = 10 * time.Second
	floodLeaseRenew = time.Second
	floodDuration   = 6 * time.Second
	floodClients    = 40 // remote addresses 127.0.0.2 to 127.0.0.41
	floodPerClient  = 5  // requests each keeps in flight (1 over the cap)
	floodApps       = 2000
	floodWide       = 100_000
	floodMainConns  = 8 // the main pool's size, egressd's default
)

// TestAPIFloodLeavesCollectorAlone floods the API of a running serve, from
// many clients at once, with reads that keep the database busy while flows
// stream in, and checks that the collector is untouched: the lease is never
// lost (a standby replica waits to take it over the moment it expires),
// flushes keep committing, /readyz stays 200, and, what guarantees the
// rest, the flood never takes the collector's connections: the API's pool
// is full throughout while the main pool, sampled every few milliseconds,
// always has a free connection for a flush or a renewal.
//
// It measures connections held, not how long flushes take: on a machine
// whose CPU other tests saturate, PostgreSQL itself is slow, and flushes
// commit 2 times in 7 s whichever pool the API uses. With the API on the
// collector's pool (Options.APIMaxConns 0) the main pool is full in every
// sample and this test fails.
//
// It does not run in parallel with the package's other tests, which would
// compete for the same database server and two cores.
func TestAPIFloodLeavesCollectorAlone(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.URL(t)
	open := func() *postgres.DB {
		opts := postgres.DefaultOptions()
		opts.URL = dsn
		opts.MaxConns = floodMainConns
		db, err := postgres.Open(ctx, opts)
		require.NoError(t, err)
		t.Cleanup(db.Close)
		return db
	}
	db := open()
	seedFloodApps(t, db)

	srv, addr := startHubble(t, hubbletest.Options{})
	cfg := func(db *postgres.DB, replica string) ServeConfig {
		co := collector.DefaultClientOptions()
		co.Address = addr
		co.BackoffMin, co.BackoffMax = 10*time.Millisecond, 50*time.Millisecond
		agg := collector.DefaultAggregatorOptions()
		agg.FlushInterval = floodFlush
		return ServeConfig{
			DB: db, Client: co, Pipeline: collector.DefaultOptions(), Aggregate: agg, Listen: "127.0.0.1:0",
			Detect: detector.DefaultOptions(), ReplicaID: replica,
			LeaseTTL: floodLeaseTTL, LeaseRenew: floodLeaseRenew, LeasePoll: 100 * time.Millisecond,
		}
	}
	logs := &faultLog{}
	m, err := NewMain(cfg(db, "active"), slog.New(slog.NewTextHandler(logs, nil)))
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	waitUntil(t, "the first replica holds the lease", func() bool { return testutil.ToFloat64(m.CollectorMetrics().LeaseHeld) == 1 })
	standby, _ := runMain(t, cfg(open(), "standby"))
	waitUntil(t, "the second replica is a standby", func() bool { _, ok := standby.StandbyOf(); return ok })

	startFaultFeed(t, srv, 2*time.Millisecond)
	flushes := func() float64 { return testutil.ToFloat64(m.CollectorMetrics().Flushes.WithLabelValues("ok")) }
	waitUntil(t, "flows are flushed", func() bool { return flushes() >= 2 })

	// Sample both pools while the flood runs. A sampler the machine's
	// load slows down takes fewer samples; it cannot see a free connection
	// that was not there.
	api := db.API()
	var (
		samples, mainFull int
		mainMax, apiMax   int32
		sampling          = make(chan struct{})
		sampled           = make(chan struct{})
		waitsBefore       = db.PoolStat().Waits
		flushesBefore     = flushes()
	)
	go func() {
		defer close(sampled)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-sampling:
				return
			case <-tick.C:
			}
			main, a := db.PoolStat(), api.PoolStat()
			samples++
			mainMax, apiMax = max(mainMax, main.Acquired), max(apiMax, a.Acquired)
			if main.Acquired >= main.Max {
				mainFull++
			}
		}
	}()
	// The probes answer throughout: they are not /api requests, and
	// readiness pings the main pool.
	var notReady atomic.Int32
	probed := make(chan struct{})
	go func() {
		defer close(probed)
		for {
			select {
			case <-sampling:
				return
			case <-time.After(100 * time.Millisecond):
			}
			resp, err := http.Get("http://" + m.Addr(ctx) + "/readyz")
			if err != nil || resp.StatusCode != http.StatusOK {
				notReady.Add(1)
			}
			if err == nil {
				resp.Body.Close()
			}
		}
	}()
	statuses := flood(t, m.Addr(ctx), floodDuration)
	close(sampling)
	<-sampled
	<-probed
	flushedInFlood := flushes() - flushesBefore
	// Flushes go on after the flood too: the collector was not wedged.
	waitUntil(t, "a flush commits after the flood", func() bool { return flushes() > flushesBefore+flushedInFlood })

	t.Logf("flood of %s: answers by status %v; %d flushes committed during it; "+
		"main pool: %d of %d connections at most, full in %d of %d samples, %d acquires waited; API pool: %d of %d at most",
		floodDuration, statuses, int(flushedInFlood), mainMax, floodMainConns, mainFull, samples,
		db.PoolStat().Waits-waitsBefore, apiMax, api.PoolStat().Max)
	require.Positive(t, statuses[http.StatusOK], "the flood was answered")
	require.Positive(t, statuses[http.StatusTooManyRequests], "clients over the cap were refused")
	require.Equal(t, api.PoolStat().Max, apiMax, "the flood filled the API's pool")
	require.Zero(t, mainFull, "samples in which the flood left the collector's pool no free connection")
	require.Positive(t, flushedInFlood, "flushes committed during the flood")
	require.Zero(t, notReady.Load(), "/readyz answered other than 200 during the flood")
	t.Logf("lease renewals that failed: %d", strings.Count(logs.String(), "lease_renew_failed"))
	require.NotContains(t, logs.String(), "lease_lost")
	require.Equal(t, 0.0, testutil.ToFloat64(m.CollectorMetrics().LeaseLost))
	require.Equal(t, 1.0, testutil.ToFloat64(m.CollectorMetrics().LeaseHeld))
	require.Equal(t, 0.0, testutil.ToFloat64(standby.CollectorMetrics().LeaseHeld))
}

// seedFloodApps stores floodApps apps with a destination each, and the app
// flood/wide with floodWide destinations last seen two days ago, so that
// the flood's reads cost the database real work.
func seedFloodApps(t *testing.T, db *postgres.DB) {
	t.Helper()
	at := time.Now().UTC().Add(-48 * time.Hour)
	var r egressd.Rollup
	dest := func(app egressd.App, d egressd.Destination) {
		r.Destinations = append(r.Destinations, egressd.DestinationRollup{App: app, Destination: d, FirstSeen: at, LastSeen: at, Flows: 1,
			Verdicts: egressd.VerdictSet(0).Add(egressd.VerdictForwarded)})
	}
	for i := range floodApps {
		app := egressd.App{Cluster: "homelab", Namespace: "flood", Name: fmt.Sprintf("app-%05d", i)}
		dest(app, egressd.Destination{Name: fmt.Sprintf("d%d.example.com", i), Port: 443, Protocol: egressd.ProtoTCP})
	}
	wide := egressd.App{Cluster: "homelab", Namespace: "flood", Name: "wide"}
	for i := range floodWide {
		dest(wide, egressd.Destination{Name: fmt.Sprintf("w%d.example.com", i), Port: 443, Protocol: egressd.ProtoTCP})
	}
	require.NoError(t, db.WriteRollup(context.Background(), &r))
}

// flood reads the API from floodClients addresses, floodPerClient requests
// at a time each, for d, and returns how many answers had each status. The
// reads cost the database much and this process little: half ask for the
// wide app's destinations of the last hour (its whole index is read, no
// row matches), half for pages of apps.
func flood(t *testing.T, httpAddr string, d time.Duration) map[int]int {
	t.Helper()
	var (
		mu       sync.Mutex
		statuses = map[int]int{}
		wg       sync.WaitGroup
		stop     atomic.Bool
	)
	for c := range floodClients {
		dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+c))}}
		client := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext, MaxIdleConnsPerHost: floodPerClient}, Timeout: 30 * time.Second}
		for i := range floodPerClient {
			path := "/api/v1/apps/flood/wide/destinations?window=1h&limit=1000"
			if i == 0 {
				path = "/api/v1/apps?window=168h&limit=200"
			}
			wg.Go(func() {
				for !stop.Load() {
					resp, err := client.Get("http://" + httpAddr + path)
					if err != nil {
						continue // a connection the server cut: counted nowhere
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					mu.Lock()
					statuses[resp.StatusCode]++
					mu.Unlock()
					if resp.StatusCode == http.StatusTooManyRequests {
						// Ignoring Retry-After, as a hostile client
						// would, but not spinning: the machine's CPU is
						// not what the test is about.
						time.Sleep(10 * time.Millisecond)
					}
				}
			})
		}
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	return statuses
}
