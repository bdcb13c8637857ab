package dashboards_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/alerts"
	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/detector"
	"github.com/egressd/egressd/detector/promtest"
)

// egressdMetrics registers egressd's real metrics, with a value for every
// label the dashboards group by, as a running egressd that has done some
// work exposes them.
func egressdMetrics() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	c := collector.NewMetrics(reg)
	d := detector.NewMetrics(reg)
	a := alerts.NewMetrics(reg)
	c.Messages.Add(100)
	c.FlushDuration.Observe(0.02)
	d.Raised.WithLabelValues("novel_destination").Inc()
	d.Suppressed.WithLabelValues("learning").Inc()
	const am = "alertmanager.monitoring:9093"
	a.Sent.WithLabelValues(am, "sent").Inc()
	a.PostDuration.WithLabelValues(am).Observe(0.004)
	a.Dropped.WithLabelValues(am, "rejected").Inc()
	a.Retries.WithLabelValues(am).Inc()
	a.OutboxErrors.WithLabelValues("claim").Inc()
	a.OutboxPending.WithLabelValues("firing").Set(2)
	return reg
}

var metricName = regexp.MustCompile(`\begressd_[a-z0-9_]+`)

// TestMetricNames checks that every metric the health dashboard reads is
// one egressd exports (histograms as their _bucket, _sum and _count series).
func TestMetricNames(t *testing.T) {
	t.Parallel()
	mfs, err := egressdMetrics().Gather()
	require.NoError(t, err)
	known := map[string]bool{}
	for _, mf := range mfs {
		known[mf.GetName()] = true
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				known[mf.GetName()+s] = true
			}
		}
	}
	d := load(t, "egressd-health.json")
	exprs := []string{}
	for _, p := range d.panels() {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			exprs = append(exprs, v.Query)
		}
	}
	for _, e := range exprs {
		for _, name := range metricName.FindAllString(e, -1) {
			require.True(t, known[name], "%s is not an egressd metric (in %s)", name, e)
		}
	}
}

// promResponse is the envelope of Prometheus's HTTP API.
type promResponse struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      json.RawMessage
}

func promGet(t *testing.T, base, path string, q url.Values) promResponse {
	t.Helper()
	resp, err := http.Get(base + path + "?" + q.Encode())
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var r promResponse
	require.NoError(t, json.Unmarshal(body, &r), "%s: %s", path, body)
	return r
}

// labelValuesCall is the Prometheus data source's label_values(metric, label)
// variable query, which Grafana sends as /api/v1/label/<label>/values.
var labelValuesCall = regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s*,\s*(\w+)\s*\)$`)

// TestPromQL sends every expression of the health dashboard, with Grafana's
// variables replaced, to a real Prometheus that scrapes egressd's metrics:
// Prometheus must accept each one and return series for it.
func TestPromQL(t *testing.T) {
	t.Parallel()
	d := load(t, "egressd-health.json")
	addr := promtest.Serve(t, promhttp.HandlerFor(egressdMetrics(), promhttp.HandlerOpts{}))
	srv := promtest.Start(t, promtest.Options{Targets: []promtest.Target{{Job: "egressd", Address: addr}}})
	// rate() and increase() need two samples: wait for the second scrape.
	srv.WaitScraped(t, "egressd_collector_messages_received_total", time.Now().Add(time.Millisecond), 20*time.Second)
	at := time.Now()

	// The instance variable's options come from its label_values() query.
	v, ok := d.variable("instance")
	require.True(t, ok)
	require.True(t, v.Multi && v.IncludeAll, "instance: multi-value with All")
	m := labelValuesCall.FindStringSubmatch(v.Query)
	require.NotNil(t, m, "instance: %s is not label_values(metric, label)", v.Query)
	r := promGet(t, srv.URL(), "/api/v1/label/"+m[2]+"/values", url.Values{"match[]": {m[1]}})
	require.Equal(t, "success", r.Status, "%s: %s", v.Query, r.Error)
	var instances []string
	require.NoError(t, json.Unmarshal(r.Data, &instances))
	require.Equal(t, []string{addr}, instances, v.Query)

	for _, sel := range []struct {
		name     string
		instance []string
	}{
		{"all", []string{"$__all"}},
		{"one", []string{addr}},
		{"several", []string{addr, "10.0.0.9:9090"}},
	} {
		t.Run(sel.name, func(t *testing.T) {
			qc := &queryContext{
				From: at.Add(-6 * time.Hour), To: at, Interval: "15s", RateInterval: "1m",
				Vars:     map[string][]string{"instance": sel.instance},
				AllValue: map[string]string{"instance": v.AllValue},
			}
			for _, p := range d.panels() {
				for _, tg := range p.Targets {
					q, err := qc.expandPromQL(tg.Expr)
					require.NoError(t, err, "panel %q query %s", p.Title, tg.RefID)
					r := promGet(t, srv.URL(), "/api/v1/query", url.Values{
						"query": {q}, "time": {at.Format(time.RFC3339Nano)},
					})
					require.Equal(t, "success", r.Status, "panel %q query %s: %s: %s %s", p.Title, tg.RefID, q, r.ErrorType, r.Error)
					var data struct {
						ResultType string            `json:"resultType"`
						Result     []json.RawMessage `json:"result"`
					}
					require.NoError(t, json.Unmarshal(r.Data, &data))
					require.Equal(t, "vector", data.ResultType, "panel %q query %s: %s", p.Title, tg.RefID, q)
					require.NotEmpty(t, data.Result, "panel %q query %s: no series for %s", p.Title, tg.RefID, q)
				}
			}
		})
	}
}
