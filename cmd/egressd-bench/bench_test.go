package main

import (
	"bytes"
	"context"
	"os/exec"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/postgres/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestBenchPrintsEveryFigure runs egressd-bench small: every figure of
// the performance table (BENCHMARKS.md) is measured and printed with its target, the ingest run
// through loopback gRPC and PostgreSQL loses no flow, and the decoder
// allocates nothing. Times are printed, never asserted. Not parallel: the
// decoder's allocations are counted for the whole process, so it runs
// before the parallel tests (TestBenchPerNode) start allocating.
func TestBenchPrintsEveryFigure(t *testing.T) {
	env := map[string]string{"DATABASE_URL": string(pgtest.URL(t))}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--runs", "1", "--flows", "5000", "--apps", "20", "--keys", "5000",
		"--alerts", "10", "--export-apps", "50", "--decode-time", "100ms", "--replay-lines", "2000"}, &stdout, &stderr, func(k string) string { return env[k] })
	require.Equal(t, 0, code, stderr.String())
	r := struct{ stdout string }{stdout.String()}
	// Figures that may be 0.
	for _, name := range []string{"decode allocs/flow", "ingest last flush", "ingest lost flows"} {
		require.Regexp(t, `(?m)^`+regexp.QuoteMeta(name)+` +median +[0-9.]+ `, r.stdout, "figure %q", name)
	}
	// Figures that are positive, min to max, or the measurement is
	// broken (the heap per key once printed -519.125 and MET).
	positive := `[0-9.]*[1-9][0-9.]*`
	for _, name := range []string{
		"decode selective/full",
		"ingest raw client", "ingest egressd", "ingest egressd/raw",
		"flow->alert p99", "memory heap/key", "flush 10k new keys", "flush 10k known keys", "export 50 apps x 20",
		"replay egressd",
	} {
		require.Regexp(t, `(?m)^`+regexp.QuoteMeta(name)+` +median +`+positive+` +min +`+positive+` +max +`+positive+` `, r.stdout, "figure %q", name)
	}
	// The replay figure's yardstick is Python's json.loads: without
	// python3 the harness says so instead of measuring it.
	if _, err := exec.LookPath("python3"); err != nil {
		require.Contains(t, r.stdout, "python3 not found on PATH")
		require.Regexp(t, `(?m)^replay egressd/python +\(not measured\) target >= 1\.5x NOT MET$`, r.stdout)
	} else {
		for _, name := range []string{"replay python json.loads", "replay egressd/python"} {
			require.Regexp(t, `(?m)^`+regexp.QuoteMeta(name)+` +median +`+positive+` +min +`+positive+` +max +`+positive+` `, r.stdout, "figure %q", name)
		}
		require.Regexp(t, `(?m)^replay egressd/python +median .* target >= 1\.5x +(MET|NOT MET)$`, r.stdout)
		require.NotContains(t, r.stdout, "not measured")
	}
	require.Regexp(t, `(?m)^ingest lost flows +median +0\.000 +min +0\.000 +max +0\.000 +flows +target 0 +MET$`, r.stdout)
	if !raceEnabled {
		require.Regexp(t, `(?m)^decode allocs/flow +median +0\.000 +min +0\.000 +max +0\.000 +allocs +target 0 +MET$`, r.stdout)
	}
	require.Regexp(t, `observed [1-9][0-9]*, stored [1-9][0-9]*, dropped 0`, r.stdout)
	// The replay figure reads every line of the capture with the fast
	// path, and stores what it reads.
	require.Regexp(t, `run 1: 2000 lines, [0-9]+ bytes each; [1-9][0-9]* observations stored, 0 lines read by protojson`, r.stdout)
}

func TestBenchUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--only", "nothing"}, `--only "nothing": want some of decode,ingest,latency,memory,flush,export,pernode,replay`},
		{[]string{"--replay-lines", "10"}, "--replay-lines must be >= 1000"},
		{[]string{"--runs", "0"}, "--runs must be >= 1"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tc.args, &stdout, &stderr, func(string) string { return "" })
		require.Equal(t, 2, code, tc.args)
		require.Contains(t, stderr.String(), tc.want)
	}
}

// TestBenchUsageHidesTheDatabasePassword: a mistake prints the flags'
// defaults, --database-url's from $DATABASE_URL, redacted.
func TestBenchUsageHidesTheDatabasePassword(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "postgres://egressd:s3cret-password@db.example:5432/egressd"}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--frob"}, &stdout, &stderr, func(k string) string { return env[k] })
	require.Equal(t, 2, code)
	require.Contains(t, stderr.String(), "db.example")
	require.NotContains(t, stderr.String()+stdout.String(), "s3cret-password")
}
