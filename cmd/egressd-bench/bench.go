package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/egressd/egressd/alerts/amtest"
	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/collector/flowgen"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgserver"
)

const benchUsage = `Usage: egressd-bench [flags]

Measures egressd's performance targets (BENCHMARKS.md) on this machine and
prints each figure with its target and ratio, min/median/max over --runs runs:

  decode   selective decode vs full proto.Unmarshal of the same responses
  ingest   loopback gRPC -> decode -> attribute -> aggregate -> PostgreSQL,
           vs a client that only receives the raw stream bytes (same run)
  latency  flow sent by Hubble -> alert listed by a real Alertmanager
  memory   heap per active (app, destination, port) key at --keys keys
  flush    one flush of 10k distinct keys to PostgreSQL
  export   baseline export of 10k apps x 20 destinations (--export-apps)
  pernode  the ingest flows split over 1, 2 and 4 per-node collectors on one
           database: aggregate rate, rows written per second, flush time
  replay   egressd replay of a production-shaped capture (--replay-lines)
           vs Python 3's json.loads of the same file (same run)

It reports; it never fails on a figure. Without --database-url it starts a
throwaway PostgreSQL (fsync off, on tmpfs when there is one). The latency
figure runs Debian's prometheus-alertmanager (make bench installs it).

`

// benchConfig is what egressd-bench measures and how much.
type benchConfig struct {
	runs     int
	flows    int
	apps     int
	dests    int
	keys     int
	alerts   int
	exportN  int
	decodeIn time.Duration
	only     map[string]bool
	// profile, when set, receives a CPU profile of the first egressd
	// ingest run (the test Hubble server, in this process, included).
	profile string
	// replayLines is the size of the replay figure's capture.
	replayLines int
}

// figure is one measured quantity over the runs.
type figure struct {
	name   string
	unit   string
	target string
	// met says whether a value meets the target; nil for figures that
	// are only reported. A figure that cannot be zero or negative is not
	// met by such a value: that is a broken measurement.
	met    func(v float64) bool
	values []float64
	notes  []string
}

func (f *figure) add(v float64, note string) {
	f.values = append(f.values, v)
	if note != "" {
		f.notes = append(f.notes, note)
	}
}

// stats returns min, median and max.
func (f *figure) stats() (lo, med, hi float64) {
	v := slices.Clone(f.values)
	slices.Sort(v)
	return v[0], v[len(v)/2], v[len(v)-1]
}

func (f *figure) line() string {
	if len(f.values) == 0 {
		if f.met != nil {
			return fmt.Sprintf("%-22s  (not measured) target %s NOT MET", f.name, f.target)
		}
		return fmt.Sprintf("%-22s  (not measured)", f.name)
	}
	lo, med, hi := f.stats()
	verdict := ""
	switch {
	case f.met == nil:
	case f.met(med):
		verdict = "MET"
	default:
		verdict = "NOT MET"
	}
	return fmt.Sprintf("%-22s  median %10s  min %10s  max %10s %-8s  target %-12s %s",
		f.name, fmtFig(med), fmtFig(lo), fmtFig(hi), f.unit, f.target, verdict)
}

func fmtFig(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func bench(ctx context.Context, args []string, out, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("egressd-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	databaseURL := fs.String("database-url", getenv("DATABASE_URL"), "PostgreSQL URL (default $DATABASE_URL; empty: a throwaway server)")
	// The flag package prints defaults: $DATABASE_URL's password must not
	// be in them.
	fs.Lookup("database-url").DefValue = postgres.DSN(getenv("DATABASE_URL")).String()
	cfg := benchConfig{}
	fs.IntVar(&cfg.runs, "runs", 3, "runs of each figure (min/median/max over them)")
	fs.IntVar(&cfg.flows, "flows", 400_000, "flows streamed per ingest run")
	fs.IntVar(&cfg.apps, "apps", 1000, "apps in the ingest stream")
	fs.IntVar(&cfg.dests, "dests", 20, "destinations per app in the ingest stream")
	fs.IntVar(&cfg.keys, "keys", 1_000_000, "distinct keys for the memory figure")
	fs.IntVar(&cfg.alerts, "alerts", 200, "novel flows timed per latency run")
	fs.IntVar(&cfg.exportN, "export-apps", 10_000, "apps (20 destinations each) for the export figure")
	fs.IntVar(&cfg.replayLines, "replay-lines", 100_000, "lines of the replay figure's capture")
	fs.DurationVar(&cfg.decodeIn, "decode-time", 2*time.Second, "time spent per decode run")
	fs.StringVar(&cfg.profile, "cpuprofile", "", "write a CPU profile of the first egressd ingest run to this file")
	only := fs.String("only", "", "comma-separated figures to measure (decode,ingest,latency,memory,flush,export,pernode,replay); default all")
	fs.Usage = func() { fmt.Fprint(fs.Output(), benchUsage+"Flags:\n"); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("bench: unexpected argument %q", fs.Arg(0))
	}
	all := []string{"decode", "ingest", "latency", "memory", "flush", "export", "pernode", "replay"}
	cfg.only = map[string]bool{}
	for _, s := range splitList(*only) {
		if !slices.Contains(all, s) {
			return usageError("bench: --only %q: want some of %s", s, strings.Join(all, ","))
		}
		cfg.only[s] = true
	}
	if len(cfg.only) == 0 {
		for _, s := range all {
			cfg.only[s] = true
		}
	}
	switch {
	case cfg.runs < 1:
		return usageError("bench: --runs must be >= 1")
	case cfg.flows < 1000 || cfg.apps < 1 || cfg.dests < 1:
		return usageError("bench: --flows must be >= 1000, --apps and --dests >= 1")
	case cfg.keys < 1000 || cfg.alerts < 10 || cfg.exportN < 1:
		return usageError("bench: --keys must be >= 1000, --alerts >= 10 and --export-apps >= 1")
	case cfg.replayLines < 1000:
		return usageError("bench: --replay-lines must be >= 1000")
	}
	fmt.Fprintf(out, "egressd-bench: %s, %d CPUs (GOMAXPROCS %d), %s/%s, %d runs\n",
		runtime.Version(), runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, cfg.runs)

	var db *postgres.DB
	if cfg.only["ingest"] || cfg.only["latency"] || cfg.only["flush"] || cfg.only["export"] || cfg.only["pernode"] || cfg.only["replay"] {
		if *databaseURL == "" {
			fmt.Fprintln(out, "==> starting a throwaway PostgreSQL (set DATABASE_URL to use yours)")
			eph, err := pgserver.Start(ctx, pgserver.Options{})
			if err != nil {
				return fmt.Errorf("bench: %w", err)
			}
			defer eph.Close()
			*databaseURL = string(eph.URL())
		}
		var err error
		db, err = openDB(ctx, *databaseURL)
		if err != nil {
			return err
		}
		defer db.Close()
	}
	var figs []*figure
	report := func(fs ...*figure) {
		for _, f := range fs {
			fmt.Fprintln(out, f.line())
			for _, n := range f.notes {
				fmt.Fprintln(out, "    ", n)
			}
		}
		figs = append(figs, fs...)
	}
	steps := []struct {
		name string
		run  func() ([]*figure, error)
	}{
		{"decode", func() ([]*figure, error) { return benchDecode(cfg) }},
		{"ingest", func() ([]*figure, error) { return benchIngest(ctx, cfg, db, out) }},
		{"latency", func() ([]*figure, error) { return benchLatency(ctx, cfg, db) }},
		{"memory", func() ([]*figure, error) { return benchMemory(cfg) }},
		{"flush", func() ([]*figure, error) { return benchFlush(ctx, cfg, db, *databaseURL) }},
		{"export", func() ([]*figure, error) { return benchExport(ctx, cfg, db) }},
		{"pernode", func() ([]*figure, error) { return benchPerNode(ctx, cfg, db) }},
		{"replay", func() ([]*figure, error) { return benchReplay(ctx, cfg, db) }},
	}
	for _, s := range steps {
		if !cfg.only[s.name] {
			continue
		}
		fmt.Fprintf(out, "==> %s\n", s.name)
		fs, err := s.run()
		if err != nil {
			return fmt.Errorf("bench %s: %w", s.name, err)
		}
		report(fs...)
	}
	fmt.Fprintln(out, "\nSummary (median of each figure):")
	for _, f := range figs {
		fmt.Fprintln(out, f.line())
	}
	return nil
}

// benchDecode times the selective decoder and proto.Unmarshal on the same
// messages (a day of flowgen's Cilium-1.19-shaped home lab), in alternating
// batches so that both see the same machine. A garbage collection between
// batches, untimed, keeps the full decoder's garbage from being collected on
// the selective decoder's time; it also leaves the full decoder's own GC cost
// out, so the ratio errs against the selective decoder.
func benchDecode(cfg benchConfig) ([]*figure, error) {
	msgs, err := decodeMessages()
	if err != nil {
		return nil, err
	}
	dec, err := collector.NewFlowDecoder(collector.DefaultOptions())
	if err != nil {
		return nil, err
	}
	ratio := &figure{name: "decode selective/full", unit: "x", target: "<= 0.15x", met: func(v float64) bool { return v > 0 && v <= 0.15 }}
	allocs := &figure{name: "decode allocs/flow", unit: "allocs", target: "0", met: func(v float64) bool { return v == 0 }}
	var full observer.GetFlowsResponse
	for run := 0; run < cfg.runs; run++ {
		const batch = 512
		var ts, tf time.Duration
		n := 0
		for start := time.Now(); time.Since(start) < cfg.decodeIn; n += batch {
			s := time.Now()
			for j := 0; j < batch; j++ {
				if err := dec.Decode(msgs[(n+j)%len(msgs)]); err != nil {
					return nil, err
				}
			}
			ts += time.Since(s)
			s = time.Now()
			for j := 0; j < batch; j++ {
				full.Reset()
				if err := proto.Unmarshal(msgs[(n+j)%len(msgs)], &full); err != nil {
					return nil, err
				}
			}
			tf += time.Since(s)
			runtime.GC()
		}
		ratio.add(float64(ts)/float64(tf), fmt.Sprintf("run %d: selective %.0f ns/flow, full %.0f ns/flow, %d flows each",
			run+1, float64(ts)/float64(n), float64(tf)/float64(n), n))
		// Allocations are counted for the whole process: the fewest of
		// five passes leaves out what other goroutines allocated.
		fewest := uint64(1 << 63)
		for range 5 {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for _, m := range msgs {
				_ = dec.Decode(m)
			}
			runtime.ReadMemStats(&after)
			fewest = min(fewest, after.Mallocs-before.Mallocs)
		}
		allocs.add(float64(fewest)/float64(len(msgs)), "")
	}
	return []*figure{ratio, allocs}, nil
}

func decodeMessages() ([][]byte, error) {
	start := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	resps, err := flowgen.HomeLab(start, 24*time.Hour).Generate()
	if err != nil {
		return nil, err
	}
	msgs := make([][]byte, 0, len(resps))
	for _, r := range resps {
		m, err := proto.Marshal(r)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// quietLog discards the components' logs during measurements.
func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// webhookSink accepts Alertmanager's notifications and forgets them: the
// latency figure reads Alertmanager's own API.
func webhookSink() (url string, stop func(), err error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	})}
	go func() { _ = srv.Serve(lis) }()
	return "http://" + lis.Addr().String() + "/", func() { _ = srv.Close() }, nil
}

// launchAlertmanager starts the real Alertmanager for the latency figure.
func launchAlertmanager(webhook string) (*amtest.Alertmanager, func(), error) {
	dir, err := os.MkdirTemp("", "egressd-bench-am-")
	if err != nil {
		return nil, nil, err
	}
	am, err := amtest.Launch(amtest.Options{WebhookURL: webhook}, dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return am, func() { am.Stop(); os.RemoveAll(dir) }, nil
}

// rawStreamCodec receives each message as bytes and does nothing else: the
// cheapest possible client, the yardstick of the ingest figure.
type rawStreamCodec struct{}

func (rawStreamCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, err := proto.Marshal(v.(proto.Message))
	return mem.BufferSlice{mem.SliceBuffer(b)}, err
}

func (rawStreamCodec) Unmarshal(data mem.BufferSlice, v any) error {
	p := v.(*[]byte)
	n := data.Len()
	if cap(*p) < n {
		*p = make([]byte, n)
	}
	*p = (*p)[:n]
	data.CopyTo(*p)
	return nil
}

func (rawStreamCodec) Name() string { return "proto" }

// rawReceive reads a whole non-follow GetFlows stream, asking what egressd
// asks, and returns the messages and bytes received.
func rawReceive(ctx context.Context, addr string, req *observer.GetFlowsRequest) (msgs, bytes int, err error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	st, err := conn.NewStream(ctx, &observer.Observer_ServiceDesc.Streams[0], observer.Observer_GetFlows_FullMethodName,
		grpc.ForceCodecV2(rawStreamCodec{}))
	if err != nil {
		return 0, 0, err
	}
	if err := st.SendMsg(req); err != nil {
		return 0, 0, err
	}
	if err := st.CloseSend(); err != nil {
		return 0, 0, err
	}
	var buf []byte
	for {
		if err := st.RecvMsg(&buf); err != nil {
			if errors.Is(err, io.EOF) {
				return msgs, bytes, nil
			}
			return msgs, bytes, err
		}
		msgs++
		bytes += len(buf)
	}
}

// ingestFlows builds n responses from the home lab's flows that egressd asks
// Hubble for (egress and DNS), spread over apps x dests keys: the source pod
// becomes one of apps workloads and a world destination one of dests names.
func ingestFlows(n, apps, dests int, start time.Time) ([]*observer.GetFlowsResponse, error) {
	resps, err := flowgen.HomeLab(start.Add(-24*time.Hour), 24*time.Hour).Generate()
	if err != nil {
		return nil, err
	}
	var tmpl []*flowpb.Flow
	for _, r := range resps {
		f := r.GetFlow()
		if f != nil && (f.GetTrafficDirection() == flowpb.TrafficDirection_EGRESS || f.GetL7().GetDns() != nil) {
			tmpl = append(tmpl, f)
		}
	}
	if len(tmpl) == 0 {
		return nil, errors.New("no egress flows in the home lab scenario")
	}
	out := make([]*observer.GetFlowsResponse, n)
	for i := range n {
		f := proto.Clone(tmpl[i%len(tmpl)]).(*flowpb.Flow)
		t := start.Add(time.Duration(i) * time.Microsecond)
		f.Time.Seconds, f.Time.Nanos = t.Unix(), int32(t.Nanosecond())
		f.Uuid = fmt.Sprintf("%08x-bench-4000-8000-%012x", i, i)
		app := (i / len(tmpl)) % apps
		if src := f.GetSource(); src.GetPodName() != "" {
			renameEndpoint(src, app)
		}
		if dst := f.GetDestination(); dst.GetPodName() == "" && len(f.DestinationNames) > 0 {
			d := (i / len(tmpl) / apps) % dests
			f.DestinationNames = []string{fmt.Sprintf("api-%d.vendor-%d.example.com", d, app%97)}
		}
		out[i] = &observer.GetFlowsResponse{
			NodeName: f.NodeName, Time: f.Time,
			ResponseTypes: &observer.GetFlowsResponse_Flow{Flow: f},
		}
	}
	return out, nil
}

// renameEndpoint makes a pod endpoint one of the bench's apps.
func renameEndpoint(e *flowpb.Endpoint, app int) {
	ns := fmt.Sprintf("team-%02d", app%50)
	name := fmt.Sprintf("svc-%04d", app)
	e.Namespace = ns
	e.PodName = name + "-7d9f8b6c4-x2k9q"
	for _, w := range e.Workloads {
		w.Name = name
	}
	for i, l := range e.Labels {
		switch {
		case strings.HasPrefix(l, "k8s:app="):
			e.Labels[i] = "k8s:app=" + name
		case strings.HasPrefix(l, "k8s:app.kubernetes.io/name="):
			e.Labels[i] = "k8s:app.kubernetes.io/name=" + name
		case strings.HasPrefix(l, "k8s:io.kubernetes.pod.namespace="):
			e.Labels[i] = "k8s:io.kubernetes.pod.namespace=" + ns
		}
	}
}
