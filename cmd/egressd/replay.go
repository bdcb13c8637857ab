package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/detector"
	"github.com/egressd/egressd/postgres"
)

func (c *CLI) replay(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("egressd replay", flag.ContinueOnError)
	cm := c.commonFlags(fs)
	pf := addPipelineFlags(fs)
	detect := fs.Bool("detect", false, "run the detector too and print each new anomaly as one JSON object per line on stdout")
	df := addDetectFlags(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: egressd replay [flags] FILE...

Ingests Hubble JSON lines through the same pipeline as live flows: the Cilium
exporter's events.log, 'hubble observe -o jsonpb' output, or legacy lines of
bare flows, plain or gzip-compressed; - reads standard input. Time is the
flows' time. Replaying flows again counts nothing twice, whatever file or
pipe they come from: each node's spans of flow time already replayed are
skipped. Unreadable lines are reported with file:line and skipped; the exit
status is then 1. A flow stamped before 2000, more than --max-clock-skew
ahead of now, or that far ahead of the flows around it (a stray stamp) is
rejected and counted. SIGINT or SIGTERM stops the replay:
what was read is stored, the statistics are printed, and the exit status
is 2.

With --detect, the detector judges the flows as serve would, in the flows'
time (learning periods, windows and volume follow the recorded timestamps),
and each anomaly stored for the first time is printed on stdout as a JSON
line with kind, namespace, app, destination, port, time and details.

Flags:
`)
		printFlags(fs)
	}
	files, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return usageError("replay: no input: name one or more files, or - for standard input")
	}
	log, err := c.logger(cm)
	if err != nil {
		return err
	}
	opts, aggOpts, err := pf.options()
	if err != nil {
		return err
	}
	var detOpts *detector.Options
	if *detect {
		o, err := df.options(false)
		if err != nil {
			return err
		}
		detOpts = &o
	}
	db, err := openDB(ctx, cm, true)
	if err != nil {
		return err
	}
	defer db.Close()
	rc := replayConfig{db: db, log: log, opts: opts, agg: aggOpts, files: files, stdin: c.Stdin, detect: detOpts, out: c.Stdout}
	if *detect {
		if rc.baselines, err = df.loadBaselines(); err != nil {
			return err
		}
	}
	st, err := runReplay(ctx, rc)
	if err != nil && !st.interrupted {
		return err
	}
	printReplay(c.Stderr, st, len(files), *detect, time.Now())
	if st.interrupted {
		return &exitError_{code: exitError, msg: "replay interrupted: what was read before is stored; replaying the same input again skips it"}
	}
	if st.badLines > 0 {
		for _, e := range st.firstErrors {
			fmt.Fprintln(c.Stderr, "  ", e)
		}
		return &exitError_{code: exitDrift, msg: fmt.Sprintf("replay: %d lines could not be read (they were skipped; everything else was stored)", st.badLines)}
	}
	return nil
}

// replayHintWindow is the baseline window that `baseline export` uses
// without --window.
const replayHintWindow = 168 * time.Hour

// printReplay writes a replay's statistics: what was read, what was kept,
// one line per reason a flow was not, and, when the newest flow is older
// than the default baseline window, how to export it.
func printReplay(w io.Writer, st replayResult, inputs int, detect bool, now time.Time) {
	plural := "s"
	if inputs == 1 {
		plural = ""
	}
	fmt.Fprintf(w, "replayed %d lines from %d input%s: %d flow records, %d observations stored, %d bad lines\n",
		st.lines, inputs, plural, st.messages, st.observations, st.badLines)
	if len(st.notKept) > 0 {
		var total int64
		for _, r := range st.notKept {
			total += r.n
		}
		fmt.Fprintf(w, "not kept: %d\n", total)
		for _, r := range st.notKept {
			fmt.Fprintf(w, "  %9d  %s\n", r.n, r.reason)
		}
	}
	if st.lostEvents > 0 {
		fmt.Fprintf(w, "Hubble reported %d events lost before they were recorded (they are not in the input)\n", st.lostEvents)
	}
	if detect {
		fmt.Fprintf(w, "detected %d new anomalies\n", st.anomalies)
	}
	if !st.newest.IsZero() && now.Sub(st.newest) > replayHintWindow {
		at := st.newest.Add(time.Second).Truncate(time.Second).Format(time.RFC3339)
		fmt.Fprintf(w, "the newest flow (%s) is older than the default baseline window (168h) before now: export it with\n  egressd baseline export --dir DIR --at %s\n",
			st.newest.Format(time.RFC3339), at)
	}
}

type replayConfig struct {
	db    *postgres.DB
	log   *slog.Logger
	opts  collector.Options
	agg   collector.AggregatorOptions
	files []string
	stdin io.Reader
	// detect, when set, runs the detector; anomalies go to out.
	detect    *detector.Options
	baselines []egressd.Baseline
	out       io.Writer
}

type replayResult struct {
	lines, messages, badLines int
	observations              int64
	anomalies                 int
	firstErrors               []error
	// notKept counts the flows that did not become observations, by
	// reason, in the order they are printed.
	notKept []reasonCount
	// newest is the time of the newest valid flow read.
	newest time.Time
	// interrupted is set when ctx ended before the inputs did.
	interrupted bool
	// lostEvents is what the input's lost-events records report.
	lostEvents int64
}

// reasonCount is one line of a replay's breakdown.
type reasonCount struct {
	reason string
	n      int64
}

// readerGrace is how long an interrupted replay waits for its reader to
// return. A read that nothing can end (standard input from a pipe whose
// writer is idle: unlike a named FIFO, its descriptor is not polled) is
// left behind; the process exits right after printing its statistics.
const readerGrace = 300 * time.Millisecond

// runReplay ingests files into the database: one pipeline for all inputs, so
// DNS answers carry over from one rotated file to the next. What was stored
// is known by flow identity, not by file: each node's flows advance the
// cursor of their span of flow time, and flows inside a stored span are
// skipped (collector.Pipeline.ReplayFrom), so the same flows count once
// whether they come from a file, a renamed or gzipped copy, or a pipe.
func runReplay(ctx context.Context, rc replayConfig) (replayResult, error) {
	var res replayResult
	reg := prometheus.NewRegistry()
	m := collector.NewMetrics(reg)
	agg, err := collector.NewAggregator(rc.agg, rc.db, rc.log.With("component", "aggregator"), m)
	if err != nil {
		return res, err
	}
	sinks := []collector.Sink{agg}
	var det *detector.Detector
	var printed *jsonLines
	if rc.detect != nil {
		printed = &jsonLines{w: rc.out}
		det, err = newReplayDetector(ctx, rc, reg, printed)
		if err == nil {
			// An anomaly's evidence counts the flows read before it.
			det.SetFlush(agg.Flush)
		}
		if err != nil {
			return res, err
		}
		sinks = append(sinks, det)
	}
	opts := rc.opts
	opts.Log = rc.log.With("component", "collector")
	pipe, err := collector.NewPipeline(opts, m, sinks...)
	if err != nil {
		return res, err
	}
	stored, err := rc.db.CursorsWithPrefix(ctx, collector.ReplaySourcePrefix)
	if err != nil {
		return res, err
	}
	pipe.ReplayFrom(stored)
	// DNS answers of earlier replays that are still valid at the newest
	// flow stored: they name the connections that follow them.
	answers, err := rc.db.DNSAnswers(ctx, time.Time{})
	if err != nil {
		return res, err
	}
	pipe.LoadDNSAnswers(answers)
	if err := rc.db.EachApp(ctx, pipe.KeepApp); err != nil {
		return res, err
	}

	// The aggregator flushes while the files are read; cancelling aggCtx
	// after the last file makes it write the rest and return.
	aggCtx, stopAgg := context.WithCancel(ctx)
	defer stopAgg()
	g, gctx := errgroup.WithContext(aggCtx)
	g.Go(func() error { return agg.Run(gctx) })
	if det != nil {
		g.Go(func() error { return det.Run(gctx) })
	}

	// The inputs are read in a goroutine of their own so that a signal
	// ends the replay even when a read cannot be interrupted. mu guards
	// the pipeline and res between the two; abandoned tells the reader,
	// should its read ever return, that nobody is listening any more.
	var mu sync.Mutex
	abandoned := false
	rp := collector.NewReplayer()
	readDone := make(chan error, 1)
	go func() {
		readDone <- func() error {
			for _, file := range rc.files {
				handle := func(msg []byte) error {
					mu.Lock()
					defer mu.Unlock()
					if abandoned {
						return context.Canceled
					}
					return pipe.Handle("replay", msg)
				}
				var st collector.ReplayStats
				var err error
				if file == "-" {
					st, err = rp.Replay(ctx, "stdin", rc.stdin, handle)
				} else {
					st, err = rp.ReplayFile(ctx, file, handle)
				}
				mu.Lock()
				res.lines += st.Lines
				res.messages += st.Messages
				res.badLines += st.BadLines
				for _, e := range st.FirstErrors {
					if len(res.firstErrors) < 10 {
						res.firstErrors = append(res.firstErrors, e)
					}
				}
				mu.Unlock()
				m.ReplayBadLines.Add(float64(st.BadLines))
				if err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					return fmt.Errorf("replay %s: %w", file, err)
				}
				rc.log.Debug("replay_input_done", "file", file, "lines", st.Lines, "bad_lines", st.BadLines)
			}
			return nil
		}()
	}()
	var readErr error
	select {
	case readErr = <-readDone:
	case <-ctx.Done():
		select {
		case readErr = <-readDone:
		case <-time.After(readerGrace):
			readErr = ctx.Err()
		}
	}
	mu.Lock()
	abandoned = true
	// The last flow may be held back until a next one confirms its time;
	// there is none. (An error is a decode error, counted already.)
	_ = pipe.FinishReplay()
	res.interrupted = ctx.Err() != nil
	if res.interrupted {
		// The file being read when the signal came is not in res yet.
		res.lines = int(rp.Lines())
		res.messages = int(counterTotal(reg, "egressd_collector_messages_received_total"))
	}
	res.observations = pipe.Delivered()
	res.newest = pipe.Newest()
	mu.Unlock()

	stopAgg()
	if err := g.Wait(); err != nil {
		return res, fmt.Errorf("store replayed observations: %w", err)
	}
	res.notKept = notKept(reg)
	for _, lv := range counterLabels(reg, "egressd_hubble_lost_events_total", "source") {
		res.lostEvents += lv.n
	}
	if printed != nil {
		res.anomalies = printed.n
	}
	return res, readErr
}

// notKeptReasons names the reasons a flow is not stored, with the metric
// and label value that count them, in the order a replay prints them.
var notKeptReasons = []struct {
	metric, label, reason string
}{
	{"egressd_collector_flows_skipped_total", "reply", "reply: the answer of a connection (the connection is counted)"},
	{"egressd_collector_flows_skipped_total", "icmp_answer", "icmp_answer: an ICMP error or echo reply a pod sent in answer to inbound traffic"},
	{"egressd_collector_flows_skipped_total", "not_egress", "not_egress: ingress or of no direction"},
	{"egressd_collector_flows_skipped_total", "in_cluster", "in_cluster: to a pod, service or node of the cluster, or a cluster-local name"},
	{"egressd_collector_flows_skipped_total", "internal_cidr", "internal_cidr: to an address in --internal-cidrs (node, LAN, VPC)"},
	{"egressd_collector_flows_skipped_total", "dns_answer", "dns_answer: a DNS answer (it names addresses; it is not a destination)"},
	{"egressd_collector_flows_skipped_total", "dns_other", "dns_other: another DNS record"},
	{"egressd_collector_flows_skipped_total", "not_flow", "not_flow: a node status record"},
	{"egressd_collector_flows_skipped_total", "lost_events", "lost_events: Hubble's report of events it lost (see below)"},
	{"egressd_collector_flows_skipped_total", "duplicate", "duplicate: the same flow twice in the input"},
	{"egressd_collector_flows_skipped_total", "already_stored", "already_stored: stored by an earlier replay (same node, same span of time)"},
	{"egressd_flows_rejected_total", "clock", "clock: stamped before 2000, or more than --max-clock-skew ahead of now or of the flows before it"},
	{"egressd_collector_decode_errors_total", "", "undecodable: not a valid Hubble message"},
	{"egressd_collector_observations_sampled_total", "", "sampled: past --max-keys-per-app names for its app in the hour"},
	{"egressd_collector_observations_apps_sampled_total", "", "apps_sampled: of a new app, past half of --max-apps apps"},
	{"egressd_collector_observations_dropped_total", "", "dropped: past --max-keys while the database was slow"},
}

// notKept reads the breakdown from the replay's own metrics: reasons a
// flow was skipped or rejected, then the attribution failures.
func notKept(reg prometheus.Gatherer) []reasonCount {
	var out []reasonCount
	for _, r := range notKeptReasons {
		if n := int64(counterValue(reg, r.metric, "reason", r.label)); n > 0 {
			out = append(out, reasonCount{r.reason, n})
		}
	}
	for _, lv := range counterLabels(reg, "egressd_collector_unattributed_flows_total", "reason") {
		if lv.n > 0 {
			out = append(out, reasonCount{"unattributed: " + lv.reason, lv.n})
		}
	}
	return out
}

// counterValue returns the value of a counter of reg, of the series whose
// label is value (any series when label is empty).
func counterValue(reg prometheus.Gatherer, name, label, value string) float64 {
	for _, lv := range counterLabels(reg, name, label) {
		if label == "" || lv.reason == value {
			return float64(lv.n)
		}
	}
	return 0
}

// counterTotal is counterValue of a counter without labels.
func counterTotal(reg prometheus.Gatherer, name string) float64 {
	return counterValue(reg, name, "", "")
}

// counterLabels returns a counter's series as (value of label, count).
func counterLabels(reg prometheus.Gatherer, name, label string) []reasonCount {
	mfs, err := reg.Gather()
	if err != nil {
		return nil
	}
	var out []reasonCount
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			rc := reasonCount{n: int64(mt.GetCounter().GetValue())}
			for _, lp := range mt.GetLabel() {
				if lp.GetName() == label {
					rc.reason = lp.GetValue()
				}
			}
			out = append(out, rc)
		}
	}
	return out
}

// newReplayDetector builds the detector for replay --detect from what the
// database knows: apps' first sight, accepted destinations, and the window
// before the newest flow already stored from these inputs.
func newReplayDetector(ctx context.Context, rc replayConfig, reg prometheus.Registerer, out *jsonLines) (*detector.Detector, error) {
	store := &detectorStore{db: rc.db, now: time.Now, onNew: out.print}
	det, err := detector.New(*rc.detect, store, rc.log.With("component", "detector"), detector.NewMetrics(reg))
	if err != nil {
		return nil, err
	}
	det.UseEvidence(rc.db)
	acc, err := rc.db.AcceptedAll(ctx)
	if err != nil {
		return nil, err
	}
	det.SetAccepted(acc)
	det.SetBaselines(rc.baselines)
	if _, err := det.Prime(ctx, detectorState{rc.db}, time.Time{}); err != nil {
		return nil, err
	}
	return det, nil
}
