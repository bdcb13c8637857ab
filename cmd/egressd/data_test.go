package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/cilium/api/v1/observer"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/collector/flowgen"
	"github.com/egressd/egressd/collector/hubbletest"
	"github.com/egressd/egressd/detector"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgtest"
)

// openEnvDB opens the database of env for the test's own checks.
func openEnvDB(t *testing.T, env map[string]string) *postgres.DB {
	t.Helper()
	opts := postgres.DefaultOptions()
	opts.URL = postgres.DSN(env["DATABASE_URL"])
	db, err := postgres.Open(context.Background(), opts)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	return db
}

// runStdin runs an egressd command in-process with stdin as its input.
func runStdin(t *testing.T, env map[string]string, stdin []byte, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	c := &CLI{Stdin: bytes.NewReader(stdin), Stdout: &out, Stderr: &errOut, Getenv: func(k string) string { return env[k] }}
	code := c.Run(context.Background(), args)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// gunzipFile returns the decompressed content of a .gz file.
func gunzipFile(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	b, err := io.ReadAll(zr)
	require.NoError(t, err)
	return b
}

// homeLab returns d of generated home-lab traffic from start as JSON lines:
// smaller than the committed week, so that the tests that replay it several
// times stay quick.
func homeLab(t *testing.T, start time.Time, d time.Duration) []byte {
	t.Helper()
	resps, err := flowgen.HomeLab(start, d).Generate()
	require.NoError(t, err)
	return captureLines(t, resps)
}

// captureLines returns resps as hubble observe -o jsonpb lines.
func captureLines(t *testing.T, resps []*observer.GetFlowsResponse) []byte {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, flowgen.WriteJSONLines(&b, resps))
	return b.Bytes()
}

// writeCapture writes resps into path as hubble observe -o jsonpb lines.
func writeCapture(t *testing.T, path string, resps []*observer.GetFlowsResponse) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, captureLines(t, resps), 0o600))
}

// writeFile writes b into dir/name and returns the path.
func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, b, 0o600))
	return p
}

// gzipBytes compresses b.
func gzipBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	_, err := zw.Write(b)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return out.Bytes()
}

// october1 starts the generated captures, weeks before the tests' now.
var october1 = time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)

var storedRe = regexp.MustCompile(`(\d+) observations stored`)

// storedCount reads "N observations stored" from a replay's output.
func storedCount(t *testing.T, stderr string) int {
	t.Helper()
	m := storedRe.FindStringSubmatch(stderr)
	require.NotNil(t, m, stderr)
	n, err := strconv.Atoi(m[1])
	require.NoError(t, err)
	return n
}

// TestReplayCountsFlowsOnceWhateverTheirInput: the same flows from a file,
// standard input, a renamed plain copy and a gzip copy are stored once.
func TestReplayCountsFlowsOnceWhateverTheirInput(t *testing.T) {
	t.Parallel()
	env := dbEnv(t)
	plain := homeLab(t, october1, 6*time.Hour)
	r := runStdin(t, env, plain, "replay", "-")
	require.Equal(t, 0, r.code, r.stderr)
	require.Positive(t, storedCount(t, r.stderr))
	before := destinationRows(t, env)

	dir := t.TempDir()
	gz := gzipBytes(t, plain)
	original := writeFile(t, dir, "capture.jsonl.gz", gz)
	renamed := writeFile(t, dir, "renamed.jsonl", plain)
	gzCopy := writeFile(t, t.TempDir(), "copy.json.gz", gz)

	for _, in := range []struct {
		name  string
		args  []string
		stdin []byte
	}{
		{"a gzip file by its path", []string{"replay", original}, nil},
		{"standard input again", []string{"replay", "-"}, plain},
		{"gzip on standard input", []string{"replay", "-"}, gz},
		{"a renamed copy", []string{"replay", renamed}, nil},
		{"a gzip copy", []string{"replay", gzCopy}, nil},
	} {
		r := runStdin(t, env, in.stdin, in.args...)
		require.Equal(t, 0, r.code, "%s: %s", in.name, r.stderr)
		require.Equal(t, 0, storedCount(t, r.stderr), "%s: %s", in.name, r.stderr)
		require.Contains(t, r.stderr, "already_stored", in.name)
		require.Equal(t, before, destinationRows(t, env), "%s changed the stored counts", in.name)
	}
}

// TestReplayDifferentCapturesOnStdin: two captures piped one after the other
// are both stored, each as it would be alone.
func TestReplayDifferentCapturesOnStdin(t *testing.T) {
	t.Parallel()
	a := homeLab(t, october1, 6*time.Hour)
	b := homeLab(t, october1.AddDate(0, 0, 4), 6*time.Hour)

	both := dbEnv(t)
	ra := runStdin(t, both, a, "replay", "-")
	require.Equal(t, 0, ra.code, ra.stderr)
	rb := runStdin(t, both, b, "replay", "-")
	require.Equal(t, 0, rb.code, rb.stderr)

	alone := dbEnv(t)
	rbAlone := runStdin(t, alone, b, "replay", "-")
	require.Equal(t, 0, rbAlone.code, rbAlone.stderr)
	require.Positive(t, storedCount(t, rbAlone.stderr))
	require.Equal(t, storedCount(t, rbAlone.stderr), storedCount(t, rb.stderr), "the second capture on stdin is stored whole:\n%s", rb.stderr)
	require.NotContains(t, rb.stderr, "already_stored")
}

// TestReplayExplainsWhatWasNotKept: the statistics account for every flow
// record, one line per reason, and the hint to export an old capture.
func TestReplayExplainsWhatWasNotKept(t *testing.T) {
	t.Parallel()
	env := dbEnv(t)
	r := run(t, env, "replay", writeFile(t, t.TempDir(), "day.jsonl", homeLab(t, october1, 24*time.Hour)))
	require.Equal(t, 0, r.code, r.stderr)
	t.Log(r.stderr)
	m := regexp.MustCompile(`: (\d+) flow records, (\d+) observations stored`).FindStringSubmatch(r.stderr)
	require.NotNil(t, m, r.stderr)
	records, _ := strconv.Atoi(m[1])
	stored, _ := strconv.Atoi(m[2])
	notKept := regexp.MustCompile(`not kept: (\d+)\n`).FindStringSubmatch(r.stderr)
	require.NotNil(t, notKept, r.stderr)
	total, _ := strconv.Atoi(notKept[1])
	require.Equal(t, records, stored+total, "every flow record is kept or has a reason:\n%s", r.stderr)
	sum := 0
	for _, line := range regexp.MustCompile(`(?m)^ +(\d+)  ([a-z_]+(: [a-z_]+)?): `).FindAllStringSubmatch(r.stderr, -1) {
		n, _ := strconv.Atoi(line[1])
		sum += n
	}
	require.Equal(t, total, sum, r.stderr)
	for _, reason := range []string{"reply:", "in_cluster:", "internal_cidr:", "not_egress:", "dns_answer:", "duplicate:"} {
		require.Contains(t, r.stderr, reason)
	}
	// The capture ends on 2026-10-02, weeks before now.
	require.Regexp(t, `older than the default baseline window \(168h\) before now: export it with\n  egressd baseline export --dir DIR --at 2026-10-0[12]T`, r.stderr)
	at := regexp.MustCompile(`--at (\S+)`).FindStringSubmatch(r.stderr)[1]
	dir := t.TempDir()
	e := run(t, env, "baseline", "export", "--dir", dir, "--at", at)
	require.Equal(t, 0, e.code, e.stderr)
	require.NotContains(t, e.stderr, " 0 apps", "the suggested --at exports the capture")
}

// TestAcceptUnknownApp: a typo in the app is an error, unless forced.
func TestAcceptUnknownApp(t *testing.T) {
	t.Parallel()
	env := dbEnv(t)
	require.Equal(t, 0, runStdin(t, env, homeLab(t, october1, 6*time.Hour), "replay", "-").code)

	r := run(t, env, "accept", "nosuch/app", "api.github.com:443")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "unknown app nosuch/app; --force to accept ahead of its first flow")
	r = run(t, env, "accept", "--cluster", "elsewhere", "media/recyclarr", "api.github.com:443")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "unknown app media/recyclarr in cluster elsewhere")
	acc, err := openEnvDB(t, env).AcceptedAll(context.Background())
	require.NoError(t, err)
	require.Empty(t, acc)

	r = run(t, env, "accept", "media/recyclarr", "api.github.com:443")
	require.Equal(t, 0, r.code, r.stderr)
	r = run(t, env, "accept", "--force", "nosuch/app", "api.github.com:443")
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout, "accepted api.github.com:443/TCP for nosuch/app")
	acc, err = openEnvDB(t, env).AcceptedAll(context.Background())
	require.NoError(t, err)
	require.Len(t, acc, 2)
}

// TestRetentionFollowsTheNewestFlow: serve's retention after a replay of
// an old capture measures the period back from the capture's newest flow,
// not from the wall clock, which would delete it all.
func TestRetentionFollowsTheNewestFlow(t *testing.T) {
	t.Parallel()
	env := dbEnv(t)
	require.Equal(t, 0, runStdin(t, env, homeLab(t, october1, 3*24*time.Hour), "replay", "-").code)
	db := openEnvDB(t, env)
	ctx := context.Background()
	days, err := db.HourlyPartitions(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, days)
	newest := days[len(days)-1]

	_, addr := startHubble(t, hubbletest.Options{})
	co := collector.DefaultClientOptions()
	co.Address = addr
	var logs faultLog
	cfg := ServeConfig{DB: db, Client: co, Pipeline: collector.DefaultOptions(), Aggregate: collector.DefaultAggregatorOptions(),
		Listen: "127.0.0.1:0", Detect: detector.DefaultOptions(), Retention: 24 * time.Hour}
	m, err := NewMain(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx) }()
	waitUntil(t, "retention drops the capture's first days", func() bool { return strings.Contains(logs.String(), "retention_dropped_days") })
	cancel()
	require.NoError(t, <-done)

	days, err = db.HourlyPartitions(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, days, "the capture's last days survive:\n%s", logs.String())
	require.Equal(t, newest, days[len(days)-1])
	require.Len(t, days, 2, "the first of three days is dropped, the last two are kept: %v", days)
	apps, err := db.Apps(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, apps)
}

// clockFlow is an egress flow of shop/web to name, stamped at.
func clockFlow(at time.Time, name string) *observer.GetFlowsResponse {
	f := hubbletest.NewFlow(hubbletest.FlowSpec{Node: "node-1",
		Src: hubbletest.PodEndpoint("shop", "web-5d8f7c9b4-x2x9z", "10.0.1.5", "k8s:app=web"),
		Dst: hubbletest.WorldEndpoint("93.184.216.34", 443, name)})
	f.Time = &timestamppb.Timestamp{Seconds: at.Unix(), Nanos: int32(at.Nanosecond())}
	return hubbletest.Response(f)
}

// rawTimeFlow is clockFlow with a time in seconds that time.Time may not
// even hold as nanoseconds.
func rawTimeFlow(sec int64, name string) *observer.GetFlowsResponse {
	r := clockFlow(time.Unix(0, 0), name)
	r.GetFlow().Time = &timestamppb.Timestamp{Seconds: sec}
	r.Time = r.GetFlow().Time
	return r
}

func destinationNames(t *testing.T, db *postgres.DB) []string {
	t.Helper()
	var out []string
	for _, row := range rowsOf(t, db) {
		name, _, _ := strings.Cut(strings.Fields(row)[1], ":")
		out = append(out, name)
	}
	return out
}

// TestServeRejectsFutureFlowsAndKeepsCollecting: flows stamped 2100 and in
// year 9999 among real ones are rejected and counted, move no cursor, and a
// restart goes on collecting (real Hubble test server, real PostgreSQL).
func TestServeRejectsFutureFlowsAndKeepsCollecting(t *testing.T) {
	t.Parallel()
	srv, addr := startHubble(t, hubbletest.Options{})
	db := pgtest.NewDB(t)
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	httpAddr, stop := startServe(t, db, addr)
	// Without a cursor, the stream starts with the flows after it opens.
	require.NoError(t, srv.WaitStreams(context.Background(), 1))
	srv.Add(
		clockFlow(base, "before.example"),
		clockFlow(time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), "year2100.example"),
		rawTimeFlow(time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC).Unix(), "year9999.example"),
		clockFlow(base.Add(time.Minute), "between.example"),
	)
	waitUntil(t, "the real flows are stored", func() bool {
		return slices.Contains(destinationNames(t, db), "between.example")
	})
	require.Equal(t, 2.0, faultMetric(httpAddr, `egressd_flows_rejected_total{reason="clock"}`))
	stop()
	cur, err := db.Cursor(context.Background(), "hubble:"+addr)
	require.NoError(t, err)
	require.Equal(t, base.Add(time.Minute).UTC(), cur, "the rejected flows moved no cursor")
	require.ElementsMatch(t, []string{"before.example", "between.example"}, destinationNames(t, db))

	srv.Add(clockFlow(base.Add(2*time.Minute), "after-restart.example"))
	_, stop = startServe(t, db, addr)
	waitUntil(t, "the flow after the restart is stored", func() bool {
		return slices.Contains(destinationNames(t, db), "after-restart.example")
	})
	stop()
	parts, err := db.HourlyPartitions(context.Background())
	require.NoError(t, err)
	for _, d := range parts {
		require.True(t, d.Year() == base.Year() || d.Year() == base.Add(time.Hour).Year(), "partition of %s", d)
	}
}

// TestServeRepairsACursorPoisonedByAnOlderVersion: a cursor stored in 2100
// (by a version that accepted such flows) is set back at start from the
// stored data, so the real flows after it are collected.
func TestServeRepairsACursorPoisonedByAnOlderVersion(t *testing.T) {
	t.Parallel()
	srv, addr := startHubble(t, hubbletest.Options{})
	db := pgtest.NewDB(t)
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	app := egressd.App{Cluster: "default", Namespace: "shop", Name: "web"}
	require.NoError(t, db.WriteRollup(context.Background(), &egressd.Rollup{
		Destinations: []egressd.DestinationRollup{{App: app, Destination: egressd.Destination{Name: "before.example", Port: 443, Protocol: egressd.ProtoTCP},
			FirstSeen: base, LastSeen: base, Flows: 1, Verdicts: egressd.VerdictSet(0).Add(egressd.VerdictForwarded)}},
		Cursors: []egressd.Cursor{{Source: "hubble:" + addr, Time: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)}},
	}))
	srv.Add(clockFlow(base, "before.example"), clockFlow(base.Add(time.Minute), "after.example"))
	_, stop := startServe(t, db, addr)
	waitUntil(t, "the flow after the stored data is collected", func() bool {
		return slices.Contains(destinationNames(t, db), "after.example")
	})
	stop()
	rows := rowsOf(t, db)
	require.Len(t, rows, 2)
	require.Contains(t, rows[0], " 1/0 ", "the flow at the repaired cursor is not counted twice: %v", rows)
}
