package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/collector/hubbletest"
	"github.com/egressd/egressd/detector"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgtest"
)

// BenchmarkAppsAtBound streams bare pods, each an app of its own (no
// labels: the pod's name is the app), through what serve runs with
// --prometheus-url: the pipeline (with the default --max-apps, 100k), the
// aggregator flushing to PostgreSQL every 10k messages, the detector and
// the pod -> app map. Then it "restarts": everything is dropped, and a
// fresh detector, pipeline and pod map load what PostgreSQL holds, as a
// term's start does (detector.Prime, postgres.DB.EachApp, AppPods).
//
// apps=1000000/names=1 is the acceptance case: 1M one-name apps (one flow
// each) against the default bound, of which about 60k are kept (all of the
// first 50k, then one in 100). The others raise --max-apps above the apps
// streamed, so that every app is kept: 100k apps, the default bound's
// worth, with one name each, then with 10 names each (1M keys). It reports the
// live heap and the process's RSS (VmRSS) after streaming, the peak RSS
// (VmHWM), and, after the restart, the live heap and the RSS once the
// garbage of priming is returned to the system (debug.FreeOSMemory; the Go
// scavenger does the same within minutes). The RSS includes the test
// binary's own (reported at start). It reports; it asserts nothing.
func BenchmarkAppsAtBound(b *testing.B) {
	for _, c := range []struct{ apps, names, maxApps int }{
		{1_000_000, 1, collector.DefaultOptions().MaxApps},
		{100_000, 1, 200_000},
		{100_000, 10, 200_000},
	} {
		b.Run("apps="+strconv.Itoa(c.apps)+"/names="+strconv.Itoa(c.names)+"/max-apps="+strconv.Itoa(c.maxApps), func(b *testing.B) {
			for b.Loop() {
				appsAtBound(b, c.apps, c.names, c.maxApps)
			}
		})
	}
}

func appsAtBound(b *testing.B, apps, names, maxApps int) {
	ctx := b.Context()
	db := pgtest.NewDB(b)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := time.Now().Add(-3 * time.Hour).Truncate(time.Hour)

	rss0 := rssBytes(b, "VmRSS")
	heap0 := liveHeap()
	b.ReportMetric(float64(rss0)/1e6, "rss-start-MB")

	sinks, pipe, stop := servePipeline(b, ctx, db, log, maxApps)
	var buf []byte
	for i := range apps {
		for n := range names {
			pod := "bare" + strconv.Itoa(i) + "x"
			at := start.Add(time.Duration(i*names+n) * time.Millisecond)
			f := hubbletest.NewFlow(hubbletest.FlowSpec{
				Time: at, Node: "node-1", UUID: pod + "-" + strconv.Itoa(n),
				Src: hubbletest.PodEndpoint("attack", pod, "10.42.1.17"),
				Dst: hubbletest.WorldEndpoint("93.184.216.34", 443, "n"+strconv.Itoa(n)+".example.com"),
			})
			var err error
			buf, err = proto.MarshalOptions{}.MarshalAppend(buf[:0], hubbletest.Response(f))
			if err != nil {
				b.Fatal(err)
			}
			if err := pipe.Handle("hubble:bench", buf); err != nil {
				b.Fatal(err)
			}
			if (i*names+n)%10_000 == 9_999 {
				if err := sinks.agg.Flush(ctx); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	if err := sinks.agg.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	heap := liveHeap() - heap0
	b.ReportMetric(float64(heap)/1e6, "heap-streamed-MB")
	b.ReportMetric(float64(rssBytes(b, "VmRSS"))/1e6, "rss-streamed-MB")
	b.ReportMetric(float64(rssBytes(b, "VmHWM"))/1e6, "rss-peak-MB")
	kept := testutil.ToFloat64(sinks.metrics.Apps)
	b.ReportMetric(float64(kept), "apps-kept")
	b.ReportMetric(float64(heap)/kept, "heap-B/kept-app")
	runtime.KeepAlive(pipe)
	stop()

	// The restart: nothing of the streaming process is left.
	sinks, pipe = nil, nil
	runtime.GC()
	debug.FreeOSMemory()
	heap0 = liveHeap()
	sinks, pipe, stop = servePipeline(b, ctx, db, log, maxApps)
	defer stop()
	resume := start.Add(time.Duration(apps*names) * time.Millisecond)
	if _, err := sinks.det.Prime(ctx, detectorState{db}, resume); err != nil {
		b.Fatal(err)
	}
	if err := db.EachApp(ctx, pipe.KeepApp); err != nil {
		b.Fatal(err)
	}
	pods, err := db.AppPods(ctx, resume.Add(-detector.DefaultPodAppOptions().TTL))
	if err != nil {
		b.Fatal(err)
	}
	sinks.pods.Load(pods)
	pods = nil
	heap = liveHeap() - heap0
	debug.FreeOSMemory()
	b.ReportMetric(float64(heap)/1e6, "heap-restarted-MB")
	b.ReportMetric(float64(rssBytes(b, "VmRSS"))/1e6, "rss-restarted-idle-MB")
	runtime.KeepAlive(pipe)
}

// benchSinks are what serve hands observations to.
type benchSinks struct {
	metrics *collector.Metrics
	agg     *collector.Aggregator
	det     *detector.Detector
	pods    *detector.PodAppMap
}

// servePipeline builds a pipeline with serve's defaults and sinks, and
// starts the detector's store loop until stop.
func servePipeline(b *testing.B, ctx context.Context, db *postgres.DB, log *slog.Logger, maxApps int) (*benchSinks, *collector.Pipeline, func()) {
	b.Helper()
	m := collector.NewMetrics(prometheus.NewRegistry())
	agg, err := collector.NewAggregator(collector.DefaultAggregatorOptions(), db, log, m)
	if err != nil {
		b.Fatal(err)
	}
	det, err := detector.New(detector.DefaultOptions(), &detectorStore{db: db, now: time.Now}, log, detector.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		b.Fatal(err)
	}
	pods, err := detector.NewPodAppMap(detector.DefaultPodAppOptions())
	if err != nil {
		b.Fatal(err)
	}
	opts := collector.DefaultOptions()
	opts.Log = log
	opts.MaxApps = maxApps
	pipe, err := collector.NewPipeline(opts, m, agg, det, pods)
	if err != nil {
		b.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- det.Run(rctx) }()
	return &benchSinks{metrics: m, agg: agg, det: det, pods: pods}, pipe, func() {
		cancel()
		<-done
	}
}

// liveHeap returns the bytes reachable after a full collection.
func liveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// rssBytes reads a field of /proc/self/status (VmRSS, VmHWM), in bytes.
func rssBytes(b *testing.B, field string) int64 {
	b.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := bytes.Cut(sc.Bytes(), []byte(":"))
		if !ok || string(k) != field {
			continue
		}
		kb, err := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(v), []byte(" kB"))), 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		return kb << 10
	}
	b.Fatalf("no %s in /proc/self/status", field)
	return 0
}
