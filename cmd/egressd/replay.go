package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
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
flows' time. Replaying a file again counts nothing twice: each file (by
absolute path) resumes after the newest flow already stored from it.
Unreadable lines are reported with file:line and skipped; the exit status is
then 1.

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
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stderr, "replayed %d lines from %d inputs: %d flow records, %d observations stored, %d bad lines\n",
		st.lines, len(files), st.messages, st.observations, st.badLines)
	if *detect {
		fmt.Fprintf(c.Stderr, "detected %d new anomalies\n", st.anomalies)
	}
	if st.badLines > 0 {
		for _, e := range st.firstErrors {
			fmt.Fprintln(c.Stderr, "  ", e)
		}
		return &exitError_{code: exitDrift, msg: fmt.Sprintf("replay: %d lines could not be read (they were skipped; everything else was stored)", st.badLines)}
	}
	return nil
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
}

// runReplay ingests files into the database: one pipeline for all inputs, so
// DNS answers carry over from one rotated file to the next; each input is its
// own cursor source so a second replay of it skips what is stored.
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
		if err != nil {
			return res, err
		}
		sinks = append(sinks, det)
	}
	pipe, err := collector.NewPipeline(rc.opts, m, sinks...)
	if err != nil {
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

	rp := collector.NewReplayer()
	readErr := func() error {
		for _, file := range rc.files {
			source := replaySource(file)
			cur, err := rc.db.Cursor(ctx, source)
			switch {
			case err == nil:
				pipe.SkipUntil(source, cur)
			case egressd.ErrorCode(err) != egressd.ENOTFOUND:
				return err
			}
			handle := func(msg []byte) error { return pipe.Handle(source, msg) }
			var st collector.ReplayStats
			if file == "-" {
				st, err = rp.Replay(ctx, "stdin", rc.stdin, handle)
			} else {
				st, err = rp.ReplayFile(ctx, file, handle)
			}
			res.lines += st.Lines
			res.messages += st.Messages
			res.badLines += st.BadLines
			for _, e := range st.FirstErrors {
				if len(res.firstErrors) < 10 {
					res.firstErrors = append(res.firstErrors, e)
				}
			}
			m.ReplayBadLines.Add(float64(st.BadLines))
			if err != nil {
				return fmt.Errorf("replay %s: %w", file, err)
			}
			rc.log.Debug("replay_input_done", "file", file, "lines", st.Lines, "bad_lines", st.BadLines)
		}
		return nil
	}()
	stopAgg()
	if err := g.Wait(); err != nil {
		return res, fmt.Errorf("store replayed observations: %w", err)
	}
	res.observations = pipe.Delivered()
	if printed != nil {
		res.anomalies = printed.n
	}
	return res, readErr
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
	if err := primeDetector(ctx, rc.db, det, time.Time{}); err != nil {
		return nil, err
	}
	acc, err := rc.db.AcceptedAll(ctx)
	if err != nil {
		return nil, err
	}
	det.SetAccepted(acc)
	det.SetBaselines(rc.baselines)
	return det, nil
}

// replaySource names a replay input as a cursor source.
func replaySource(file string) string {
	if file == "-" {
		return "stdin"
	}
	if abs, err := filepath.Abs(file); err == nil {
		return "file:" + abs
	}
	return "file:" + file
}
