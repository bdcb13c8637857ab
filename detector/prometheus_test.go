package detector_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/detector"
	"github.com/egressd/egressd/detector/promtest"
)

var _ detector.RateSource = (*detector.PrometheusSource)(nil)

func promOpts(url string) detector.PrometheusOptions {
	o := detector.DefaultPrometheusOptions()
	o.URL = url
	return o
}

func TestPrometheusOptionsValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		edit    func(*detector.PrometheusOptions)
		wantErr string // "" means valid
	}{
		{"defaults with a URL", func(*detector.PrometheusOptions) {}, ""},
		{"path prefix and basic auth", func(o *detector.PrometheusOptions) { o.URL = "https://u:secret@mon.example/prometheus" }, ""},
		{"matchers", func(o *detector.PrometheusOptions) {
			o.ExtraMatchers = ` interface="eth0", container!='POD' ,name=~` + "`k8s_.*`" + `, cluster!~"a|b", `
		}, ""},
		{"escaped quotes", func(o *detector.PrometheusOptions) { o.ExtraMatchers = `a="x\"y",b='it\'s "q"'` }, ""},
		{"no URL", func(o *detector.PrometheusOptions) { o.URL = "" }, "PrometheusOptions.URL is empty"},
		{"URL without scheme", func(o *detector.PrometheusOptions) { o.URL = "prometheus:9090" }, "PrometheusOptions.URL"},
		{"URL password not shown", func(o *detector.PrometheusOptions) { o.URL = "ftp://u:secret@host" }, "PrometheusOptions.URL \"ftp://u:xxxxx@host\""},
		{"short window zero", func(o *detector.PrometheusOptions) { o.ShortWindow = 0 }, "PrometheusOptions.ShortWindow"},
		{"short window fraction", func(o *detector.PrometheusOptions) { o.ShortWindow = 1500 * time.Millisecond }, "PrometheusOptions.ShortWindow"},
		{"history too short", func(o *detector.PrometheusOptions) { o.HistoryWindow = 3 * time.Minute }, "PrometheusOptions.HistoryWindow"},
		{"coverage step negative", func(o *detector.PrometheusOptions) { o.CoverageStep = -time.Second }, "PrometheusOptions.CoverageStep"},
		{"coverage step too long", func(o *detector.PrometheusOptions) { o.CoverageStep = 25 * time.Hour }, "PrometheusOptions.CoverageStep"},
		{"timeout", func(o *detector.PrometheusOptions) { o.Timeout = 0 }, "PrometheusOptions.Timeout"},
		{"metric", func(o *detector.PrometheusOptions) { o.Metric = "container-network" }, "PrometheusOptions.Metric"},
		{"empty metric", func(o *detector.PrometheusOptions) { o.Metric = "" }, "PrometheusOptions.Metric"},
		{"matcher without value", func(o *detector.PrometheusOptions) { o.ExtraMatchers = `interface=` }, "PrometheusOptions.ExtraMatchers"},
		{"matcher unquoted", func(o *detector.PrometheusOptions) { o.ExtraMatchers = `interface=eth0` }, "want a quoted value"},
		{"matcher bad op", func(o *detector.PrometheusOptions) { o.ExtraMatchers = `interface=="eth0"` }, "PrometheusOptions.ExtraMatchers"},
		{"matcher unterminated", func(o *detector.PrometheusOptions) { o.ExtraMatchers = `interface="eth0` }, "unterminated"},
		{"matcher bad regexp", func(o *detector.PrometheusOptions) { o.ExtraMatchers = `interface=~"eth(0"` }, "PrometheusOptions.ExtraMatchers"},
		{"matchers without comma", func(o *detector.PrometheusOptions) { o.ExtraMatchers = `a="1" b="2"` }, "want ','"},
		{"selector injection", func(o *detector.PrometheusOptions) { o.ExtraMatchers = `a="1"}) or vector(1` }, "PrometheusOptions.ExtraMatchers"},
		{"braces", func(o *detector.PrometheusOptions) { o.ExtraMatchers = `{a="1"}` }, "PrometheusOptions.ExtraMatchers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := promOpts("http://prometheus:9090")
			tc.edit(&o)
			err := o.Validate()
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
			require.NotContains(t, err.Error(), "secret")
			_, err = detector.NewPrometheusSource(o, promNewPodApps(t), nil)
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestPrometheusQueries(t *testing.T) {
	t.Parallel()
	got := promOpts("http://prometheus:9090").Queries()
	want := detector.PrometheusQueries{
		Current: `sum by (namespace, pod) (max by (namespace, pod, interface) (` +
			`rate(container_network_transmit_bytes_total{namespace!="",pod!=""}[2m])))`,
		Average: `sum by (namespace, pod) (max by (namespace, pod, interface) (` +
			`increase(container_network_transmit_bytes_total{namespace!="",pod!=""}[23h58m] offset 2m))) / 86280`,
		FirstSample: `min by (namespace, pod) (min_over_time(timestamp(` +
			`container_network_transmit_bytes_total{namespace!="",pod!=""})[1d5m:5m]))`,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("default queries (-want +got):\n%s", d)
	}

	o := promOpts("http://prometheus:9090")
	o.ShortWindow, o.HistoryWindow, o.CoverageStep = 5*time.Second, time.Minute, time.Second
	o.Metric = "container_network_receive_bytes_total"
	o.ExtraMatchers = ` interface="eth0", `
	got = o.Queries()
	want = detector.PrometheusQueries{
		Current: `sum by (namespace, pod) (max by (namespace, pod, interface) (` +
			`rate(container_network_receive_bytes_total{namespace!="",pod!="",interface="eth0"}[5s])))`,
		Average: `sum by (namespace, pod) (max by (namespace, pod, interface) (` +
			`increase(container_network_receive_bytes_total{namespace!="",pod!="",interface="eth0"}[55s] offset 5s))) / 55`,
		FirstSample: `min by (namespace, pod) (min_over_time(timestamp(` +
			`container_network_receive_bytes_total{namespace!="",pod!="",interface="eth0"})[1m1s:1s]))`,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("test-sized queries (-want +got):\n%s", d)
	}
}

// promNewPodApps returns a PodAppMap with default options.
func promNewPodApps(t *testing.T) *detector.PodAppMap {
	t.Helper()
	m, err := detector.NewPodAppMap(detector.DefaultPodAppOptions())
	require.NoError(t, err)
	return m
}

// promObserve tells pods that the pod belongs to app.
func promObserve(pods *detector.PodAppMap, app egressd.App, pod string, at time.Time) {
	pods.Observe(&egressd.Observation{Time: at, Kind: egressd.KindConnect, App: app, Pod: pod})
}

// promFakeAPI is a fake Prometheus HTTP API: each query gets the vector of
// the first entry whose key the query contains.
type promFakeAPI struct {
	mu      sync.Mutex
	results map[string]string // query substring -> JSON "data" value
	status  int
	errMsg  string
	queries []string
	times   []string
}

func (f *promFakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	q := r.Form.Get("query")
	f.mu.Lock()
	f.queries = append(f.queries, q)
	f.times = append(f.times, r.Form.Get("time"))
	status, errMsg := f.status, f.errMsg
	data := `{"resultType":"vector","result":[]}`
	for k, v := range f.results {
		if strings.Contains(q, k) {
			data = v
		}
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if status != 0 {
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"status":"error","errorType":"bad_data","error":%q}`, errMsg)
		return
	}
	fmt.Fprintf(w, `{"status":"success","data":%s}`, data)
}

// promVector encodes samples {namespace, pod, value} as an instant vector.
func promVector(at time.Time, samples ...[3]string) string {
	type sample struct {
		Metric map[string]string `json:"metric"`
		Value  [2]any            `json:"value"`
	}
	out := []sample{}
	for _, s := range samples {
		out = append(out, sample{
			Metric: map[string]string{"namespace": s[0], "pod": s[1]},
			Value:  [2]any{float64(at.UnixMilli()) / 1000, s[2]},
		})
	}
	b, _ := json.Marshal(map[string]any{"resultType": "vector", "result": out})
	return string(b)
}

func TestPrometheusSourceSumsPodsPerApp(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	pods := promNewPodApps(t)
	web := egressd.App{Namespace: "shop", Name: "web"}
	job := egressd.App{Namespace: "batch", Name: "report"}
	young := egressd.App{Namespace: "shop", Name: "young"}
	promObserve(pods, web, "web-1", now)
	promObserve(pods, web, "web-2", now)
	promObserve(pods, job, "report-a", now)
	promObserve(pods, job, "report-b", now)
	promObserve(pods, young, "young-1", now)
	promObserve(pods, egressd.App{Namespace: "shop", Name: "idle"}, "idle-1", now) // first sample only

	unix := func(d time.Duration) string { return fmt.Sprintf("%.3f", float64(now.Add(d).UnixMilli())/1000) }
	fake := &promFakeAPI{results: map[string]string{
		"rate(": promVector(now,
			[3]string{"shop", "web-1", "100"}, [3]string{"shop", "web-2", "300"},
			[3]string{"batch", "report-b", "50"},
			[3]string{"shop", "young-1", "7"},
			[3]string{"shop", "stranger", "1e9"}, // unknown to PodApps
			[3]string{"other", "web-1", "1e9"},   // same pod name, other namespace
			[3]string{"shop", "web-3", "NaN"},    // unknown too
		),
		"increase(": promVector(now,
			[3]string{"shop", "web-1", "90"}, [3]string{"shop", "web-2", "310"},
			[3]string{"batch", "report-a", "30"}, [3]string{"batch", "report-b", "20"},
			[3]string{"shop", "young-1", "+Inf"},
		),
		"timestamp(": promVector(now,
			[3]string{"shop", "web-1", unix(-25 * time.Hour)}, [3]string{"shop", "web-2", unix(-time.Hour)},
			[3]string{"batch", "report-a", unix(-24*time.Hour - 3*time.Minute)}, [3]string{"batch", "report-b", unix(-time.Minute)},
			[3]string{"shop", "young-1", unix(-90 * time.Minute)},
			[3]string{"shop", "idle-1", unix(-time.Minute)},
		),
	}}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)

	src, err := detector.NewPrometheusSource(promOpts(srv.URL), pods, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	got, err := src.Rates(context.Background(), now)
	require.NoError(t, err)

	want := map[egressd.App]detector.Rate{
		web:   {Current: 400, Average: 400, HistoryCovered: 24 * time.Hour, Pods: []string{"web-2", "web-1"}},
		job:   {Current: 50, Average: 50, HistoryCovered: 24 * time.Hour, Pods: []string{"report-b", "report-a"}},
		young: {Current: 7, HistoryCovered: 90 * time.Minute, Pods: []string{"young-1"}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("rates (-want +got):\n%s", d)
	}
	require.Equal(t, detector.PrometheusStats{Pods: 6, Apps: 3, UnknownPods: 3, Duration: src.Stats().Duration}, src.Stats())

	fake.mu.Lock()
	defer fake.mu.Unlock()
	require.Len(t, fake.queries, 3)
	for _, ts := range fake.times {
		require.Equal(t, "1793534400", ts, "queries are evaluated at now (Unix seconds)")
	}
}

func TestPrometheusSourceErrorsNameTheQuery(t *testing.T) {
	t.Parallel()
	fake := &promFakeAPI{status: http.StatusUnprocessableEntity, errMsg: "1:2: parse error: unexpected"}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	src, err := detector.NewPrometheusSource(promOpts(srv.URL), promNewPodApps(t), nil)
	require.NoError(t, err)
	_, err = src.Rates(context.Background(), time.Now())
	require.Error(t, err)
	require.Regexp(t, `prometheus (current rate|average rate|first sample) query .*container_network_transmit_bytes_total.*parse error`, err.Error())

	// A scalar where a vector belongs.
	fake2 := &promFakeAPI{results: map[string]string{"": `{"resultType":"scalar","result":[1,"2"]}`}}
	srv2 := httptest.NewServer(fake2)
	t.Cleanup(srv2.Close)
	src, err = detector.NewPrometheusSource(promOpts(srv2.URL), promNewPodApps(t), nil)
	require.NoError(t, err)
	_, err = src.Rates(context.Background(), time.Now())
	require.ErrorContains(t, err, "want an instant vector, got scalar")

	// A server that never answers: Timeout bounds the call.
	// The client POSTs first; the handler reads the body so that the
	// server notices the client going away, and release ends it anyway
	// before hang.Close waits for it.
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(hang.Close)
	t.Cleanup(func() { close(release) })
	o := promOpts(hang.URL)
	o.Timeout = 100 * time.Millisecond
	src, err = detector.NewPrometheusSource(o, promNewPodApps(t), nil)
	require.NoError(t, err)
	start := time.Now()
	_, err = src.Rates(context.Background(), time.Now())
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, " query ")
	require.Less(t, time.Since(start), 5*time.Second)
}

// promNear fails unless got is within frac of want.
func promNear(t *testing.T, what string, want, got, frac float64) {
	t.Helper()
	t.Logf("%s = %.0f (truth %.0f, %+.2f%%)", what, got, want, 100*(got-want)/want)
	if math.Abs(got-want) > frac*math.Abs(want) {
		t.Errorf("%s = %.0f, want %.0f ±%.0f%%", what, got, want, frac*100)
	}
}

// promTruth computes an app's rates from the exporter's exact counters, as
// PrometheusSource should from the scraped samples.
func promTruth(e *promtest.Exporter, o detector.PrometheusOptions, now time.Time, ns string, pods ...string) (current, average float64) {
	for _, p := range pods {
		b := func(at time.Time) float64 { return e.Bytes(ns, p, at) }
		current += (b(now) - b(now.Add(-o.ShortWindow))) / o.ShortWindow.Seconds()
		average += (b(now.Add(-o.ShortWindow)) - b(now.Add(-o.HistoryWindow))) / (o.HistoryWindow - o.ShortWindow).Seconds()
	}
	return current, average
}

// TestPrometheusSourceLive runs PrometheusSource against the real Prometheus
// scraping a cAdvisor-shaped exporter, in windows of seconds instead of
// hours: ShortWindow 3 s, HistoryWindow 12 s, a scrape every second. The
// exporter serves every pod's counter four times (two scrape jobs, pod
// cgroup and pause container), plus the node's own interface, as a real
// kubelet scraped twice can.
//
// Timeline, from P (Prometheus has scraped once):
//
//	P      shop/web-1 10 kB/s, shop/web-2 30 kB/s, pay/api-1 5 kB/s,
//	       batch/report-a 20 kB/s, shop/stranger 1 MB/s (no app known)
//	P+5s   report-a ends, report-b takes over at 20 kB/s (churn);
//	       late/new-1 starts (a young app)
//	tb     (>= P+H+1.5s) web-1 bursts to 2 MB/s
//
// Rates at tb: every app steady, Current ~ Average. Rates at tb+ShortWindow:
// web's Current is ~50x its Average. Both are queried after Prometheus has
// scraped past them, so each sees complete data; expected values come from
// the exporter's exact byte counts.
func TestPrometheusSourceLive(t *testing.T) {
	t.Parallel()
	start := time.Now()
	exp := promtest.NewExporter(promtest.ExporterOptions{PauseContainer: true, NodeBytesPerSecond: 50e6})
	addr := promtest.Serve(t, exp.Handler())

	web := egressd.App{Namespace: "shop", Name: "web"}
	api := egressd.App{Namespace: "pay", Name: "api"}
	report := egressd.App{Namespace: "batch", Name: "report"}
	late := egressd.App{Namespace: "late", Name: "new"}
	pods := promNewPodApps(t)
	promObserve(pods, web, "web-1", start)
	promObserve(pods, web, "web-2", start)
	promObserve(pods, api, "api-1", start)
	promObserve(pods, report, "report-a", start)
	promObserve(pods, report, "report-b", start)
	promObserve(pods, late, "new-1", start)

	exp.SetRate("shop", "web-1", 10e3)
	exp.SetRate("shop", "web-2", 30e3)
	exp.SetRate("pay", "api-1", 5e3)
	exp.SetRate("batch", "report-a", 20e3)
	exp.SetRate("shop", "stranger", 1e6)

	srv := promtest.Start(t, promtest.Options{
		Targets:        []promtest.Target{{Job: "kubelet", Address: addr}, {Job: "cadvisor", Address: addr}},
		ScrapeInterval: time.Second,
	})
	p := time.Now()
	t.Logf("prometheus scraping after %v", p.Sub(start).Round(time.Millisecond))

	o := promOpts(srv.URL())
	o.ShortWindow, o.HistoryWindow, o.CoverageStep = 3*time.Second, 12*time.Second, time.Second
	src, err := detector.NewPrometheusSource(o, pods, slog.New(slog.DiscardHandler))
	require.NoError(t, err)

	const anyPod = promtest.TransmitMetric + `{pod="web-1"}`
	srv.WaitScraped(t, anyPod, p.Add(5*time.Second), 20*time.Second)
	exp.RemovePod("batch", "report-a")
	exp.SetRate("batch", "report-b", 20e3)
	exp.SetRate("late", "new-1", 8e3)

	srv.WaitScraped(t, anyPod, p.Add(o.HistoryWindow+1500*time.Millisecond), 30*time.Second)
	exp.SetRate("shop", "web-1", 2e6)
	tb := time.Now()
	srv.WaitScraped(t, anyPod, tb.Add(o.ShortWindow+1100*time.Millisecond), 20*time.Second)

	ctx := context.Background()
	t.Run("steady", func(t *testing.T) {
		got, err := src.Rates(ctx, tb)
		require.NoError(t, err)
		for _, c := range []struct {
			app  egressd.App
			pods []string
			tol  float64 // report's pods start and end between scrapes
		}{
			{web, []string{"web-1", "web-2"}, 0.1},
			{api, []string{"api-1"}, 0.1},
			{report, []string{"report-a", "report-b"}, 0.15},
		} {
			r, ok := got[c.app]
			require.True(t, ok, "no rate for %s in %v", c.app, got)
			cur, avg := promTruth(exp, o, tb, c.app.Namespace, c.pods...)
			promNear(t, c.app.String()+" Current", cur, r.Current, c.tol)
			promNear(t, c.app.String()+" Average", avg, r.Average, c.tol)
			promNear(t, c.app.String()+" Current/Average", 1, r.Current/r.Average, 2*c.tol)
			require.Equal(t, o.HistoryWindow, r.HistoryCovered, "%s covers the whole history", c.app)
		}
		// Churn: report-b replaced report-a; both made the average.
		promNear(t, "report Average", 20e3, got[report].Average, 0.15)
		require.Equal(t, []string{"report-b", "report-a"}, got[report].Pods)

		young := got[late]
		require.Greater(t, young.HistoryCovered, time.Duration(0))
		require.Less(t, young.HistoryCovered, o.HistoryWindow, "an app started mid-history is not fully covered")

		require.Len(t, got, 4, "stranger and the node's own interface are nobody's")
		require.Equal(t, 1, src.Stats().UnknownPods)
	})

	t.Run("burst", func(t *testing.T) {
		now := tb.Add(o.ShortWindow)
		got, err := src.Rates(ctx, now)
		require.NoError(t, err)
		r := got[web]
		cur, avg := promTruth(exp, o, now, "shop", "web-1", "web-2")
		promNear(t, "web Current", cur, r.Current, 0.1)
		promNear(t, "web Average", avg, r.Average, 0.1)
		require.Greater(t, r.Current, 20*r.Average, "a 50x burst")
		require.Equal(t, []string{"web-1", "web-2"}, r.Pods, "the bursting pod first")
		require.Equal(t, o.HistoryWindow, r.HistoryCovered)

		cur, avg = promTruth(exp, o, now, "pay", "api-1")
		promNear(t, "api Current", cur, got[api].Current, 0.1)
		promNear(t, "api Average", avg, got[api].Average, 0.1)
	})
	t.Logf("total %v", time.Since(start).Round(time.Millisecond))
}

// TestPrometheusQueriesRunOnRealPrometheus evaluates the PromQL of many
// option sets on the real Prometheus: every query must be accepted and
// return a vector, and Rates must succeed.
func TestPrometheusQueriesRunOnRealPrometheus(t *testing.T) {
	t.Parallel()
	exp := promtest.NewExporter(promtest.ExporterOptions{PauseContainer: true})
	exp.SetRate("shop", "web-1", 1000)
	addr := promtest.Serve(t, exp.Handler())
	srv := promtest.Start(t, promtest.Options{Targets: []promtest.Target{{Address: addr}}})

	pods := promNewPodApps(t)
	promObserve(pods, egressd.App{Namespace: "shop", Name: "web"}, "web-1", time.Now())
	c, err := api.NewClient(api.Config{Address: srv.URL()})
	require.NoError(t, err)
	promAPI := v1.NewAPI(c)

	for _, tc := range []struct {
		name string
		edit func(*detector.PrometheusOptions)
	}{
		{"defaults", func(*detector.PrometheusOptions) {}},
		{"interface matcher", func(o *detector.PrometheusOptions) { o.ExtraMatchers = `interface="eth0"` }},
		{"regexp matchers, blanks, trailing comma", func(o *detector.PrometheusOptions) {
			o.ExtraMatchers = ` interface=~"eth.*" , container!="POD", `
		}},
		{"single and back quotes", func(o *detector.PrometheusOptions) {
			o.ExtraMatchers = `image!='', name!~` + "`k8s_.*`" + `,id!='it\'s'`
		}},
		{"compound windows", func(o *detector.PrometheusOptions) {
			o.ShortWindow, o.HistoryWindow = 90*time.Second, 25*time.Hour+30*time.Second
		}},
		{"week history", func(o *detector.PrometheusOptions) { o.HistoryWindow = 7 * 24 * time.Hour }},
		{"smallest windows", func(o *detector.PrometheusOptions) {
			o.ShortWindow, o.HistoryWindow, o.CoverageStep = time.Second, 2*time.Second, time.Second
		}},
		{"odd coverage step", func(o *detector.PrometheusOptions) { o.CoverageStep = 7 * time.Minute }},
		{"other metric", func(o *detector.PrometheusOptions) { o.Metric = "container_network_receive_bytes_total" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := promOpts(srv.URL())
			tc.edit(&o)
			require.NoError(t, o.Validate())
			q := o.Queries()
			for _, expr := range []string{q.Current, q.Average, q.FirstSample} {
				v, warnings, _, err := promAPI.Query(context.Background(), expr, time.Now())
				require.NoError(t, err, "Prometheus rejected %s", expr)
				require.Empty(t, warnings, expr)
				require.Equal(t, model.ValVector, v.Type(), expr)
			}
			src, err := detector.NewPrometheusSource(o, pods, nil)
			require.NoError(t, err)
			_, err = src.Rates(context.Background(), time.Now())
			require.NoError(t, err)
		})
	}
}
