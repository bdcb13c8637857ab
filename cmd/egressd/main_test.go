package main

import (
	"bytes"
	"context"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/baseline"
	"github.com/egressd/egressd/collector/flowgen"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgtest"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

func TestMain(m *testing.M) { pgtest.Main(m, removeBuilt) }

// capture is the week of home-lab traffic committed with flowgen; its ground
// truth is flowgen.Truth, and testdata/homelab-baseline holds the export
// reviewed against it.
const capture = "../../collector/flowgen/testdata/homelab-week.jsonl.gz"

const captureEnd = "2026-11-08T00:00:00Z"

type result struct {
	code   int
	stdout string
	stderr string
}

// run runs an egressd command in-process, with env as its environment.
func run(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	c := &CLI{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut, Getenv: func(k string) string { return env[k] }}
	code := c.Run(context.Background(), args)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

func dbEnv(t *testing.T) map[string]string {
	return map[string]string{"DATABASE_URL": string(pgtest.URL(t))}
}

// readTree returns every file below dir by relative path.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = string(b)
		return err
	}))
	return files
}

// TestReplayWeekExportsExactlyTheRealDestinations is the learning slice's
// acceptance test: a week of a home-lab cluster's flows (Cilium 1.19 style,
// DNS-only apps, the traps of the real samples, Relay duplicates) replayed
// with `egressd replay` exports each app's real external destinations,
// nothing internal, and the same bytes twice.
func TestReplayWeekExportsExactlyTheRealDestinations(t *testing.T) {
	t.Parallel()
	env := snapshotEnv(t, committedWeek)
	require.Contains(t, committedReplay.stderr, "0 bad lines")

	dir1, dir2 := t.TempDir(), t.TempDir()
	r := run(t, env, "baseline", "export", "--dir", dir1, "--at", captureEnd)
	require.Equal(t, 0, r.code, r.stderr)
	r = run(t, env, "baseline", "export", "--dir", dir2, "--at", captureEnd)
	require.Equal(t, 0, r.code, r.stderr)
	got := readTree(t, dir1)
	require.Equal(t, got, readTree(t, dir2), "two exports of the same data must be byte-identical")

	golden := "testdata/homelab-baseline"
	if *update {
		require.NoError(t, os.RemoveAll(golden))
		require.NoError(t, os.CopyFS(golden, os.DirFS(dir1)))
	}
	if diff := cmp.Diff(readTree(t, golden), got); diff != "" {
		t.Fatalf("export differs from %s (-want +got):\n%s", golden, diff)
	}
	// The golden files are exactly flowgen's ground truth.
	if diff := cmp.Diff(truthTable(), exportTable(t, got)); diff != "" {
		t.Fatalf("export differs from flowgen.Truth (-want +got):\n%s", diff)
	}

	// Dropped attempts are stored with their verdict, never exported.
	var denied []string
	for _, row := range destinationRows(t, env) {
		if strings.Contains(row, "DROPPED") {
			denied = append(denied, strings.Fields(row)[0]+" "+strings.Fields(row)[1])
		}
	}
	var wantDenied []string
	for _, e := range flowgen.Truth {
		for _, d := range e.Denied {
			wantDenied = append(wantDenied, e.App.String()+" "+d.String())
		}
	}
	require.ElementsMatch(t, wantDenied, denied)

	// Export again into the same directory: nothing to write; diff agrees.
	r = run(t, env, "baseline", "export", "--dir", dir1, "--at", captureEnd)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stderr, "0 files written")
	r = run(t, env, "baseline", "diff", "--dir", dir1, "--at", captureEnd)
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
}

// truthTable renders flowgen.Truth as "namespace/app name port" lines.
func truthTable() []string {
	var out []string
	for _, e := range flowgen.Truth {
		for _, d := range e.Learn {
			out = append(out, e.App.String()+" "+d.String())
		}
	}
	sort.Strings(out)
	return out
}

// exportTable renders exported files as "namespace/app name:port" lines.
func exportTable(t *testing.T, files map[string]string) []string {
	t.Helper()
	var out []string
	for path, content := range files {
		b, err := baseline.Unmarshal([]byte(content), path)
		require.NoError(t, err)
		require.Equal(t, b.Namespace+"/"+b.App+".json", path)
		for _, d := range b.Destinations {
			for _, p := range d.Ports {
				out = append(out, b.Namespace+"/"+b.App+" "+d.Name+":"+p.String())
			}
		}
	}
	sort.Strings(out)
	return out
}

func TestReplayTwiceCountsNothingTwice(t *testing.T) {
	t.Parallel()
	env := snapshotEnv(t, committedWeek)
	before := destinationRows(t, env)
	require.NotEmpty(t, before)
	r := run(t, env, "replay", capture)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stderr, " 0 observations stored")
	if diff := cmp.Diff(before, destinationRows(t, env)); diff != "" {
		t.Fatalf("a second replay changed the counts (-first +second):\n%s", diff)
	}
}

// TestReplayLegacyLinesAndStdinAndBadLines: a day of flows as legacy
// bare-flow lines, with broken lines mixed in, read from standard input,
// stores exactly what the same day as hubble observe -o jsonpb lines
// stores: the bad lines are reported and lose nothing else.
func TestReplayLegacyLinesAndStdinAndBadLines(t *testing.T) {
	t.Parallel()
	resps, err := flowgen.HomeLab(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), 24*time.Hour).Generate()
	require.NoError(t, err)
	var legacy, jsonpb bytes.Buffer
	require.NoError(t, flowgen.WriteLegacyLines(&legacy, resps))
	require.NoError(t, flowgen.WriteJSONLines(&jsonpb, resps))
	lines := strings.SplitAfter(legacy.String(), "\n")
	input := strings.Join(lines[:100], "") + "{not json\n" + strings.Join(lines[100:], "") + `{"flow":{"time":"not a time"}}` + "\n"

	env := dbEnv(t)
	r := runStdin(t, env, []byte(input), "replay", "-")
	require.Equal(t, 1, r.code, r.stderr)
	require.Contains(t, r.stderr, "stdin:101: ")
	require.Contains(t, r.stderr, "2 lines could not be read")

	want := dbEnv(t)
	r = runStdin(t, want, jsonpb.Bytes(), "replay", "-")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stderr, "0 bad lines")
	wantRows := destinationRows(t, want)
	require.NotEmpty(t, wantRows)
	if diff := cmp.Diff(wantRows, destinationRows(t, env)); diff != "" {
		t.Fatalf("legacy lines with bad lines stored otherwise (-jsonpb +legacy):\n%s", diff)
	}
}

func TestBaselineDiffAndHandEdits(t *testing.T) {
	t.Parallel()
	env := snapshotEnv(t, committedWeek)
	dir := t.TempDir()
	require.Equal(t, 0, run(t, env, "baseline", "export", "--dir", dir, "--at", captureEnd).code)

	// Drift: a destination removed from a file by hand.
	path := filepath.Join(dir, "media", "recyclarr.json")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	edited := strings.Replace(string(b), `"api.github.com"`, `"api.gitlab.com"`, 1)
	require.NoError(t, os.WriteFile(path, []byte(edited), 0o644))
	r := run(t, env, "baseline", "diff", "--dir", dir, "--at", captureEnd)
	require.Equal(t, 1, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, "media/recyclarr")
	require.Contains(t, r.stdout, "+ api.github.com 443/TCP")
	require.Contains(t, r.stdout, "- api.gitlab.com 443/TCP")

	// Hand edits that survive: unbounded, notes, patterns.
	hand := `{
  "apiVersion": "egressd.io/v1",
  "kind": "EgressBaseline",
  "namespace": "media",
  "app": "recyclarr",
  "unbounded": true,
  "note": "reviewed by ops",
  "destinations": [
    {"name": "*.githubusercontent.com", "ports": ["443/TCP"], "note": "GitHub CDN"}
  ]
}
`
	require.NoError(t, os.WriteFile(path, []byte(hand), 0o644))
	require.Equal(t, 0, run(t, env, "baseline", "export", "--dir", dir, "--at", captureEnd).code)
	b, err = os.ReadFile(path)
	require.NoError(t, err)
	s := string(b)
	require.Contains(t, s, `"unbounded": true`)
	require.Contains(t, s, `"note": "reviewed by ops"`)
	require.Contains(t, s, `"*.githubusercontent.com"`)
	require.Contains(t, s, `"note": "GitHub CDN"`)
	require.Contains(t, s, `"api.github.com"`)
	require.NotContains(t, s, `"raw.githubusercontent.com"`, "a name the pattern covers is folded into it")
	require.Equal(t, 0, run(t, env, "baseline", "diff", "--dir", dir, "--at", captureEnd).code)
}

func TestCommandErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"no command", nil, nil, 2, "Usage"},
		{"unknown command", nil, []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"replay without files", nil, []string{"replay"}, 2, "no input"},
		{"replay without database", nil, []string{"replay", "x.json"}, 2, "set --database-url or DATABASE_URL"},
		{"export without dir", nil, []string{"baseline", "export"}, 2, "--dir is required"},
		{"bad --at", nil, []string{"baseline", "diff", "--dir", "x", "--at", "yesterday"}, 2, "--at \"yesterday\": want RFC3339"},
		{"bad cidr", map[string]string{"DATABASE_URL": "postgres://x@127.0.0.1:1/x"}, []string{"replay", "--internal-cidrs", "10.0.0.0/33", "f"}, 2, `--internal-cidrs: invalid CIDR "10.0.0.0/33"`},
		{"bad precedence", map[string]string{"DATABASE_URL": "postgres://x@127.0.0.1:1/x"}, []string{"replay", "--app-precedence", "workload,owner", "f"}, 2, `AppPrecedence entry "owner"`},
		{"serve without hubble", nil, []string{"serve"}, 2, "--hubble-address is required"},
		{"unknown flag", nil, []string{"replay", "--frob"}, 2, "flag provided but not defined: --frob"},
		{"missing file", map[string]string{}, []string{"replay", "--database-url", "", "nope.json"}, 2, "set --database-url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, tt.env, tt.args...)
			require.Equal(t, tt.code, r.code, r.stderr)
			require.Contains(t, r.stderr+r.stdout, tt.want)
		})
	}
}

func TestReplayMissingFileNamesIt(t *testing.T) {
	t.Parallel()
	r := run(t, dbEnv(t), "replay", "does-not-exist.jsonl")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "does-not-exist.jsonl")
}

func TestDatabaseURLIsNeverPrinted(t *testing.T) {
	t.Parallel()
	url := "postgres://egressd:s3cret-password@127.0.0.1:1/egressd?connect_timeout=1"
	r := run(t, map[string]string{"DATABASE_URL": url}, "migrate")
	require.Equal(t, 2, r.code)
	require.NotContains(t, r.stderr+r.stdout, "s3cret-password")
}

func destinationRows(t *testing.T, env map[string]string) []string {
	t.Helper()
	opts := postgres.DefaultOptions()
	opts.URL = postgres.DSN(env["DATABASE_URL"])
	db, err := postgres.Open(context.Background(), opts)
	require.NoError(t, err)
	defer db.Close()
	return rowsOf(t, db)
}

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }

// TestUsageHidesTheDatabasePassword: every command prints its flags'
// defaults on --help, and --database-url's comes from $DATABASE_URL; a
// mistake prints no usage at all.
func TestUsageHidesTheDatabasePassword(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "postgres://egressd:s3cret-password@db.example:5432/egressd"}
	for _, cmd := range [][]string{{"serve"}, {"migrate"}, {"replay"}, {"baseline", "export"}, {"accept"}, {"demo"}} {
		r := run(t, env, append(cmd, "--help")...)
		require.Equal(t, 0, r.code, "%v", cmd)
		require.Contains(t, r.stdout, "--database-url", "%v prints its flags", cmd)
		if cmd[0] == "demo" {
			require.NotContains(t, r.stdout, "db.example", "the demo takes no database from the environment")
		} else {
			require.Contains(t, r.stdout, "db.example", "%v shows the default, redacted", cmd)
		}
		require.NotContains(t, r.stderr+r.stdout, "s3cret-password", "%v", cmd)

		r = run(t, env, append(cmd, "--frob")...)
		require.Equal(t, 2, r.code, "%v", cmd)
		require.NotContains(t, r.stderr+r.stdout, "s3cret-password", "%v", cmd)
	}
}
