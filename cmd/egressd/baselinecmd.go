package main

import (
	"context"

	"flag"
	"fmt"
	"time"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/baseline"
	"github.com/egressd/egressd/postgres"
)

const baselineUsage = `Usage:
  egressd baseline export --dir DIR [--window 7d] [--at RFC3339] [--prune]
  egressd baseline diff   --dir DIR [--window 7d] [--at RFC3339] [--prune]
  egressd baseline check  --dir DIR [--window 7d] [--at RFC3339] [--output text|json]
  egressd baseline policy --dir DIR [--out DIR]   (see egressd baseline policy --help)

export writes DIR/<namespace>/<app>.json for every app with allowed egress in
the window [at - window, at), merged with the files already there (unbounded,
notes and hand-written patterns survive). Files are rewritten only when their
bytes change; the same data and --at always give the same bytes.

diff prints what export would change and exits 0 when nothing, 1 on drift,
2 on error: use it as a CI check on the GitOps repository.

check replays the window against the files in DIR as they would be enforced
(exact names, patterns, ports and protocols, unbounded apps) and lists, per
app, every destination the detector would call novel and the app's policy
would drop, with its port, flows, last sighting and an example pod. It exits
0 when there is none, 1 when there is some, 2 on error: run it on a pull
request that changes baselines, and post its output for the reviewer.
`

func (c *CLI) baseline(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(c.Stderr, baselineUsage)
		return &exitError_{code: exitError}
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(c.Stdout, baselineUsage)
		return nil
	}
	switch sub {
	case "policy":
		return c.baselinePolicy(ctx, args)
	case "check":
		return c.baselineCheck(ctx, args)
	case "export", "diff":
	default:
		return usageError("baseline: unknown subcommand %q: want export, diff, check or policy", sub)
	}
	fs := flag.NewFlagSet("egressd baseline "+sub, flag.ContinueOnError)
	cm := c.commonFlags(fs)
	dir := fs.String("dir", "", "baseline directory (required)")
	window := durationFlag(fs, "window", 168*time.Hour, "how far back traffic counts")
	at := fs.String("at", "", "end of the window, RFC3339 (default: now); pins exports to reproducible bytes")
	prune := fs.Bool("prune", false, "delete files of apps without traffic in the window")
	fs.Usage = func() { fmt.Fprint(fs.Output(), baselineUsage+"\nFlags:\n"); printFlags(fs) }
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usageError("baseline %s: unexpected argument %q", sub, rest[0])
	}
	if *dir == "" {
		return usageError("baseline %s: --dir is required", sub)
	}
	end, err := windowEnd(sub, *window, *at)
	if err != nil {
		return err
	}
	db, err := openDB(ctx, cm, false)
	if err != nil {
		return err
	}
	defer db.Close()
	opts := baseline.ExportOptions{Prune: *prune}
	if sub == "export" {
		return c.baselineExport(ctx, db, *dir, end.Add(-*window), end, opts)
	}
	live, err := liveBaselines(ctx, db, end.Add(-*window), end)
	if err != nil {
		return err
	}
	if err := c.warnLost(ctx, db, "baseline "+sub, end.Add(-*window), end); err != nil {
		return err
	}
	diffs, err := baseline.Diff(*dir, live, opts)
	if werr := baseline.WriteDiff(c.Stdout, diffs); werr != nil {
		return werr
	}
	if err != nil {
		return err
	}
	if len(diffs) > 0 {
		return &exitError_{code: exitDrift, msg: fmt.Sprintf("baseline diff: %d apps drift from %s", len(diffs), *dir)}
	}
	fmt.Fprintf(c.Stderr, "baseline diff: %s matches the live window (%d apps)\n", *dir, len(live))
	return nil
}

// baselineExport exports the window [from, to) into dir as it streams from
// the database: each app's baseline is built as soon as its rows are in
// (postgres.DB.EachWindowApp) and written by the baseline.Exporter while
// the next apps' rows arrive.
func (c *CLI) baselineExport(ctx context.Context, db *postgres.DB, dir string, from, to time.Time, opts baseline.ExportOptions) error {
	facts, err := db.WindowPodFacts(ctx, from, to)
	if err != nil {
		return fmt.Errorf("read pods of window %s..%s: %w", from.Format(time.RFC3339), to.Format(time.RFC3339), err)
	}
	if err := c.warnLost(ctx, db, "baseline export", from, to); err != nil {
		return err
	}
	x, err := baseline.NewExporter(dir, opts)
	if err != nil {
		return err
	}
	pods := baseline.NewPodFacts(facts.LabelSets, facts.Resolvers)
	apps := 0
	var build baseline.Builder
	err = db.EachWindowApp(ctx, from, to, func(keys []egressd.WindowEntry) error {
		for _, e := range keys {
			build.Add(e)
		}
		for _, b := range build.Take() {
			x.Add(pods.Attach(b))
			apps++
		}
		return nil
	})
	if err != nil {
		x.Abandon()
		return fmt.Errorf("read window %s..%s: %w", from.Format(time.RFC3339), to.Format(time.RFC3339), err)
	}
	res, xerr := x.Close()
	for _, p := range res.Written {
		fmt.Fprintln(c.Stdout, "wrote", p)
	}
	for _, p := range res.Pruned {
		fmt.Fprintln(c.Stdout, "pruned", p)
	}
	fmt.Fprintf(c.Stderr, "baseline export: %d apps, %d files written, %d unchanged, %d pruned in %s\n",
		apps, len(res.Written), len(res.Unchanged), len(res.Pruned), dir)
	return xerr
}

// liveBaselines builds every app's baseline from the window [from, to),
// as the window streams from one row per destination
// (postgres.DB.EachWindowDestination).
func liveBaselines(ctx context.Context, db *postgres.DB, from, to time.Time) ([]egressd.Baseline, error) {
	var b baseline.Builder
	err := db.EachWindowDestination(ctx, from, to, func(e egressd.WindowEntry) error {
		b.Add(e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read window %s..%s: %w", from.Format(time.RFC3339), to.Format(time.RFC3339), err)
	}
	facts, err := db.WindowPodFacts(ctx, from, to)
	if err != nil {
		return nil, fmt.Errorf("read pods of window %s..%s: %w", from.Format(time.RFC3339), to.Format(time.RFC3339), err)
	}
	return baseline.AttachPods(b.Baselines(), facts.LabelSets, facts.Resolvers), nil
}

// windowEnd checks --window and returns the end of the window that --at
// names, now when it is empty.
func windowEnd(sub string, window time.Duration, at string) (time.Time, error) {
	if window <= 0 {
		return time.Time{}, usageError("baseline %s: --window must be > 0", sub)
	}
	if at == "" {
		return time.Now().UTC(), nil
	}
	end, err := time.Parse(time.RFC3339, at)
	if err != nil {
		return time.Time{}, usageError("baseline %s: --at %q: want RFC3339 such as 2026-11-08T00:00:00Z", sub, at)
	}
	return end, nil
}

// coverage returns the warnings of the nodes that lost events in
// [from, to).
func coverage(ctx context.Context, db *postgres.DB, from, to time.Time) ([]string, error) {
	losses, err := db.WindowLostEvents(ctx, from, to)
	if err != nil {
		return nil, fmt.Errorf("read lost events of window %s..%s: %w", from.Format(time.RFC3339), to.Format(time.RFC3339), err)
	}
	return baseline.CoverageWarnings(losses), nil
}

// warnLost prints, on standard error, a warning for each node that lost
// events in [from, to).
func (c *CLI) warnLost(ctx context.Context, db *postgres.DB, cmd string, from, to time.Time) error {
	warnings, err := coverage(ctx, db, from, to)
	for _, w := range warnings {
		fmt.Fprintf(c.Stderr, "%s: warning: %s\n", cmd, w)
	}
	return err
}
