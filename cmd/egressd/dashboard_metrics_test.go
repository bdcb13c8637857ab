package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/collector/hubbletest"
	"github.com/egressd/egressd/detector/promtest"
	"github.com/egressd/egressd/postgres/pgtest"
)

// dashboardsDir holds the Grafana dashboards shipped with egressd.
const dashboardsDir = "../../dashboards"

// promPanelQuery is one PromQL query of a dashboard panel.
type promPanelQuery struct {
	where string // dashboard file, panel title and refId
	expr  string
}

// promPanelQueries returns every Prometheus query of every panel of the
// dashboards, rows' nested panels included.
func promPanelQueries(t *testing.T) []promPanelQuery {
	t.Helper()
	type dsRef struct {
		Type string `json:"type"`
	}
	type panel struct {
		Title      string  `json:"title"`
		Datasource *dsRef  `json:"datasource"`
		Panels     []panel `json:"panels"`
		Targets    []struct {
			RefID      string `json:"refId"`
			Expr       string `json:"expr"`
			Datasource *dsRef `json:"datasource"`
		} `json:"targets"`
	}
	files, err := filepath.Glob(filepath.Join(dashboardsDir, "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no dashboards in %s", dashboardsDir)
	var out []promPanelQuery
	for _, file := range files {
		b, err := os.ReadFile(file)
		require.NoError(t, err)
		var d struct {
			Panels []panel `json:"panels"`
		}
		require.NoError(t, json.Unmarshal(b, &d), file)
		var walk func(ps []panel)
		walk = func(ps []panel) {
			for _, p := range ps {
				walk(p.Panels)
				for _, tg := range p.Targets {
					ds := tg.Datasource
					if ds == nil {
						ds = p.Datasource
					}
					if ds == nil || ds.Type != "prometheus" {
						continue
					}
					out = append(out, promPanelQuery{where: filepath.Base(file) + ": panel " + p.Title + " query " + tg.RefID, expr: tg.Expr})
				}
			}
		}
		walk(d.Panels)
	}
	return out
}

// grafanaVar matches a Grafana variable reference: $name, ${name} or
// ${name:format}, [[name]].
var grafanaVar = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]`)

// TestDashboardsShowDataOnAFreshInstall starts `egressd serve` on an empty
// database, before any flow, anomaly or alert, has the real Prometheus scrape
// it, and runs every Prometheus query of the dashboards' panels as Grafana
// would: each must return at least one series, so that no panel of a fresh
// install says "No data". Counters and gauges whose label values are known
// at start exist at zero.
func TestDashboardsShowDataOnAFreshInstall(t *testing.T) {
	t.Parallel()
	queries := promPanelQueries(t)
	require.NotEmpty(t, queries, "the dashboards hold no Prometheus query")

	_, hubbleAddr := startHubble(t, hubbletest.Options{})
	addr := freeAddr(t)
	env := map[string]string{
		"DATABASE_URL":     string(pgtest.URL(t)),
		"HUBBLE_ADDRESS":   hubbleAddr,
		"ALERTMANAGER_URL": "http://alertmanager.invalid:9093",
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() {
		var out, errOut strings.Builder
		c := &CLI{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut, Getenv: func(k string) string { return env[k] }}
		code := c.Run(ctx, []string{"serve", "--listen", addr})
		done <- result{code: code, stdout: out.String(), stderr: errOut.String()}
	}()
	t.Cleanup(func() {
		cancel()
		r := <-done
		require.Equal(t, 0, r.code, "serve: %s", r.stderr)
	})
	waitUntil(t, "serve answers /healthz", func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	prom := promtest.Start(t, promtest.Options{Targets: []promtest.Target{{Job: "egressd", Address: addr}}})

	// rate() and increase() need two samples in their range: wait for a
	// scrape a second after the first one, and query when both are stored.
	const selector = `egressd_collector_messages_received_total{job="egressd"}`
	prom.WaitScraped(t, selector, time.Now(), 60*time.Second)
	prom.WaitScraped(t, selector, time.Now().Add(time.Second), 60*time.Second)
	at := time.Now()

	c, err := api.NewClient(api.Config{Address: prom.URL()})
	require.NoError(t, err)
	papi := v1.NewAPI(c)
	vars := map[string]string{
		// In a regexp matcher, escaped as Grafana does inside a PromQL string.
		"instance":        strings.ReplaceAll(regexp.QuoteMeta(addr), `\`, `\\`),
		"__rate_interval": "5m",
		"__interval":      "15s",
		"__range":         "1h",
	}
	var empty []string
	for _, q := range queries {
		expr := grafanaVar.ReplaceAllStringFunc(q.expr, func(m string) string {
			s := grafanaVar.FindStringSubmatch(m)
			name := s[1] + s[2] + s[3]
			v, ok := vars[name]
			require.True(t, ok, "%s: unknown variable %s in %s", q.where, m, q.expr)
			return v
		})
		qctx, qcancel := context.WithTimeout(context.Background(), 10*time.Second)
		v, _, _, err := papi.Query(qctx, expr, at)
		qcancel()
		require.NoError(t, err, "%s: %s", q.where, expr)
		vec, ok := v.(model.Vector)
		require.True(t, ok, "%s: %s: want a vector, got %s", q.where, expr, v.Type())
		if len(vec) == 0 {
			empty = append(empty, q.where+": "+expr)
		}
	}
	require.Empty(t, empty, "queries with no series on a fresh install (their panels would say No data)")
}
