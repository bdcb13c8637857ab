package dashboards_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// now is the end of the dashboard's time range in these tests; seeded rows
// are placed around it.
var now = time.Date(2026, 11, 8, 12, 0, 0, 0, time.UTC)

var (
	recyclarr = egressd.App{Namespace: "media", Name: "recyclarr"}
	shop      = egressd.App{Cluster: "prod", Namespace: "web", Name: "shop"}
	assistant = egressd.App{Namespace: "home", Name: "home-assistant"}
)

const alertmanager = "http://alertmanager.monitoring:9093"

// seed writes what the collector and the detector would: five destinations
// (one last seen before the time range, one first seen before it and still
// active) and four anomalies (firing, resolved, resolved long ago, firing
// since before the range), one with a delivery that failed.
func seed(t *testing.T, db *postgres.DB) {
	ctx := context.Background()
	fwd := egressd.VerdictSet(0).Add(egressd.VerdictForwarded)
	drop := egressd.VerdictSet(0).Add(egressd.VerdictDropped)
	dest := func(app egressd.App, name string, port uint16, proto string, first, last time.Duration, flows, dropped int64, v egressd.VerdictSet, src egressd.NameSource) egressd.DestinationRollup {
		return egressd.DestinationRollup{
			App: app, Destination: egressd.Destination{Name: name, Port: port, Protocol: proto},
			FirstSeen: now.Add(-first), LastSeen: now.Add(-last), Flows: flows, DroppedFlows: dropped,
			Verdicts: v, ExamplePod: app.Name + "-7d9f8b6c5d-x2k9p", NameSource: src,
		}
	}
	require.NoError(t, db.WriteRollup(ctx, &egressd.Rollup{Destinations: []egressd.DestinationRollup{
		dest(recyclarr, "api.github.com", 443, "TCP", 72*time.Hour, time.Hour, 120, 0, fwd, egressd.NameFromFlow),
		dest(recyclarr, "exfil.example.net", 443, "TCP", 2*time.Hour, 2*time.Hour-5*time.Minute, 3, 3, drop, egressd.NameFromDNS),
		dest(recyclarr, "203.0.113.7", 443, "TCP", 30*24*time.Hour, 20*24*time.Hour, 5, 0, fwd, egressd.NameIsIP),
		dest(shop, "dns.google", 53, "UDP", 24*time.Hour, 30*time.Minute, 40, 0, fwd, egressd.NameFromFlow),
		dest(assistant, "time.cloudflare.com", 123, "UDP", 10*24*time.Hour, 3*time.Hour, 50, 2, fwd|drop, egressd.NameFromFlow),
	}}))

	novel := func(app egressd.App, name string, port uint16, proto string, started time.Duration, v egressd.Verdict) egressd.Anomaly {
		d := egressd.Destination{Name: name, Port: port, Protocol: proto}
		return egressd.Anomaly{
			Fingerprint: egressd.NoveltyFingerprint(app, d), Kind: egressd.AnomalyNovelDestination,
			App: app, Destination: d, Time: now.Add(-started), Pod: app.Name + "-7d9f8b6c5d-x2k9p",
			Verdict: v, NameSource: egressd.NameFromDNS, BaselineSource: "window",
			Summary: fmt.Sprintf("%s reached %s, new for this app", app, d),
		}
	}
	record := func(a egressd.Anomaly, targets ...string) {
		inserted, err := db.RecordAnomaly(ctx, a, targets, now)
		require.NoError(t, err)
		require.True(t, inserted)
	}
	record(novel(recyclarr, "exfil.example.net", 443, "TCP", 2*time.Hour, egressd.VerdictDropped), alertmanager)
	record(novel(assistant, "time.cloudflare.com", 123, "UDP", 10*24*time.Hour, egressd.VerdictForwarded), alertmanager)
	old := novel(recyclarr, "203.0.113.7", 443, "TCP", 30*24*time.Hour, egressd.VerdictForwarded)
	old.ResolvedAt = now.Add(-29 * 24 * time.Hour)
	record(old)
	volume := egressd.Anomaly{
		Fingerprint: egressd.VolumeFingerprint(shop, now.Add(-5*time.Hour)), Kind: egressd.AnomalyEgressVolume,
		App: shop, Time: now.Add(-5 * time.Hour), BaselineSource: "history",
		Summary: "web/shop sends 140x its 24 h average",
	}
	record(volume)
	resolved, err := db.ResolveAnomaly(ctx, volume.Fingerprint, now.Add(-4*time.Hour))
	require.NoError(t, err)
	require.True(t, resolved)

	// The sender claims both deliveries; the one of exfil.example.net fails.
	ds, err := db.ClaimDeliveries(ctx, now, time.Minute, 10)
	require.NoError(t, err)
	require.Len(t, ds, 2)
	for _, d := range ds {
		if d.Anomaly.Destination.Name == "exfil.example.net" {
			require.NoError(t, db.DeliveryFailed(ctx, []int64{d.ID}, now.Add(time.Minute), "connection refused"))
		} else {
			require.NoError(t, db.DeliverySent(ctx, []int64{d.ID}, now, now.Add(time.Minute)))
		}
	}
}

// result is what a query returned, by column name.
type result struct {
	cols []string
	rows []map[string]any
}

func (r result) column(name string) []any {
	var out []any
	for _, row := range r.rows {
		out = append(out, row[name])
	}
	return out
}

// run executes sql in a read-only transaction, as Grafana's data source
// user should only be allowed to.
func run(t *testing.T, conn *pgx.Conn, sql string) (result, error) {
	t.Helper()
	ctx := context.Background()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck // read-only
	rows, err := tx.Query(ctx, sql)
	if err != nil {
		return result{}, err
	}
	defer rows.Close()
	var r result
	for _, f := range rows.FieldDescriptions() {
		r.cols = append(r.cols, f.Name)
	}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return result{}, err
		}
		row := map[string]any{}
		for i, c := range r.cols {
			row[c] = vals[i]
		}
		r.rows = append(r.rows, row)
	}
	return r, rows.Err()
}

// number converts a numeric column value (bigint, double, numeric) to float64.
func number(t *testing.T, v any) float64 {
	t.Helper()
	switch n := v.(type) {
	case int64:
		return float64(n)
	case int32:
		return float64(n)
	case float64:
		return n
	case pgtype.Numeric:
		f, err := n.Float64Value()
		require.NoError(t, err)
		return f.Float64
	}
	t.Fatalf("%v (%T) is not a number", v, v)
	return 0
}

func strs(vs []any) []string {
	if len(vs) == 0 {
		return nil
	}
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = fmt.Sprint(v)
	}
	return out
}

// selection is one choice of the namespace and app variables and what the
// panels must show for it.
type selection struct {
	name            string
	namespace, app  []string // nil: All (every value the variable query returns)
	firing          int
	newDests        int
	activeDests     int
	retrying        int
	anomalies       []string // anomalies table: destination column, in order
	destinations    []string // destinations table: destination column, in order
	anomaliesInTime int      // sum of the anomalies time series
}

func TestSQL(t *testing.T) {
	t.Parallel()
	d := load(t, "egressd-destinations.json")
	dsn := pgtest.URL(t)
	opts := postgres.DefaultOptions()
	opts.URL = dsn
	ctx := context.Background()
	db, err := postgres.Open(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	seed(t, db)
	conn, err := pgx.Connect(ctx, string(dsn))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })

	from := now.Add(-7 * 24 * time.Hour)
	for _, sel := range []selection{
		{
			name: "all", firing: 2, newDests: 3, activeDests: 4, retrying: 1, anomaliesInTime: 2,
			anomalies:    []string{"exfil.example.net:443/TCP", "time.cloudflare.com:123/UDP", ""},
			destinations: []string{"exfil.example.net", "dns.google", "api.github.com", "time.cloudflare.com"},
		},
		{
			name: "one app", namespace: []string{"media"}, app: []string{"recyclarr"},
			firing: 1, newDests: 2, activeDests: 2, retrying: 1, anomaliesInTime: 1,
			anomalies:    []string{"exfil.example.net:443/TCP"},
			destinations: []string{"exfil.example.net", "api.github.com"},
		},
		{
			// Values with no rows, and an app name from another
			// namespace (home-assistant is not in media or web).
			name: "several", namespace: []string{"media", "web", "gone"}, app: []string{"recyclarr", "shop", "home-assistant"},
			firing: 1, newDests: 3, activeDests: 3, retrying: 1, anomaliesInTime: 2,
			anomalies:    []string{"exfil.example.net:443/TCP", ""},
			destinations: []string{"exfil.example.net", "dns.google", "api.github.com"},
		},
		{
			// Nothing selected (or All with no apps yet): Grafana
			// formats an empty list as an empty string.
			name: "none", namespace: []string{}, app: []string{},
		},
	} {
		t.Run(sel.name, func(t *testing.T) {
			qc := &queryContext{From: from, To: now, Interval: "10m", Vars: map[string][]string{}}
			qc.Vars["namespace"] = sel.namespace
			if sel.namespace == nil {
				qc.Vars["namespace"] = variableValues(t, conn, d, qc, "namespace")
				require.Equal(t, []string{"home", "media", "web"}, qc.Vars["namespace"])
			}
			qc.Vars["app"] = sel.app
			if sel.app == nil {
				qc.Vars["app"] = variableValues(t, conn, d, qc, "app")
				require.Equal(t, []string{"home-assistant", "recyclarr", "shop"}, qc.Vars["app"])
			}

			// Every query runs, at several intervals.
			for _, iv := range []string{"30s", "10m", "1h", "1d"} {
				qc.Interval = iv
				for _, p := range d.panels() {
					for _, tg := range p.Targets {
						r := runTarget(t, conn, qc, p, tg)
						if tg.Format == "time_series" {
							checkTimeSeries(t, p, r)
						}
					}
				}
			}
			qc.Interval = "10m"

			stat := func(title string) int {
				t.Helper()
				r := runTarget(t, conn, qc, d.panel(t, title), d.panel(t, title).Targets[0])
				require.Len(t, r.rows, 1, title)
				require.Len(t, r.cols, 1, title)
				return int(number(t, r.rows[0][r.cols[0]]))
			}
			require.Equal(t, sel.firing, stat("Firing anomalies"))
			require.Equal(t, sel.newDests, stat("New destinations"))
			require.Equal(t, sel.activeDests, stat("Active destinations"))
			require.Equal(t, sel.retrying, stat("Alert deliveries retrying"))

			sum := func(title, col string) int {
				t.Helper()
				p := d.panel(t, title)
				r := runTarget(t, conn, qc, p, p.Targets[0])
				total := 0.0
				for _, v := range r.column(col) {
					total += number(t, v)
				}
				return int(total)
			}
			require.Equal(t, sel.newDests, sum("New destinations over time", "new destinations"))
			require.Equal(t, sel.anomaliesInTime, sum("Anomalies started, by kind", "anomalies"))

			p := d.panel(t, "Anomalies")
			anomalies := runTarget(t, conn, qc, p, p.Targets[0])
			require.Equal(t, sel.anomalies, strs(anomalies.column("destination")), "anomalies table")

			p = d.panel(t, "Destinations per app")
			dests := runTarget(t, conn, qc, p, p.Targets[0])
			require.Equal(t, sel.destinations, strs(dests.column("destination")), "destinations table")

			if sel.name == "all" {
				checkAllRows(t, anomalies, dests)
			}
		})
	}
}

// checkAllRows checks the columns of the two tables with every app selected.
func checkAllRows(t *testing.T, anomalies, dests result) {
	require.Equal(t, []string{"state", "kind", "app", "destination", "started at", "resolved at", "verdict", "pod", "summary"}, anomalies.cols)
	require.Equal(t, []string{"firing", "firing", "resolved"}, strs(anomalies.column("state")))
	require.Equal(t, []string{"novel_destination", "novel_destination", "egress_volume"}, strs(anomalies.column("kind")))
	require.Equal(t, []string{"media/recyclarr", "home/home-assistant", "web/shop (prod)"}, strs(anomalies.column("app")))
	require.Equal(t, []string{"DROPPED", "FORWARDED", ""}, strs(anomalies.column("verdict")))
	require.Equal(t, now.Add(-2*time.Hour), anomalies.rows[0]["started at"].(time.Time).UTC())
	require.Nil(t, anomalies.rows[0]["resolved at"])
	require.Equal(t, now.Add(-4*time.Hour), anomalies.rows[2]["resolved at"].(time.Time).UTC())

	require.Equal(t, []string{"app", "destination", "port", "first seen", "last seen", "flows", "dropped flows", "verdicts", "name from", "example pod"}, dests.cols)
	require.Equal(t, []string{"media/recyclarr", "web/shop (prod)", "media/recyclarr", "home/home-assistant"}, strs(dests.column("app")))
	require.Equal(t, []string{"443/TCP", "53/UDP", "443/TCP", "123/UDP"}, strs(dests.column("port")))
	require.Equal(t, []string{"DROPPED", "FORWARDED", "FORWARDED", "FORWARDED, DROPPED"}, strs(dests.column("verdicts")))
	require.Equal(t, []string{"DNS answer", "flow", "flow", "flow"}, strs(dests.column("name from")))
	require.Equal(t, []string{"3", "40", "120", "50"}, strs(dests.column("flows")))
	require.Equal(t, []string{"3", "0", "0", "2"}, strs(dests.column("dropped flows")))
	require.Equal(t, "recyclarr-7d9f8b6c5d-x2k9p", dests.rows[0]["example pod"])
	require.Equal(t, now.Add(-72*time.Hour), dests.rows[2]["first seen"].(time.Time).UTC())
	require.Equal(t, now.Add(-time.Hour), dests.rows[2]["last seen"].(time.Time).UTC())
}

// variableValues runs a variable's query and returns its values, as Grafana
// fills the variable's options.
func variableValues(t *testing.T, conn *pgx.Conn, d *dashboard, qc *queryContext, name string) []string {
	t.Helper()
	v, ok := d.variable(name)
	require.True(t, ok, "variable %s", name)
	sql, err := qc.expandSQL(v.Query)
	require.NoError(t, err, "variable %s", name)
	r, err := run(t, conn, sql)
	require.NoError(t, err, "variable %s: %s", name, sql)
	require.Len(t, r.cols, 1, "variable %s: one column, the value", name)
	return strs(r.column(r.cols[0]))
}

func runTarget(t *testing.T, conn *pgx.Conn, qc *queryContext, p panel, tg target) result {
	t.Helper()
	sql, err := qc.expandSQL(tg.RawSQL)
	require.NoError(t, err, "panel %q query %s", p.Title, tg.RefID)
	r, err := run(t, conn, sql)
	require.NoError(t, err, "panel %q query %s (namespace %q, app %q, interval %s):\n%s", p.Title, tg.RefID, qc.Vars["namespace"], qc.Vars["app"], qc.Interval, sql)
	return r
}

// checkTimeSeries checks what Grafana needs of a time_series result: a
// column named time, numeric values, buckets aligned to the interval and
// sorted.
func checkTimeSeries(t *testing.T, p panel, r result) {
	t.Helper()
	require.Contains(t, r.cols, "time", "panel %q: a time_series query needs a column named time", p.Title)
	values := 0
	for _, c := range r.cols {
		if c != "time" && c != "metric" {
			values++
		}
	}
	require.Positive(t, values, "panel %q: no value column", p.Title)
	var times []float64
	for _, row := range r.rows {
		for c, v := range row {
			if c == "metric" {
				require.IsType(t, "", v, "panel %q: metric column", p.Title)
				continue
			}
			n := number(t, v)
			require.False(t, math.IsNaN(n), "panel %q column %s", p.Title, c)
		}
		times = append(times, number(t, row["time"]))
	}
	require.True(t, slices.IsSorted(times), "panel %q: rows ordered by time", p.Title)
}
