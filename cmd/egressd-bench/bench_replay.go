package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/collector/flowgen"
	"github.com/egressd/egressd/postgres"
)

// pythonJSONLoads times json.loads over every line of the file named by
// its argument, as a script reading a Hubble capture line by line would,
// and prints the lines read and the seconds taken (interpreter start-up
// left out).
const pythonJSONLoads = `
import json, sys, time
n = 0
t = time.perf_counter()
with open(sys.argv[1], "rb") as f:
    for line in f:
        json.loads(line)
        n += 1
print(n, time.perf_counter() - t)
`

// benchReplay times `egressd replay` of a production-shaped capture and
// Python 3's json.loads of the same file, in the same run. The capture is
// --replay-lines lines of the ingest figure's flows (egress and DNS of
// --apps apps x --dests destinations) as `hubble observe -o jsonpb` writes
// them. egressd's time runs from opening the file to the aggregator's last
// flush to PostgreSQL returning: reading, decoding, attribution and storage,
// as the replay command does (without --detect). Each run renames the
// capture's nodes, so that no run finds its spans stored by the one before.
func benchReplay(ctx context.Context, cfg benchConfig, db *postgres.DB) ([]*figure, error) {
	dir, err := os.MkdirTemp("", "egressd-bench-replay-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	capture, err := replayCapture(cfg)
	if err != nil {
		return nil, err
	}
	py := &figure{name: "replay python json.loads", unit: "lines/s", target: "(yardstick)"}
	egr := &figure{name: "replay egressd", unit: "lines/s", target: "(reported)"}
	ratio := &figure{name: "replay egressd/python", unit: "x", target: ">= 1.5x", met: func(v float64) bool { return v >= 1.5 }}
	python, pyErr := exec.LookPath("python3")
	if pyErr != nil {
		py.notes = append(py.notes, "python3 not found on PATH: the yardstick and the ratio are not measured")
	}
	for run := 0; run < cfg.runs; run++ {
		// "node_name":" begins the node names of both the responses and
		// their flows.
		data := bytes.ReplaceAll(capture, []byte(`"node_name":"`), []byte(fmt.Sprintf(`"node_name":"bench-replay-%d-%d-`, time.Now().UnixNano(), run)))
		path := filepath.Join(dir, fmt.Sprintf("capture-%d.jsonl", run))
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return nil, err
		}
		lines := bytes.Count(data, []byte("\n"))
		note := fmt.Sprintf("run %d: %d lines, %.0f bytes each", run+1, lines, float64(len(data))/float64(lines))
		var pyRate float64
		if pyErr == nil {
			runtime.GC()
			pyRate, err = pythonRate(ctx, python, path, lines)
			if err != nil {
				return nil, err
			}
			py.add(pyRate, "")
		}
		runtime.GC()
		res, err := replayOnce(ctx, db, path)
		if err != nil {
			return nil, err
		}
		if res.lines != lines || res.bad != 0 {
			return nil, fmt.Errorf("replay read %d lines, %d bad, of %d", res.lines, res.bad, lines)
		}
		rate := float64(res.lines) / res.wall.Seconds()
		egr.add(rate, fmt.Sprintf("%s; %d observations stored, %d lines read by protojson, last flush %d ms",
			note, res.observations, res.protojson, res.drain.Milliseconds()))
		if pyErr == nil {
			ratio.add(rate/pyRate, "")
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	return []*figure{py, egr, ratio}, nil
}

// replayCapture returns the capture's JSON lines.
func replayCapture(cfg benchConfig) ([]byte, error) {
	start := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Hour)
	resps, err := ingestFlows(cfg.replayLines, cfg.apps, cfg.dests, start)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := flowgen.WriteJSONLines(&buf, resps); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// pythonRate runs pythonJSONLoads on path and returns its lines per second.
func pythonRate(ctx context.Context, python, path string, lines int) (float64, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, python, "-c", pythonJSONLoads, path)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("python3 json.loads: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	f := strings.Fields(stdout.String())
	if len(f) != 2 {
		return 0, fmt.Errorf("python3 json.loads printed %q", stdout.String())
	}
	n, err1 := strconv.Atoi(f[0])
	secs, err2 := strconv.ParseFloat(f[1], 64)
	if err := errors.Join(err1, err2); err != nil || n != lines || secs <= 0 {
		return 0, fmt.Errorf("python3 json.loads printed %q for %d lines", stdout.String(), lines)
	}
	return float64(n) / secs, nil
}

type replayResult struct {
	lines, bad, protojson int
	observations          int64
	wall, drain           time.Duration
}

// replayOnce replays path into db as `egressd replay` does: one pipeline
// whose aggregator flushes while the file is read, then writes the rest.
func replayOnce(ctx context.Context, db *postgres.DB, path string) (replayResult, error) {
	var res replayResult
	m := collector.NewMetrics(prometheus.NewRegistry())
	agg, err := collector.NewAggregator(collector.DefaultAggregatorOptions(), db, quietLog(), m)
	if err != nil {
		return res, err
	}
	pipe, err := collector.NewPipeline(collector.DefaultOptions(), m, agg)
	if err != nil {
		return res, err
	}
	t0 := time.Now()
	stored, err := db.CursorsWithPrefix(ctx, collector.ReplaySourcePrefix)
	if err != nil {
		return res, err
	}
	pipe.ReplayFrom(stored)
	aggCtx, stopAgg := context.WithCancel(ctx)
	defer stopAgg()
	aggDone := make(chan error, 1)
	go func() { aggDone <- agg.Run(aggCtx) }()
	st, err := collector.NewReplayer().ReplayFile(ctx, path, func(msg []byte) error { return pipe.Handle("replay", msg) })
	if err != nil {
		return res, err
	}
	_ = pipe.FinishReplay() // an error is a decode error, counted as a bad line
	t1 := time.Now()
	stopAgg()
	if err := <-aggDone; err != nil {
		return res, fmt.Errorf("store replayed observations: %w", err)
	}
	res.wall, res.drain = time.Since(t0), time.Since(t1)
	res.lines, res.bad, res.protojson = st.Lines, st.BadLines, st.Protojson
	res.observations = pipe.Delivered()
	return res, nil
}
