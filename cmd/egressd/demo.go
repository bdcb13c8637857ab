package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	"github.com/egressd/egressd/baseline"
	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/collector/flowgen"
	"github.com/egressd/egressd/postgres"
)

// demoStart is where the bundled week of traffic begins.
var demoStart = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

func (c *CLI) demo(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("egressd demo", flag.ContinueOnError)
	cm := c.commonFlags(fs)
	dir := fs.String("dir", "", "where to write the baselines (default: a new temporary directory)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: egressd demo [flags]

Runs a week of a small home-lab cluster's Hubble traffic (generated, the same
as collector/flowgen/testdata/homelab-week.jsonl.gz) through the real
pipeline into PostgreSQL, then exports and prints the baselines it learned.
Without --database-url or DATABASE_URL it starts a throwaway PostgreSQL from
the local binaries and deletes it afterwards.

Flags:
`)
		fs.PrintDefaults()
	}
	if rest, err := parseArgs(fs, args); err != nil {
		return err
	} else if len(rest) > 0 {
		return usageError("demo: unexpected argument %q", rest[0])
	}
	log, err := c.logger(cm)
	if err != nil {
		return err
	}
	out := c.Stdout

	if cm.databaseURL == "" {
		fmt.Fprintln(out, "==> starting a throwaway PostgreSQL (set DATABASE_URL to use yours)")
		eph, err := postgres.StartEphemeral(ctx, postgres.EphemeralOptions{})
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		defer eph.Close()
		cm.databaseURL = string(eph.URL())
	}
	db, err := openDB(ctx, cm, true)
	if err != nil {
		return err
	}
	defer db.Close()

	scenario := flowgen.HomeLab(demoStart, 7*24*time.Hour)
	resps, err := scenario.Generate()
	if err != nil {
		return fmt.Errorf("demo: generate traffic: %w", err)
	}
	fmt.Fprintf(out, "==> replaying %d Hubble records: a week of cluster %q (%s .. %s)\n",
		len(resps), scenario.Cluster, scenario.Start.Format(time.RFC3339), scenario.Start.Add(scenario.Duration).Format(time.RFC3339))

	m := collector.NewMetrics(prometheus.NewRegistry())
	opts := collector.DefaultOptions()
	agg, err := collector.NewAggregator(collector.DefaultAggregatorOptions(), db, log.With("component", "aggregator"), m)
	if err != nil {
		return err
	}
	pipe, err := collector.NewPipeline(opts, m, agg)
	if err != nil {
		return err
	}
	aggCtx, stopAgg := context.WithCancel(ctx)
	defer stopAgg()
	var g errgroup.Group
	g.Go(func() error { return agg.Run(aggCtx) })
	// Each record takes the live path: encoded bytes into the pipeline.
	var buf []byte
	for i, r := range resps {
		buf, err = proto.MarshalOptions{}.MarshalAppend(buf[:0], r)
		if err != nil {
			return fmt.Errorf("demo: encode record %d: %w", i, err)
		}
		_ = pipe.Handle("demo", buf)
	}
	stopAgg()
	if err := g.Wait(); err != nil {
		return err
	}
	printCounters(out, m)

	if *dir == "" {
		*dir, err = os.MkdirTemp("", "egressd-demo-")
		if err != nil {
			return err
		}
	}
	end := scenario.Start.Add(scenario.Duration)
	live, err := liveBaselines(ctx, db, end.Add(-168*time.Hour), end)
	if err != nil {
		return err
	}
	res, err := baseline.Export(*dir, live, baseline.ExportOptions{})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "==> exported %d baselines to %s (the same as: egressd baseline export --dir %s --at %s)\n\n",
		len(live), *dir, *dir, end.Format(time.RFC3339))
	for _, p := range append(res.Written, res.Unchanged...) {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(*dir, p)
		fmt.Fprintf(out, "--- %s\n%s\n", rel, b)
	}
	return nil
}

func printCounters(w io.Writer, m *collector.Metrics) {
	fmt.Fprintf(w, "    observations: %s\n    skipped flows:  %s\n", counterSummary(m.Observations), counterSummary(m.Skipped))
}

// counterSummary prints a counter vector's non-zero values as label=value.
func counterSummary(v *prometheus.CounterVec) string {
	ch := make(chan prometheus.Metric, 64)
	go func() { v.Collect(ch); close(ch) }()
	var parts []string
	for metric := range ch {
		var d dto.Metric
		if err := metric.Write(&d); err != nil || len(d.GetLabel()) == 0 {
			continue
		}
		if n := d.GetCounter().GetValue(); n > 0 {
			parts = append(parts, fmt.Sprintf("%s=%.0f", d.GetLabel()[0].GetValue(), n))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
