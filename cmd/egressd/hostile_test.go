package main

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/collector/hubbletest"
	"github.com/egressd/egressd/postgres"
)

// Placeholders replaced, after encoding, by bytes that are not UTF-8 (the
// protobuf encoder refuses those in strings; Hubble's stream may not).
const (
	badUTF8Namespace = "Xbadutf8namespaceX"
	badUTF8Label     = "Xbadutf8labelvaluX"
	badUTF8Name      = "Xbadutf8dnsnameXXX"
	badUTF8Workload  = "Xbadutf8workloadXX"
	badUTF8Pod       = "Xbadutf8podnameXXX"
	sqlLooking       = "'; DROP TABLE apps; --"
)

// TestHostileFlowsStayContained pushes flows with hostile values through the
// real decoder and pipeline into PostgreSQL and out as baseline files: no
// panic; the normal flows sent alongside are stored; what is stored is
// bounded and UTF-8; every file export writes is inside its directory; and
// every hostile flow shows in a counter rather than vanishing.
func TestHostileFlowsStayContained(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := dbEnv(t)
	opts := postgres.DefaultOptions()
	opts.URL = postgres.DSN(env["DATABASE_URL"])
	db, err := postgres.Open(ctx, opts)
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.Migrate(ctx))

	reg := prometheus.NewRegistry()
	metrics := collector.NewMetrics(reg)
	aggOpts := collector.DefaultAggregatorOptions()
	aggOpts.FlushInterval = time.Hour // one flush, at the end
	agg, err := collector.NewAggregator(aggOpts, db, slog.New(slog.NewTextHandler(io.Discard, nil)), metrics)
	require.NoError(t, err)
	pipe, err := collector.NewPipeline(collector.DefaultOptions(), metrics, agg)
	require.NoError(t, err)
	aggCtx, stopAgg := context.WithCancel(ctx)
	aggDone := make(chan error, 1)
	go func() { aggDone <- agg.Run(aggCtx) }()

	start := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	n := 0
	at := func() time.Time { n++; return start.Add(time.Duration(n) * time.Second) }
	world := func(port uint32, names ...string) hubbletest.Endpoint {
		return hubbletest.WorldEndpoint("93.184.216.34", port, names...)
	}
	pod := func(ns, pod string, labels ...string) hubbletest.Endpoint {
		return hubbletest.PodEndpoint(ns, pod, "10.0.1.5", labels...)
	}
	normalSrc := pod("shop", "web-5d8f7c9b4-x2x9z", "k8s:app=web")
	connect := func(src, dst hubbletest.Endpoint) *flowpb.Flow {
		return hubbletest.NewFlow(hubbletest.FlowSpec{Time: at(), Node: "node-1", Src: src, Dst: dst})
	}
	dnsQuery := func(src hubbletest.Endpoint, q string) *flowpb.Flow {
		return hubbletest.NewFlow(hubbletest.FlowSpec{Time: at(), Node: "node-1", Src: src, Protocol: "UDP",
			Dst: hubbletest.Endpoint{IP: "10.96.0.10", Port: 53, Namespace: "kube-system", Pod: "coredns-1"},
			DNS: &flowpb.DNS{Query: q}})
	}

	huge := strings.Repeat("a", 1<<20)
	manyLabels := []string{"k8s:app=many"}
	for i := range 10000 {
		manyLabels = append(manyLabels, "k8s:l"+strconv.Itoa(i)+"=v")
	}
	longName := strings.Repeat("abcdefghi.", 30) + "com" // 303 bytes
	longLabel := strings.Repeat("x", 64) + ".example.com"
	escapes := []string{"../../etc", "..", ".", "/", "/etc/cron.d", "%2e%2e", "%2e%2e%2f", "..%2f..%2f", "a/../../b", `..\..\w`}
	controls := []string{"shop\x00", "sh\nop", "web\x00evil", "\x1b[31mred", "tab\there", "\x7f"}

	type hostile struct {
		name string
		flow *flowpb.Flow
	}
	var hs []hostile
	for _, e := range append(append(escapes, controls...), sqlLooking) {
		q := strconv.Quote(e)
		hs = append(hs,
			hostile{"namespace " + q, connect(pod(e, "web-1", "k8s:app=web"), world(443, "api.example.com"))},
			hostile{"app label " + q, connect(pod("shop", "", "k8s:app="+e), world(443, "api.example.com"))},
			hostile{"workload " + q, connect(hubbletest.Endpoint{IP: "10.0.1.6", Namespace: "shop", Workload: e,
				Labels: []string{"k8s:io.kubernetes.pod.namespace=shop"}}, world(443, "api.example.com"))},
			hostile{"pod " + q, connect(pod("shop", e), world(443, "api.example.com"))},
			hostile{"cluster " + q, connect(hubbletest.Endpoint{IP: "10.0.1.5", Namespace: "shop", Pod: "web-1", ClusterName: e,
				Labels: []string{"k8s:app=web", "k8s:io.kubernetes.pod.namespace=shop"}}, world(443, "api.example.com"))},
			hostile{"destination name " + q, connect(normalSrc, world(443, e))},
			hostile{"destination name suffix " + q, connect(normalSrc, world(443, e+".example.com"))},
			hostile{"dns query " + q, dnsQuery(normalSrc, e+".")},
			hostile{"host node " + q, hubbletest.NewFlow(hubbletest.FlowSpec{Time: at(), Node: e,
				Src: hubbletest.Endpoint{IP: "192.0.2.1", Identity: hubbletest.IdentityHost, Labels: []string{"reserved:host"}},
				Dst: world(443, "api.example.com")})},
			hostile{"host node with cluster " + q, hubbletest.NewFlow(hubbletest.FlowSpec{Time: at(), Node: e + "/" + e,
				Src: hubbletest.Endpoint{IP: "192.0.2.1", Identity: hubbletest.IdentityHost, Labels: []string{"reserved:host"}},
				Dst: world(443, "api.example.com")})},
		)
	}
	hs = append(hs,
		hostile{"1 MB app label", connect(pod("shop", "big-7d9f8c6b5-abcde", "k8s:app="+huge), world(443, "api.example.com"))},
		hostile{"1 MB namespace", connect(pod(huge, "web-1", "k8s:app=web"), world(443, "api.example.com"))},
		hostile{"1 MB pod", connect(pod("shop", huge), world(443, "api.example.com"))},
		hostile{"1 MB name", connect(normalSrc, world(443, huge))},
		hostile{"10k labels", connect(pod("shop", "many-1", manyLabels...), world(443, "api.example.com"))},
		hostile{"long name", connect(normalSrc, world(443, longName))},
		hostile{"long label", connect(normalSrc, world(443, longLabel))},
		hostile{"long dns query", dnsQuery(normalSrc, longName+".")},
		hostile{"port 0", connect(normalSrc, world(0, "zero.example.com"))},
		hostile{"port 65535", connect(normalSrc, world(65535, "max.example.com"))},
		hostile{"port 65536", connect(normalSrc, world(65536, "over.example.com"))},
		hostile{"port 70000", connect(normalSrc, world(70000, "over.example.com"))},
		hostile{"port 2^32-1", connect(normalSrc, world(1<<32-1, "over.example.com"))},
		hostile{"bad ip", connect(normalSrc, hubbletest.Endpoint{IP: "../../etc", Port: 443, Identity: hubbletest.IdentityWorld, Labels: []string{"reserved:world"}})},
		hostile{"non-UTF-8 namespace", connect(pod(badUTF8Namespace, "web-1", "k8s:app=web"), world(443, "api.example.com"))},
		hostile{"non-UTF-8 label", connect(pod("shop", "", "k8s:app="+badUTF8Label), world(443, "api.example.com"))},
		hostile{"non-UTF-8 workload", connect(hubbletest.Endpoint{IP: "10.0.1.6", Namespace: "shop", Workload: badUTF8Workload,
			Labels: []string{"k8s:io.kubernetes.pod.namespace=shop"}}, world(443, "api.example.com"))},
		hostile{"non-UTF-8 pod", connect(pod("shop", badUTF8Pod), world(443, "api.example.com"))},
		hostile{"non-UTF-8 name", connect(normalSrc, world(443, badUTF8Name))},
		hostile{"non-UTF-8 dns query", dnsQuery(normalSrc, badUTF8Name+".")},
	)
	notUTF8 := bytes.Repeat([]byte{0xff, 0xfe}, len(badUTF8Name)/2)
	encode := func(f *flowpb.Flow) []byte {
		b, err := proto.Marshal(hubbletest.Response(f))
		require.NoError(t, err)
		for _, ph := range []string{badUTF8Namespace, badUTF8Label, badUTF8Name, badUTF8Workload, badUTF8Pod} {
			require.Len(t, ph, len(notUTF8))
			b = bytes.ReplaceAll(b, []byte(ph), notUTF8)
		}
		return b
	}

	// The source name, from configuration, is stored verbatim as data.
	source := "hubble:" + sqlLooking
	counted := func() float64 { return countedFlows(t, reg) }
	for i, h := range hs {
		before := counted()
		msg := encode(h.flow)
		_ = pipe.Handle(source, msg) // an error is a decode error, counted
		require.Greater(t, counted(), before, "%s: the flow is counted somewhere", h.name)
		// A normal flow after each hostile one: the pipeline goes on.
		before = counted()
		require.NoError(t, pipe.Handle(source, encode(connect(normalSrc, world(443, "api.example.com")))))
		require.Greater(t, counted(), before)
		if i == 0 {
			// Garbage that is no protobuf at all.
			before = counted()
			require.Error(t, pipe.Handle(source, []byte{0xff, 0xff, 0xff, 0xff, 0x0f}))
			require.Greater(t, counted(), before, "garbage is counted")
		}
	}
	stopAgg()
	require.NoError(t, <-aggDone)
	for _, reason := range []string{"invalid_namespace", "no_app", "invalid_name", "invalid_ip"} {
		require.Positive(t, testutil.ToFloat64(metrics.Unattributed.WithLabelValues(reason)), "unattributed %s", reason)
	}
	require.Positive(t, testutil.ToFloat64(metrics.DecodeErrors))

	// The normal flows are stored, and so is the last hostile-but-valid data.
	apps, err := db.Apps(ctx)
	require.NoError(t, err)
	normal := egressd.App{Namespace: "shop", Name: "web"}
	var found bool
	for _, a := range apps {
		require.True(t, egressd.ValidNamespace(a.App.Namespace) || a.App.Namespace == egressd.HostNamespace, "namespace %q", a.App.Namespace)
		require.True(t, egressd.ValidAppName(a.App.Name), "app %q", a.App.Name)
		require.True(t, a.App.Cluster == "" || egressd.ValidAppName(a.App.Cluster), "cluster %q", a.App.Cluster)
		ds, err := db.Destinations(ctx, a.App)
		require.NoError(t, err)
		for _, d := range ds {
			require.LessOrEqual(t, len(d.Destination.Name), egressd.MaxNameLen, d.Destination.Name)
			require.True(t, utf8.ValidString(d.Destination.Name))
			require.LessOrEqual(t, len(d.ExamplePod), egressd.MaxPodLen)
			if a.App == normal && d.Destination.Name == "api.example.com" && d.Destination.Port == 443 {
				found = true
			}
			if d.Destination.Name == "over.example.com" && (d.Destination.Port != 0 || d.Destination.Protocol != egressd.ProtoAny) {
				// uint16(70000) is 4464: a real port nobody connected to.
				t.Errorf("a port beyond 65535 was stored as %s", egressd.FormatPort(d.Destination.Port, d.Destination.Protocol))
			}
		}
	}
	require.True(t, found, "the normal flows are stored: %v", apps)
	cur, err := db.Cursor(ctx, source)
	require.NoError(t, err, "the SQL-looking source name is stored as data")
	require.False(t, cur.IsZero())

	// Whatever reached PostgreSQL is bounded and UTF-8 (the server checks
	// UTF-8, but a NUL or bad byte there would have failed the flush).
	checkStoredText(t, env["DATABASE_URL"])

	// Export into a directory inside a parent that must stay empty.
	parent := t.TempDir()
	dir := filepath.Join(parent, "export")
	r := run(t, env, "baseline", "export", "--dir", dir, "--at", start.Add(24*time.Hour).Format(time.RFC3339))
	require.Equal(t, 0, r.code, r.stderr)
	entries, err := os.ReadDir(parent)
	require.NoError(t, err)
	require.Len(t, entries, 1, "nothing is written beside the export directory")
	root, err := os.OpenRoot(dir)
	require.NoError(t, err)
	defer root.Close()
	files := 0
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		require.NoError(t, err)
		require.False(t, rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)), "%s escapes the export directory", p)
		require.Zero(t, d.Type()&fs.ModeSymlink, "%s is a symlink", p)
		if d.IsDir() {
			return nil
		}
		files++
		parts := strings.Split(filepath.ToSlash(rel), "/")
		require.Len(t, parts, 2, "files are <namespace>/<app>.json: %s", rel)
		require.True(t, strings.HasSuffix(parts[1], ".json"), rel)
		fi, err := root.Stat(rel)
		require.NoError(t, err, "%s is inside the export root", rel)
		require.True(t, fi.Mode().IsRegular())
		b, err := root.ReadFile(rel)
		require.NoError(t, err)
		require.True(t, utf8.Valid(b), rel)
		return nil
	}))
	require.FileExists(t, filepath.Join(dir, "shop", "web.json"))
	require.Greater(t, files, 0)
}

// countedFlows sums the counters a flow ends in: observations, skips,
// unattributed flows and decode errors.
func countedFlows(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var sum float64
	for _, mf := range mfs {
		switch mf.GetName() {
		case "egressd_collector_observations_total", "egressd_collector_flows_skipped_total",
			"egressd_collector_unattributed_flows_total", "egressd_collector_decode_errors_total":
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// checkStoredText reads every text column of every table and checks that
// nothing stored is longer than a DNS name or a pod name allows.
func checkStoredText(t *testing.T, url string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT c.table_name, c.column_name FROM information_schema.columns c
		JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
		WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' AND c.data_type IN ('text', 'character varying')`)
	require.NoError(t, err)
	type col struct{ table, column string }
	var cols []col
	for rows.Next() {
		var c col
		require.NoError(t, rows.Scan(&c.table, &c.column))
		cols = append(cols, c)
	}
	require.NoError(t, rows.Err())
	require.NotEmpty(t, cols)
	tables := map[string]bool{}
	for _, c := range cols {
		tables[c.table] = true
		var longest int
		q := `SELECT coalesce(max(octet_length(` + pgx.Identifier{c.column}.Sanitize() + `)), 0) FROM ` + pgx.Identifier{c.table}.Sanitize()
		require.NoError(t, conn.QueryRow(ctx, q).Scan(&longest))
		require.LessOrEqual(t, longest, 1024, "%s.%s holds a value of %d bytes", c.table, c.column, longest)
		// Read the bytes back: with a SQL_ASCII server, nothing else would
		// stop a non-UTF-8 value.
		vals, err := conn.Query(ctx, `SELECT convert_to(`+pgx.Identifier{c.column}.Sanitize()+`, 'UTF8') FROM `+pgx.Identifier{c.table}.Sanitize())
		require.NoError(t, err)
		for vals.Next() {
			var b []byte
			require.NoError(t, vals.Scan(&b))
			require.True(t, utf8.Valid(b), "%s.%s holds %q", c.table, c.column, b)
		}
		require.NoError(t, vals.Err())
	}
	require.True(t, tables["apps"], "the apps table still exists")
}
