package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cilium/cilium/api/v1/observer"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/collector/hubbletest"
	"github.com/egressd/egressd/detector"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/service"
)

// pernodeSources are the collector counts the per-node figures compare.
var pernodeSources = []int{1, 2, 4}

// pernodeFlush is the flush interval of the per-node figures: short, so
// that a run of a few seconds makes several flushes per source.
const pernodeFlush = 250 * time.Millisecond

// benchPerNode streams the same flows (--flows over --apps x --dests keys)
// split over 1, 2 and 4 sources, each a collector as `serve --per-node`
// runs it (its own Hubble server, lease, fenced flushes, a detector judging
// for the cluster) writing one database, and reports the aggregate ingest
// rate, the rows each source's flushes write per second and how long a
// flush takes, and each against the one-source run of the same round. The
// keys already exist (an untimed first round stores them): the steady
// state, where every source updates the same apps and destinations.
func benchPerNode(ctx context.Context, cfg benchConfig, db *postgres.DB) ([]*figure, error) {
	start := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Hour)
	resps, err := ingestFlows(cfg.flows, cfg.apps, cfg.dests, start)
	if err != nil {
		return nil, err
	}
	if _, err := pernodeOnce(ctx, db, resps, 1, "warmup"); err != nil {
		return nil, err
	}
	type figs struct{ rate, ratio, rows, rowsRatio, flushMed, flushMax, perFlow *figure }
	all := map[int]*figs{}
	var out []*figure
	for _, n := range pernodeSources {
		f := &figs{
			rate:     &figure{name: fmt.Sprintf("pernode %d ingest", n), unit: "flows/s", target: "(reported)"},
			rows:     &figure{name: fmt.Sprintf("pernode %d rows written", n), unit: "rows/s", target: "(reported)"},
			perFlow:  &figure{name: fmt.Sprintf("pernode %d rows/1k flows", n), unit: "rows", target: "(reported)"},
			flushMed: &figure{name: fmt.Sprintf("pernode %d flush p50", n), unit: "ms", target: "(reported)"},
			flushMax: &figure{name: fmt.Sprintf("pernode %d flush max", n), unit: "ms", target: "(reported)"},
		}
		if n > 1 {
			f.ratio = &figure{name: fmt.Sprintf("pernode %d/1 ingest", n), unit: "x", target: "(reported)"}
			f.rowsRatio = &figure{name: fmt.Sprintf("pernode %d/1 rows", n), unit: "x", target: "(reported)"}
		}
		all[n] = f
	}
	for run := 0; run < cfg.runs; run++ {
		var one pernodeResult
		for _, n := range pernodeSources {
			res, err := pernodeOnce(ctx, db, resps, n, fmt.Sprintf("r%d", run))
			if err != nil {
				return nil, err
			}
			if n == 1 {
				one = res
			}
			f := all[n]
			f.rate.add(res.rate(), fmt.Sprintf("run %d: %d flows in %s, %d flushes, %d rows, %.2f CPUs busy",
				run+1, res.flows, res.wall.Round(time.Millisecond), len(res.flushes), res.rows, res.cpu.Seconds()/res.wall.Seconds()))
			f.rows.add(float64(res.rows)/res.wall.Seconds(), "")
			f.perFlow.add(1000*float64(res.rows)/float64(res.flows), "")
			med, hi := res.flushStats()
			f.flushMed.add(med, "")
			f.flushMax.add(hi, "")
			if n > 1 {
				f.ratio.add(res.rate()/one.rate(), "")
				f.rowsRatio.add(float64(res.rows)/float64(one.rows), "")
			}
		}
	}
	for _, n := range pernodeSources {
		f := all[n]
		out = append(out, f.rate)
		if f.ratio != nil {
			out = append(out, f.ratio)
		}
		out = append(out, f.rows, f.perFlow)
		if f.rowsRatio != nil {
			out = append(out, f.rowsRatio)
		}
		out = append(out, f.flushMed, f.flushMax)
	}
	return out, nil
}

// pernodeResult is one round of n sources.
type pernodeResult struct {
	flows   int
	wall    time.Duration
	cpu     time.Duration
	rows    int64
	flushes []time.Duration
}

func (r pernodeResult) rate() float64 { return float64(r.flows) / r.wall.Seconds() }

// flushStats returns the median and the longest flush, in ms.
func (r pernodeResult) flushStats() (med, hi float64) {
	if len(r.flushes) == 0 {
		return 0, 0
	}
	d := slices.Clone(r.flushes)
	slices.Sort(d)
	return float64(d[len(d)/2].Microseconds()) / 1000, float64(d[len(d)-1].Microseconds()) / 1000
}

// timedLeases is the database as a collector's Leases, timing every
// flush and counting the rows it writes.
type timedLeases struct {
	*postgres.DB
	mu      sync.Mutex
	rows    int64
	flushes []time.Duration
}

func (l *timedLeases) WriteRollupFenced(ctx context.Context, r *egressd.Rollup, lease egressd.Lease) error {
	t0 := time.Now()
	err := l.DB.WriteRollupFenced(ctx, r, lease)
	d := time.Since(t0)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushes = append(l.flushes, d)
	l.rows += int64(len(r.Destinations) + len(r.Hourly) + len(r.DNSQueries) + len(r.DNSAnswers) + len(r.Cursors))
	return err
}

// clusterStore is serve's detector store in per-node mode: a novel
// destination is judged for the cluster before it is recorded.
type clusterStore struct{ benchStore }

func (s *clusterStore) Raise(ctx context.Context, a egressd.Anomaly) (bool, error) {
	if a.Kind == egressd.AnomalyNovelDestination {
		known, err := s.db.ClusterKnows(ctx, a.App, a.Destination, a.Time, detector.DefaultOptions().LearningPeriod, detector.NoveltyWindow)
		if err != nil || known != "" {
			return false, err
		}
	}
	return s.benchStore.Raise(ctx, a)
}

// pernodeOnce streams resps split over n sources (flow i to source i mod
// n), each collected as serve --per-node collects its node, until every
// stream has ended and its last flush is written.
func pernodeOnce(ctx context.Context, db *postgres.DB, resps []*observer.GetFlowsResponse, n int, round string) (pernodeResult, error) {
	res := pernodeResult{flows: len(resps)}
	apps, err := db.Apps(ctx)
	if err != nil {
		return res, err
	}
	first := make(map[egressd.App]time.Time, len(apps))
	for _, a := range apps {
		first[a.App] = a.FirstSeen
	}
	leases := &timedLeases{DB: db}
	before, err := db.FlowTotal(ctx)
	if err != nil {
		return res, err
	}
	type node struct {
		srv  *hubbletest.Server
		coll *service.Collector
		det  *detector.Detector
		m    *collector.Metrics
	}
	nodes := make([]node, n)
	for k := range nodes {
		srv := hubbletest.NewServer(hubbletest.Options{})
		addr, err := srv.Start()
		if err != nil {
			return res, err
		}
		defer srv.Stop()
		share := make([]*observer.GetFlowsResponse, 0, len(resps)/n+1)
		for i := k; i < len(resps); i += n {
			share = append(share, resps[i])
		}
		srv.Add(share...)
		co := collector.DefaultClientOptions()
		co.Address, co.Follow = addr, false
		m := collector.NewMetrics(prometheus.NewRegistry())
		client, err := collector.NewClient(co, quietLog(), m)
		if err != nil {
			return res, err
		}
		dopts := detector.DefaultOptions()
		dopts.Shared, dopts.Volume.Factor = true, 0
		det, err := detector.New(dopts, &clusterStore{benchStore{db: db}}, quietLog(), detector.NewMetrics(nil))
		if err != nil {
			return res, err
		}
		det.LoadApps(first) // as serve primes and syncs it
		agg := collector.DefaultAggregatorOptions()
		agg.FlushInterval = pernodeFlush
		coll, err := service.NewCollector(service.CollectorOptions{
			Source: fmt.Sprintf("node/bench-%s-%d-of-%d", round, k, n), ReplicaID: "bench",
			Pipeline: collector.DefaultOptions(), Aggregate: agg,
		}, leases, client, []collector.Sink{det}, m, quietLog())
		if err != nil {
			return res, err
		}
		nodes[k] = node{srv: srv, coll: coll, det: det, m: m}
	}

	detCtx, stopDets := context.WithCancel(ctx)
	var dets sync.WaitGroup
	for _, nd := range nodes {
		dets.Add(1)
		go func() { defer dets.Done(); _ = nd.det.Run(detCtx) }()
	}
	t0, c0 := time.Now(), cpuTime()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for k, nd := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); errs[k] = nd.coll.Run(ctx) }()
	}
	wg.Wait()
	res.wall, res.cpu = time.Since(t0), cpuTime()-c0
	stopDets()
	dets.Wait()
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	got, observed := 0, int64(0)
	for _, nd := range nodes {
		got += int(testutil.ToFloat64(nd.m.Messages))
		observed += int64(testutil.ToFloat64(nd.m.Observations.WithLabelValues("connect")) - testutil.ToFloat64(nd.m.AggDropped))
		relCtx, cancel := context.WithCancel(ctx)
		cancel() // ReleaseOnStop gives the lease up once its context ends
		_ = nd.coll.ReleaseOnStop(relCtx)
	}
	if got != len(resps) {
		return res, fmt.Errorf("%d sources received %d messages of %d", n, got, len(resps))
	}
	// Exact totals: every observed flow is counted once.
	after, err := db.FlowTotal(ctx)
	if err != nil {
		return res, err
	}
	if after-before != observed {
		return res, fmt.Errorf("%d sources observed %d flows, the database counted %d", n, observed, after-before)
	}
	res.rows, res.flushes = leases.rows, leases.flushes
	return res, nil
}
