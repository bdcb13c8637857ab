package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/cilium/api/v1/observer"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/alerts"
	"github.com/egressd/egressd/baseline"
	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/collector/flowgen"
	"github.com/egressd/egressd/collector/hubbletest"
	"github.com/egressd/egressd/detector"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/service"
)

// benchIngest streams the same backlog of flows over loopback gRPC twice per
// run: first to a client that only receives the bytes, then to egressd's
// collector (client, pipeline, aggregator flushing to PostgreSQL every
// second, detector), and reports both rates and their ratio. egressd's time
// runs from opening the stream to the last message handled; the last flush,
// which a running service overlaps with the next flows, is reported apart.
// Every run checks that the flows counted in PostgreSQL are the flows the
// pipeline observed: nothing lost.
func benchIngest(ctx context.Context, cfg benchConfig, db *postgres.DB, out io.Writer) ([]*figure, error) {
	start := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Hour)
	resps, err := ingestFlows(cfg.flows, cfg.apps, cfg.dests, start)
	if err != nil {
		return nil, err
	}
	srv := hubbletest.NewServer(hubbletest.Options{})
	addr, err := srv.Start()
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	srv.Add(resps...)
	resps = nil
	co := collector.DefaultClientOptions()
	co.Address, co.Follow = addr, false
	req := &observer.GetFlowsRequest{Whitelist: co.Whitelist}

	raw := &figure{name: "ingest raw client", unit: "flows/s", target: "(yardstick)"}
	egr := &figure{name: "ingest egressd", unit: "flows/s", target: ">= 300000", met: func(v float64) bool { return v >= 300_000 }}
	ratio := &figure{name: "ingest egressd/raw", unit: "x", target: ">= 0.8x", met: func(v float64) bool { return v >= 0.8 }}
	drain := &figure{name: "ingest last flush", unit: "ms", target: "(reported)"}
	lost := &figure{name: "ingest lost flows", unit: "flows", target: "0", met: func(v float64) bool { return v == 0 }}
	for run := 0; run < cfg.runs; run++ {
		runtime.GC()
		t0, c0 := time.Now(), cpuTime()
		n, bytes, err := rawReceive(ctx, addr, req)
		if err != nil {
			return nil, fmt.Errorf("raw client: %w", err)
		}
		rawWall, rawCPU := time.Since(t0), cpuTime()-c0
		rawRate := float64(n) / rawWall.Seconds()
		raw.add(rawRate, fmt.Sprintf("run %d: %d messages, %.0f bytes each; %.2f CPUs busy (server and client), %.2f µs CPU/flow",
			run+1, n, float64(bytes)/float64(n), rawCPU.Seconds()/rawWall.Seconds(), float64(rawCPU.Microseconds())/float64(n)))
		runtime.GC()
		profile := ""
		if run == 0 {
			profile = cfg.profile
		}
		res, err := ingestOnce(ctx, db, co, profile)
		if err != nil {
			return nil, err
		}
		if res.messages != n {
			return nil, fmt.Errorf("egressd received %d messages, the raw client %d", res.messages, n)
		}
		egr.add(res.rate, fmt.Sprintf("run %d: %.2f CPUs busy (server, egressd, PostgreSQL client side), %.2f µs CPU/flow",
			run+1, res.cpu.Seconds()/res.wall.Seconds(), float64(res.cpu.Microseconds())/float64(n)))
		ratio.add(res.rate/rawRate, "")
		drain.add(float64(res.drain.Milliseconds()), "")
		lost.add(float64(res.observed-res.stored+res.dropped), fmt.Sprintf("run %d: observed %d, stored %d, dropped %d", run+1, res.observed, res.stored, res.dropped))
	}
	return []*figure{raw, egr, ratio, drain, lost}, nil
}

type ingestResult struct {
	messages int
	rate     float64
	wall     time.Duration
	cpu      time.Duration // of the whole process, the test server included
	drain    time.Duration
	observed int64 // connect observations the pipeline delivered
	stored   int64 // flows the database counted for them
	dropped  int64 // observations the aggregator dropped at its bound
}

// ingestOnce runs the collector as serve wires it over one whole stream.
func ingestOnce(ctx context.Context, db *postgres.DB, co collector.ClientOptions, profile string) (ingestResult, error) {
	var res ingestResult
	reg := prometheus.NewRegistry()
	m := collector.NewMetrics(reg)
	client, err := collector.NewClient(co, quietLog(), m)
	if err != nil {
		return res, err
	}
	aggOpts := collector.DefaultAggregatorOptions()
	aggOpts.FlushInterval = time.Second
	agg, err := collector.NewAggregator(aggOpts, db, quietLog(), m)
	if err != nil {
		return res, err
	}
	det, err := detector.New(detector.DefaultOptions(), &benchStore{db: db}, quietLog(), detector.NewMetrics(reg))
	if err != nil {
		return res, err
	}
	pipe, err := collector.NewPipeline(collector.DefaultOptions(), m, agg, det)
	if err != nil {
		return res, err
	}
	before, err := db.FlowTotal(ctx)
	if err != nil {
		return res, err
	}
	aggCtx, stopAgg := context.WithCancel(ctx)
	detCtx, stopDet := context.WithCancel(ctx)
	defer stopAgg()
	defer stopDet()
	aggDone, detDone := make(chan error, 1), make(chan error, 1)
	go func() { aggDone <- agg.Run(aggCtx) }()
	go func() { detDone <- det.Run(detCtx) }()

	source := "hubble:" + co.Address
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return res, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return res, err
		}
		defer pprof.StopCPUProfile()
	}
	t0, c0 := time.Now(), cpuTime()
	err = client.Run(ctx, func() time.Time { return pipe.Resume(source) }, func(msg []byte) error {
		return pipe.Handle(source, msg)
	})
	elapsed := time.Since(t0)
	res.wall, res.cpu = elapsed, cpuTime()-c0
	if err != nil {
		return res, err
	}
	t1 := time.Now()
	stopAgg()
	if err := <-aggDone; err != nil {
		return res, err
	}
	res.drain = time.Since(t1)
	stopDet()
	if err := <-detDone; err != nil {
		return res, err
	}
	after, err := db.FlowTotal(ctx)
	if err != nil {
		return res, err
	}
	res.messages = int(testutil.ToFloat64(m.Messages))
	res.rate = float64(res.messages) / elapsed.Seconds()
	res.observed = int64(testutil.ToFloat64(m.Observations.WithLabelValues("connect")))
	res.stored = after - before
	res.dropped = int64(testutil.ToFloat64(m.AggDropped))
	return res, nil
}

// benchLatency runs serve with a real Alertmanager and, one novel flow at a
// time, times the flow leaving the Hubble server until Alertmanager lists its
// alert (polled every millisecond).
func benchLatency(ctx context.Context, cfg benchConfig, db *postgres.DB) ([]*figure, error) {
	hook, stopHook, err := webhookSink()
	if err != nil {
		return nil, err
	}
	defer stopHook()
	am, stopAM, err := launchAlertmanager(hook)
	if err != nil {
		return nil, err
	}
	defer stopAM()
	srv := hubbletest.NewServer(hubbletest.Options{})
	addr, err := srv.Start()
	if err != nil {
		return nil, err
	}
	defer srv.Stop()

	co := collector.DefaultClientOptions()
	co.Address = addr
	agg := collector.DefaultAggregatorOptions()
	det := detector.DefaultOptions()
	det.LearningPeriod = 0
	det.FloodThreshold = 1 << 30
	ao := alerts.DefaultOptions()
	ao.Targets = []string{am.URL()}
	m, err := service.New(service.Config{
		DB: db, Client: co, Pipeline: collector.DefaultOptions(), Aggregate: agg, Listen: "127.0.0.1:0",
		Detect: det, Alerts: ao, AlertTTL: 24 * time.Hour,
		NewStore: func(wake func()) detector.Store { return &benchStore{db: db, targets: ao.Targets, wake: wake} },
	}, quietLog())
	if err != nil {
		return nil, err
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx) }()
	defer func() { stop(); <-done }()
	if err := srv.WaitStreams(ctx, 1); err != nil {
		return nil, err
	}

	p50 := &figure{name: "flow->alert p50", unit: "ms", target: "(reported)"}
	p99 := &figure{name: "flow->alert p99", unit: "ms", target: "< 1000", met: func(v float64) bool { return v > 0 && v < 1000 }}
	worst := &figure{name: "flow->alert max", unit: "ms", target: "(reported)"}
	for run := 0; run < cfg.runs; run++ {
		var lat []time.Duration
		for i := 0; i < cfg.alerts; i++ {
			name := fmt.Sprintf("n%d-%d.latency.example", run, i)
			start := time.Now()
			srv.Add(hubbletest.Response(hubbletest.NewFlow(hubbletest.FlowSpec{
				Time: start, Node: "bench/node-1", UUID: fmt.Sprintf("latency-%d-%d", run, i),
				Src: hubbletest.Endpoint{IP: "10.42.1.17", Namespace: "media", Pod: "recyclarr-7d9f8b6c5d-x2k9p",
					Identity: 51234, Workload: "recyclarr", Labels: []string{"k8s:io.kubernetes.pod.namespace=media"}},
				Dst: hubbletest.WorldEndpoint("198.51.100.7", 443, name),
			})))
			for {
				as, err := am.Alerts(ctx, fmt.Sprintf("destination=%q", name))
				if err != nil {
					return nil, err
				}
				if len(as) > 0 {
					break
				}
				if time.Since(start) > 30*time.Second {
					return nil, fmt.Errorf("the alert for %s was never listed by Alertmanager", name)
				}
				time.Sleep(time.Millisecond)
			}
			lat = append(lat, time.Since(start))
		}
		slices.Sort(lat)
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		p50.add(ms(lat[len(lat)/2]), "")
		p99.add(ms(lat[len(lat)*99/100]), "")
		worst.add(ms(lat[len(lat)-1]), "")
	}
	return []*figure{p50, p99, worst}, nil
}

// benchMemory feeds cfg.keys distinct (app, destination, port) keys of
// flowgen's KeySpace (the keys detector.BenchmarkMemory uses), in one flush
// interval, to the two stages that hold state per key, the aggregator
// and the detector (apps in their learning period, so every key joins the
// live window), and reports the heap they hold per key, destination name
// strings included, and the growth of the resident set.
//
// The heap is counted from the allocation profile, not as a difference of
// the process's heap: other goroutines (a test running beside the bench,
// the previous figure's servers shutting down) allocate and free at the same
// time, and once made that difference negative. A run whose count is not
// positive is reported as unmeasured, never as a figure.
func benchMemory(cfg benchConfig) ([]*figure, error) {
	heap := &figure{name: "memory heap/key", unit: "B", target: "<= 300", met: func(v float64) bool { return v > 0 && v <= 300 }}
	rss := &figure{name: "memory RSS growth/key", unit: "B", target: "(reported)"}
	for run := 0; run < cfg.runs; run++ {
		h, r, err := memoryOnce(cfg.keys)
		if err != nil {
			return nil, err
		}
		if h <= 0 {
			heap.notes = append(heap.notes, fmt.Sprintf("run %d: not measured: the profile counted %.3f B/key held", run+1, h))
			continue
		}
		heap.add(h, "")
		rss.add(r, "")
	}
	return []*figure{heap, rss}, nil
}

func memoryOnce(keys int) (heapPerKey, rssPerKey float64, err error) {
	ks := flowgen.NewKeySpace(keys)
	reg := prometheus.NewRegistry()
	aggOpts := collector.DefaultAggregatorOptions()
	aggOpts.MaxKeys = 4 * keys // the measurement must not hit the bound
	agg, err := collector.NewAggregator(aggOpts, nil, quietLog(), collector.NewMetrics(reg))
	if err != nil {
		return 0, 0, err
	}
	det, err := detector.New(detector.DefaultOptions(), &benchStore{}, quietLog(), detector.NewMetrics(reg))
	if err != nil {
		return 0, 0, err
	}
	t := time.Now().UTC().Truncate(time.Hour)
	// Every allocation is recorded while the keys go in, so that the heap
	// they hold can be told apart from everything else in the process.
	// (The runtime asks for one rate set early; only stacks through
	// observeKeys are read, and they were all recorded at rate 1, so the
	// change does not skew them. Nothing else here reads heap profiles.)
	defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
	runtime.MemProfileRate = 1
	before := liveHeapFrom(observeKeys)
	debug.FreeOSMemory()
	rssBefore := residentBytes()
	observeKeys(ks, keys, t, agg, det)
	after := liveHeapFrom(observeKeys)
	rssAfter := residentBytes()
	heapPerKey = float64(after-before) / float64(keys)
	rssPerKey = float64(rssAfter-rssBefore) / float64(keys)
	runtime.KeepAlive(agg)
	runtime.KeepAlive(det)
	return heapPerKey, rssPerKey, nil
}

// observeKeys adds keys distinct keys of ks, seen at t, to agg and det. The
// memory figure counts what its calls allocated and is still live.
//
//go:noinline
func observeKeys(ks *flowgen.KeySpace, keys int, t time.Time, agg *collector.Aggregator, det *detector.Detector) {
	var o egressd.Observation
	for i := range keys {
		ks.Observe(i, t, &o)
		agg.Observe(&o)
		det.Observe(&o)
	}
}

// liveHeapFrom returns the bytes of live heap objects that were allocated
// (while every allocation was profiled) with fn on the allocating stack.
func liveHeapFrom(fn any) int64 {
	name := runtime.FuncForPC(reflect.ValueOf(fn).Pointer()).Name()
	// The profile is as of the last completed collection, and an object's
	// free is recorded when it is swept: two collections publish it all.
	runtime.GC()
	runtime.GC()
	var recs []runtime.MemProfileRecord
	n, _ := runtime.MemProfile(nil, true)
	for {
		recs = make([]runtime.MemProfileRecord, n+64)
		var ok bool
		if n, ok = runtime.MemProfile(recs, true); ok {
			recs = recs[:n]
			break
		}
	}
	var total int64
	for _, r := range recs {
		frames := runtime.CallersFrames(r.Stack())
		for {
			f, more := frames.Next()
			if f.Function == name {
				total += r.InUseBytes()
				break
			}
			if !more {
				break
			}
		}
	}
	return total
}

// cpuTime returns the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// residentBytes reads the process's resident set from /proc (0 elsewhere).
func residentBytes() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// benchFlush writes 10k distinct keys (destinations, their hourly buckets
// and the cursor) in one WriteRollup: first keys the database has never
// seen, then the same keys again (the steady state: rows updated). Its
// yardstick, in the same run, is the cheapest way to hand the same 10k
// destination rows to PostgreSQL: COPY into a temporary table without an
// index, in one transaction. The ratio moves much less than the absolute
// times when the machine is shared.
func benchFlush(ctx context.Context, cfg benchConfig, db *postgres.DB, url string) ([]*figure, error) {
	fresh := &figure{name: "flush 10k new keys", unit: "ms", target: "<= 250", met: func(v float64) bool { return v > 0 && v <= 250 }}
	again := &figure{name: "flush 10k known keys", unit: "ms", target: "<= 250", met: func(v float64) bool { return v > 0 && v <= 250 }}
	floor := &figure{name: "flush COPY 10k (yardstick)", unit: "ms", target: "(reported)"}
	freshX := &figure{name: "flush new/COPY", unit: "x", target: "(reported)"}
	againX := &figure{name: "flush known/COPY", unit: "x", target: "(reported)"}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("connect for the COPY yardstick: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	hour := time.Now().UTC().Truncate(time.Hour)
	for run := 0; run < cfg.runs; run++ {
		r := benchRollup(fmt.Sprintf("flush%d", run), 500, 20, hour)
		copyMS, err := copyDestinations(ctx, conn, r.Destinations)
		if err != nil {
			return nil, err
		}
		floor.add(copyMS, "")
		for _, f := range []*figure{fresh, again} {
			t0 := time.Now()
			if err := db.WriteRollup(ctx, r); err != nil {
				return nil, err
			}
			f.add(float64(time.Since(t0).Microseconds())/1000, "")
		}
		freshX.add(fresh.values[run]/copyMS, "")
		againX.add(again.values[run]/copyMS, "")
	}
	return []*figure{fresh, again, floor, freshX, againX}, nil
}

// copyDestinations times a COPY of rows' destination columns into a
// temporary table, in milliseconds.
func copyDestinations(ctx context.Context, conn *pgx.Conn, rows []egressd.DestinationRollup) (float64, error) {
	t0 := time.Now()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after Commit
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE bench_copy (cluster text, namespace text, app text,
    name text, port int4, protocol text, first_seen timestamptz, last_seen timestamptz, flows int8,
    verdicts int4, example_pod text, name_source int2) ON COMMIT DROP`); err != nil {
		return 0, fmt.Errorf("COPY yardstick: %w", err)
	}
	_, err = tx.CopyFrom(ctx, pgx.Identifier{"bench_copy"},
		[]string{"cluster", "namespace", "app", "name", "port", "protocol", "first_seen", "last_seen", "flows", "verdicts", "example_pod", "name_source"},
		pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
			d := &rows[i]
			return []any{d.App.Cluster, d.App.Namespace, d.App.Name, d.Destination.Name, int32(d.Destination.Port), d.Destination.Protocol,
				d.FirstSeen, d.LastSeen, d.Flows, int32(d.Verdicts), d.ExamplePod, int16(d.NameSource)}, nil
		}))
	if err != nil {
		return 0, fmt.Errorf("COPY yardstick: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("COPY yardstick: %w", err)
	}
	return float64(time.Since(t0).Microseconds()) / 1000, nil
}

// benchRollup returns apps x dests distinct keys, seen in hour.
func benchRollup(prefix string, apps, dests int, hour time.Time) *egressd.Rollup {
	r := &egressd.Rollup{Cursors: []egressd.Cursor{{Source: "bench:" + prefix, Time: hour.Add(time.Minute)}}}
	for a := range apps {
		app := egressd.App{Cluster: "bench", Namespace: fmt.Sprintf("%s-team-%02d", prefix, a%50), Name: fmt.Sprintf("svc-%05d", a)}
		for d := range dests {
			dest := egressd.Destination{Name: fmt.Sprintf("api-%d.vendor-%d.example.com", d, a%97), Port: 443, Protocol: egressd.ProtoTCP}
			r.Destinations = append(r.Destinations, egressd.DestinationRollup{
				App: app, Destination: dest, FirstSeen: hour.Add(time.Second), LastSeen: hour.Add(time.Minute),
				Flows: 7, Verdicts: egressd.VerdictSet(0).Add(egressd.VerdictForwarded),
				ExamplePod: app.Name + "-7d9f8b6c4-x2k9q", NameSource: egressd.NameFromFlow,
			})
			r.Hourly = append(r.Hourly, egressd.HourlyRollup{App: app, Destination: dest, Hour: hour, Flows: 7})
		}
	}
	return r
}

// benchExport stores 10k apps x 20 destinations and times what `egressd
// baseline export` does with them: read the 7-day window, build the
// baselines, write every file into an empty directory. Its yardstick, in
// the same run, is `cp -r` of the tree it wrote: the cost of writing those
// files and nothing else. A second export over the same tree, where every
// file is unchanged and none is written, is reported on its own line.
func benchExport(ctx context.Context, cfg benchConfig, db *postgres.DB) ([]*figure, error) {
	apps, dests := cfg.exportN, 20
	hour := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	all := benchRollup("export", apps, dests, hour)
	// Stored in flush-sized pieces, as serve would have.
	for i := 0; i < len(all.Destinations); i += 20_000 {
		j := min(i+20_000, len(all.Destinations))
		part := &egressd.Rollup{Destinations: all.Destinations[i:j], Hourly: all.Hourly[i:j]}
		if err := db.WriteRollup(ctx, part); err != nil {
			return nil, err
		}
	}
	// A database that serve has run for a while holds the buckets of its
	// retention period (30 days by default), older than the window.
	if err := db.WriteRollup(ctx, benchRollup("retained", 1, 1, hour.Add(-30*24*time.Hour))); err != nil {
		return nil, err
	}
	name := fmt.Sprintf("export %dk apps x 20", apps/1000)
	if apps < 1000 {
		name = fmt.Sprintf("export %d apps x 20", apps)
	}
	total := &figure{name: name, unit: "s", target: "<= 2", met: func(v float64) bool { return v > 0 && v <= 2 }}
	copyFig := &figure{name: "export cp -r (yardstick)", unit: "s", target: "(reported)"}
	ratio := &figure{name: "export/cp -r", unit: "x", target: "<= 3", met: func(v float64) bool { return v > 0 && v <= 3 }}
	again := &figure{name: "export unchanged", unit: "s", target: "(reported)"}
	end := time.Now().UTC()
	export := func(dir string) (int, baseline.ExportResult, time.Duration, error) {
		// As `egressd baseline export` reads the live window: each app's
		// file is written while the next apps' rows arrive.
		t0 := time.Now()
		x, err := baseline.NewExporter(dir, baseline.ExportOptions{})
		if err != nil {
			return 0, baseline.ExportResult{}, 0, err
		}
		n := 0
		var build baseline.Builder
		err = db.EachWindowApp(ctx, end.Add(-168*time.Hour), end, func(keys []egressd.WindowEntry) error {
			for _, e := range keys {
				build.Add(e)
			}
			for _, b := range build.Take() {
				x.Add(b)
				n++
			}
			return nil
		})
		if err != nil {
			x.Abandon()
			return 0, baseline.ExportResult{}, 0, err
		}
		read := time.Since(t0)
		res, err := x.Close()
		return n, res, read, err
	}
	for run := 0; run < cfg.runs; run++ {
		tmp, err := os.MkdirTemp("", "egressd-bench-export-")
		if err != nil {
			return nil, err
		}
		dir, copied := filepath.Join(tmp, "out"), filepath.Join(tmp, "copy")
		t0 := time.Now()
		n, res, read, err := export(dir)
		elapsed := time.Since(t0)
		if err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
		t1 := time.Now()
		out, err := exec.CommandContext(ctx, "cp", "-r", dir, copied).CombinedOutput()
		cp := time.Since(t1)
		if err != nil {
			os.RemoveAll(tmp)
			return nil, fmt.Errorf("cp -r %s: %v: %s", dir, err, out)
		}
		t2 := time.Now()
		_, res2, _, err := export(dir)
		unchanged := time.Since(t2)
		os.RemoveAll(tmp)
		if err != nil {
			return nil, err
		}
		if len(res2.Written) != 0 {
			return nil, fmt.Errorf("export over its own output wrote %d files, want 0", len(res2.Written))
		}
		total.add(elapsed.Seconds(), fmt.Sprintf("run %d: %d apps (%d files written): window read, build and files meanwhile %.2f s, the files left %.2f s",
			run+1, n, len(res.Written), read.Seconds(), (elapsed-read).Seconds()))
		copyFig.add(cp.Seconds(), "")
		ratio.add(elapsed.Seconds()/cp.Seconds(), "")
		again.add(unchanged.Seconds(), fmt.Sprintf("run %d: %d files unchanged, none written", run+1, len(res2.Unchanged)))
	}
	return []*figure{total, copyFig, ratio, again}, nil
}
