package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/egressd/egressd/baseline"
)

// baselineCheck runs `egressd baseline check`; args follow "check".
func (c *CLI) baselineCheck(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("egressd baseline check", flag.ContinueOnError)
	cm := c.commonFlags(fs)
	dir := fs.String("dir", "", "baseline directory to check (required)")
	window := durationFlag(fs, "window", 168*time.Hour, "how far back traffic is replayed")
	at := fs.String("at", "", "end of the window, RFC3339 (default: now)")
	output := fs.String("output", "text", "text, or json for CI bots")
	fs.Usage = func() { fmt.Fprint(fs.Output(), baselineUsage+"\nFlags:\n"); printFlags(fs) }
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(rest) > 0:
		return usageError("baseline check: unexpected argument %q", rest[0])
	case *dir == "":
		return usageError("baseline check: --dir is required")
	case *output != "text" && *output != "json":
		return usageError("baseline check: --output %q: want text or json", *output)
	}
	end, err := windowEnd("check", *window, *at)
	if err != nil {
		return err
	}
	files, err := baseline.LoadDir(*dir)
	if err != nil {
		// A file that cannot be read cannot be enforced either: the
		// check fails rather than judge without it.
		for _, e := range flattenErrors(err) {
			fmt.Fprintln(c.Stderr, "baseline check:", e)
		}
		return &exitError_{code: exitError, msg: fmt.Sprintf("baseline check: cannot read the baselines in %s", *dir)}
	}
	db, err := openDB(ctx, cm, false)
	if err != nil {
		return err
	}
	defer db.Close()
	from := end.Add(-*window)
	entries, err := db.WindowEntries(ctx, from, end)
	if err != nil {
		return fmt.Errorf("baseline check: read window %s..%s: %w", from.Format(time.RFC3339), end.Format(time.RFC3339), err)
	}
	report := baseline.Check(files, entries)
	report.From, report.To = from.UTC(), end.UTC()
	if report.Coverage, err = coverage(ctx, db, from, end); err != nil {
		return fmt.Errorf("baseline check: %w", err)
	}
	if *output == "json" {
		err = baseline.WriteCheckJSON(c.Stdout, report)
	} else {
		err = baseline.WriteCheckText(c.Stdout, report)
	}
	if err != nil {
		return fmt.Errorf("baseline check: write standard output: %w", err)
	}
	if report.Failed() {
		return &exitError_{code: exitDrift, msg: fmt.Sprintf("baseline check: %d destinations of the window would be novel or dropped under %s", len(report.Findings), *dir)}
	}
	fmt.Fprintf(c.Stderr, "baseline check: %s allows everything the window saw (%d apps checked, %d without a file)\n", *dir, report.Checked, len(report.WithoutFile))
	return nil
}
