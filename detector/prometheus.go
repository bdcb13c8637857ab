package detector

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"golang.org/x/sync/errgroup"

	"github.com/egressd/egressd"
)

// PrometheusOptions configure a PrometheusSource.
type PrometheusOptions struct {
	// URL is the Prometheus server, e.g. http://prometheus:9090 (a path
	// prefix such as /prometheus is kept). user:password@ in the URL is
	// sent as HTTP basic auth and never printed.
	URL string
	// ShortWindow is the window of the current rate. It should span at
	// least four scrape intervals of the metric (cAdvisor is commonly
	// scraped every 15-30 s).
	ShortWindow time.Duration
	// HistoryWindow is the history the current rate is compared with; the
	// average is taken over the part of it before ShortWindow.
	HistoryWindow time.Duration
	// CoverageStep is the resolution of HistoryCovered (the subquery step).
	// 0 means HistoryWindow/288, at least 1 s: 5 m for 24 h.
	CoverageStep time.Duration
	// Timeout bounds one Rates call, all queries included; it is also
	// sent to Prometheus as the queries' evaluation timeout.
	Timeout time.Duration
	// Metric is the per-pod transmit byte counter.
	Metric string
	// ExtraMatchers are label matchers added to the metric's selector,
	// comma-separated PromQL syntax: `interface="eth0"`,
	// `cluster="prod",job="kubelet"`. With one Prometheus for several
	// clusters, a cluster matcher keeps pods of other clusters out.
	ExtraMatchers string
	// HTTPClient, when set, makes the requests (TLS settings, bearer
	// token transport). Nil uses client_golang's default transport.
	HTTPClient *http.Client
}

// DefaultPrometheusOptions returns the documented defaults:
// cAdvisor's container_network_transmit_bytes_total, the rate over the last
// 2 minutes against the 24 h history. URL has no default.
func DefaultPrometheusOptions() PrometheusOptions {
	return PrometheusOptions{
		ShortWindow:   2 * time.Minute,
		HistoryWindow: 24 * time.Hour,
		Timeout:       10 * time.Second,
		Metric:        "container_network_transmit_bytes_total",
	}
}

// Validate reports the first invalid field.
func (o PrometheusOptions) Validate() error {
	if o.URL == "" {
		return errors.New("detector: PrometheusOptions.URL is empty: want the Prometheus server, e.g. http://prometheus:9090")
	}
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		shown := "(unparsable)"
		if err == nil {
			shown = strconv.Quote(u.Redacted())
		}
		return fmt.Errorf("detector: PrometheusOptions.URL %s: want http:// or https:// and a host, e.g. http://prometheus:9090", shown)
	}
	switch {
	case o.ShortWindow < time.Second || o.ShortWindow%time.Second != 0:
		return errors.New("detector: PrometheusOptions.ShortWindow must be whole seconds, at least 1s (e.g. 2m)")
	case o.HistoryWindow < 2*o.ShortWindow || o.HistoryWindow%time.Second != 0:
		return errors.New("detector: PrometheusOptions.HistoryWindow must be whole seconds and at least twice ShortWindow (e.g. 24h)")
	case o.CoverageStep < 0 || o.CoverageStep%time.Second != 0 || o.CoverageStep > o.HistoryWindow:
		return errors.New("detector: PrometheusOptions.CoverageStep must be whole seconds, at most HistoryWindow (or 0 for HistoryWindow/288)")
	case o.Timeout <= 0:
		return errors.New("detector: PrometheusOptions.Timeout must be > 0 (e.g. 10s)")
	case !model.LegacyValidation.IsValidMetricName(o.Metric):
		return fmt.Errorf("detector: PrometheusOptions.Metric %q is not a metric name (letters, digits, '_' and ':', not starting with a digit)", o.Metric)
	}
	if err := promCheckMatchers(o.ExtraMatchers); err != nil {
		return fmt.Errorf("detector: PrometheusOptions.ExtraMatchers %q: %v; want comma-separated label matchers such as interface=\"eth0\"", o.ExtraMatchers, err)
	}
	return nil
}

// coverageStep returns CoverageStep or its default.
func (o PrometheusOptions) coverageStep() time.Duration {
	if o.CoverageStep > 0 {
		return o.CoverageStep
	}
	return max(time.Second, (o.HistoryWindow / 288).Truncate(time.Second))
}

// PrometheusQueries are the PromQL expressions a PrometheusSource evaluates,
// each as an instant query at the time Rates is given. Every one returns one
// sample per (namespace, pod).
type PrometheusQueries struct {
	// Current: bytes/s over ShortWindow.
	Current string
	// Average: bytes/s over the HistoryWindow minus ShortWindow that ends
	// where ShortWindow begins.
	Average string
	// FirstSample: the Unix time of the pod's earliest sample within
	// HistoryWindow (at CoverageStep resolution).
	FirstSample string
}

// Queries returns the PromQL that a PrometheusSource with these options
// evaluates. The options must be valid.
//
// Why these expressions:
//
//   - Series of one pod are deduplicated with max by (namespace, pod,
//     interface) before they are summed. Every container of a pod shares
//     the pod's network namespace, and depending on the runtime cAdvisor
//     reports the same interface counters for the pod cgroup, the pause
//     container and sometimes each container; a second scrape job of the
//     kubelet duplicates them again. Summing those would multiply the
//     bytes; their maximum is the pod's traffic. Interfaces are then summed
//     (ExtraMatchers may keep only eth0).
//
//   - The average counts bytes, not per-pod rates: increase() over the
//     window divided by the window's length. Pods churn (a Deployment rolls
//     out, a CronJob runs), and the app's average is all the bytes its pods
//     sent in the window, whichever pods sent them, divided by the window.
//     rate() over the same window is the same number, since it too divides
//     by the range and not by a series' lifetime; increase()/seconds says
//     so in the query. What would be wrong is averaging per-pod averages,
//     or dividing by how long each pod lived: a pod that sent 1 GB in its
//     one hour of life adds 1 GB/24 h to the app's daily average, not
//     1 GB/h. Pods that existed only before or after a rollout are summed
//     per app in Go, through PodApps, since Prometheus knows no apps.
//
//   - The average window ends where the current window begins (offset), as
//     the Hubble flow rate does: a burst is compared with the history
//     before it, not with a history that already contains it.
//
//   - Coverage is the age of the app's oldest pod series within the
//     history, not the sum of its pods' lifetimes: an app whose pods were
//     replaced every hour has a full day of history. The subquery reaches
//     one step before the window so that an app present all along reads
//     as exactly HistoryWindow despite step alignment; timestamp() yields
//     the sample's own time, so a pod is never older than its first
//     sample. Apps younger than the window are not judged by the volume
//     rule, whose average would otherwise be diluted by the missing time.
func (o PrometheusOptions) Queries() PrometheusQueries {
	sel := o.Metric + `{namespace!="",pod!=""`
	if m := promTrimMatchers(o.ExtraMatchers); m != "" {
		sel += "," + m
	}
	sel += "}"
	short := model.Duration(o.ShortWindow).String()
	hist := o.HistoryWindow - o.ShortWindow
	step := o.coverageStep()
	perPod := func(inner string) string {
		return "sum by (namespace, pod) (max by (namespace, pod, interface) (" + inner + "))"
	}
	return PrometheusQueries{
		Current: perPod("rate(" + sel + "[" + short + "])"),
		Average: perPod("increase("+sel+"["+model.Duration(hist).String()+"] offset "+short+")") +
			" / " + strconv.FormatInt(int64(hist/time.Second), 10),
		FirstSample: "min by (namespace, pod) (min_over_time(timestamp(" + sel + ")[" +
			model.Duration(o.HistoryWindow+step).String() + ":" + model.Duration(step).String() + "]))",
	}
}

// PrometheusStats describes the last successful Rates call.
type PrometheusStats struct {
	// Pods is the number of pods with a series that PodApps attributed to
	// an app; Apps the number of apps they made.
	Pods, Apps int
	// UnknownPods is the number of pods with a series that PodApps does
	// not know (never seen egressing, or forgotten): they are ignored.
	UnknownPods int
	// Duration is how long the queries took.
	Duration time.Duration
}

// PrometheusSource is the RateSource of cAdvisor's per-pod transmit bytes,
// read through the Prometheus HTTP API and summed per app with PodApps. See
// PrometheusOptions.Queries for the PromQL and why.
//
// Pods that PodApps does not know are ignored and counted (Stats): cAdvisor
// counts every byte a pod sends, in-cluster traffic included, but egressd
// only knows the app of pods it has seen reaching outside the cluster. The
// mapping is applied to the whole history at each call, so a pod counted in
// an app's current rate is counted in its average too.
type PrometheusSource struct {
	opts    PrometheusOptions
	queries PrometheusQueries
	api     v1.API
	pods    PodApps
	log     *slog.Logger

	mu    sync.Mutex
	stats PrometheusStats
}

// NewPrometheusSource returns a source that queries opts.URL. It does not
// contact the server: the first Rates call does.
func NewPrometheusSource(opts PrometheusOptions, pods PodApps, log *slog.Logger) (*PrometheusSource, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if pods == nil {
		return nil, errors.New("detector: NewPrometheusSource needs a PodApps (a PodAppMap fed by the collector)")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c, err := api.NewClient(api.Config{Address: opts.URL, Client: opts.HTTPClient})
	if err != nil {
		return nil, fmt.Errorf("detector: PrometheusOptions.URL: %w", err)
	}
	return &PrometheusSource{
		opts:    opts,
		queries: opts.Queries(),
		api:     v1.NewAPI(c),
		pods:    pods,
		log:     log,
	}, nil
}

// Stats returns the figures of the last successful Rates call.
func (s *PrometheusSource) Stats() PrometheusStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// promPod is one pod's figures from the three queries.
type promPod struct {
	app      egressd.App
	name     string
	current  float64
	average  float64
	first    float64 // Unix seconds; +Inf when unknown
	hasRates bool
}

// Rates evaluates the three queries at now, concurrently, and sums them per
// app. An app's Pods are sorted by current rate, highest first, so Pods[0]
// is the one to name in an alert.
func (s *PrometheusSource) Rates(ctx context.Context, now time.Time) (map[egressd.App]Rate, error) {
	start := time.Now()
	if now.IsZero() {
		now = start
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()

	var current, average, first model.Vector
	g, gctx := errgroup.WithContext(ctx)
	for _, q := range []struct {
		name, expr string
		into       *model.Vector
	}{
		{"current rate", s.queries.Current, &current},
		{"average rate", s.queries.Average, &average},
		{"first sample", s.queries.FirstSample, &first},
	} {
		g.Go(func() error {
			v, err := s.query(gctx, q.name, q.expr, now)
			*q.into = v
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}

	pods := make(map[podAppKey]*promPod)
	unknown := make(map[podAppKey]struct{})
	lookup := func(m model.Metric) *promPod {
		k := podAppKey{string(m["namespace"]), string(m["pod"])}
		if p := pods[k]; p != nil {
			return p
		}
		if _, ok := unknown[k]; ok {
			return nil
		}
		app, ok := s.pods.AppOf(k.namespace, k.pod)
		if !ok {
			unknown[k] = struct{}{}
			return nil
		}
		p := &promPod{app: app, name: k.pod, first: math.Inf(1)}
		pods[k] = p
		return p
	}
	for _, smp := range current {
		if p := lookup(smp.Metric); p != nil && promFinite(smp.Value) {
			p.current, p.hasRates = float64(smp.Value), true
		}
	}
	for _, smp := range average {
		if p := lookup(smp.Metric); p != nil && promFinite(smp.Value) {
			p.average, p.hasRates = float64(smp.Value), true
		}
	}
	for _, smp := range first {
		if p := lookup(smp.Metric); p != nil && promFinite(smp.Value) {
			p.first = float64(smp.Value)
		}
	}

	type appAcc struct {
		rate  Rate
		first float64
		pods  []*promPod
	}
	apps := make(map[egressd.App]*appAcc)
	for _, p := range pods {
		if !p.hasRates {
			continue // a pod with a first sample but no rate yet
		}
		a := apps[p.app]
		if a == nil {
			a = &appAcc{first: math.Inf(1)}
			apps[p.app] = a
		}
		a.rate.Current += p.current
		a.rate.Average += p.average
		a.first = min(a.first, p.first)
		a.pods = append(a.pods, p)
	}
	nowSec := float64(now.UnixNano()) / 1e9
	out := make(map[egressd.App]Rate, len(apps))
	for app, a := range apps {
		slices.SortFunc(a.pods, func(x, y *promPod) int {
			if c := cmp.Compare(y.current, x.current); c != 0 {
				return c
			}
			return strings.Compare(x.name, y.name)
		})
		a.rate.Pods = make([]string, len(a.pods))
		for i, p := range a.pods {
			a.rate.Pods[i] = p.name
		}
		if !math.IsInf(a.first, 1) {
			covered := time.Duration((nowSec - a.first) * float64(time.Second))
			a.rate.HistoryCovered = min(max(covered, 0), s.opts.HistoryWindow)
		}
		out[app] = a.rate
	}

	st := PrometheusStats{Pods: len(pods), Apps: len(out), UnknownPods: len(unknown), Duration: time.Since(start)}
	s.mu.Lock()
	s.stats = st
	s.mu.Unlock()
	s.log.Debug("prometheus_rates", "apps", st.Apps, "pods", st.Pods, "unknown_pods", st.UnknownPods, "duration", st.Duration)
	return out, nil
}

// query runs one instant query; errors name it and show its PromQL.
func (s *PrometheusSource) query(ctx context.Context, name, expr string, at time.Time) (model.Vector, error) {
	v, warnings, _, err := s.api.Query(ctx, expr, at, v1.WithTimeout(s.opts.Timeout))
	if err != nil {
		return nil, fmt.Errorf("detector: prometheus %s query %s: %w", name, expr, err)
	}
	if len(warnings) > 0 {
		s.log.Warn("prometheus_query_warnings", "query", name, "promql", expr, "warnings", strings.Join(warnings, "; "))
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("detector: prometheus %s query %s: want an instant vector, got %s", name, expr, v.Type())
	}
	return vec, nil
}

func promFinite(v model.SampleValue) bool {
	f := float64(v)
	return !math.IsNaN(f) && !math.IsInf(f, 0)
}

// promTrimMatchers drops surrounding blanks and a trailing comma.
func promTrimMatchers(s string) string {
	s = strings.TrimSpace(s)
	s = strings.TrimSuffix(s, ",")
	return strings.TrimSpace(s)
}

// promCheckMatchers checks that s is a comma-separated list of PromQL label
// matchers (name, one of = != =~ !~, a quoted string), so that a typo is
// reported at start-up with the option's name rather than by Prometheus at
// every query. Regular expressions are compiled: Prometheus and Go share
// RE2 syntax.
func promCheckMatchers(s string) error {
	s = promTrimMatchers(s)
	for i := 0; s != ""; i++ {
		s = strings.TrimLeft(s, " \t")
		n := 0
		for n < len(s) && (s[n] == '_' || s[n] >= 'a' && s[n] <= 'z' || s[n] >= 'A' && s[n] <= 'Z' || n > 0 && s[n] >= '0' && s[n] <= '9') {
			n++
		}
		if n == 0 {
			return fmt.Errorf("matcher %d: want a label name at %q", i+1, s)
		}
		name := s[:n]
		s = strings.TrimLeft(s[n:], " \t")
		var op string
		for _, o := range []string{"=~", "!~", "!=", "="} {
			if strings.HasPrefix(s, o) {
				op = o
				break
			}
		}
		if op == "" {
			return fmt.Errorf("matcher %s: want =, !=, =~ or !~ after the label name", name)
		}
		s = strings.TrimLeft(s[len(op):], " \t")
		val, rest, err := promUnquote(s)
		if err != nil {
			return fmt.Errorf("matcher %s%s: %v", name, op, err)
		}
		if op == "=~" || op == "!~" {
			if _, err := regexp.Compile("^(?:" + val + ")$"); err != nil {
				return fmt.Errorf("matcher %s%s: %v", name, op, err)
			}
		}
		s = strings.TrimLeft(rest, " \t")
		if s == "" {
			break
		}
		if s[0] != ',' {
			return fmt.Errorf("matcher %s%s: want ',' between matchers, got %q", name, op, s)
		}
		s = s[1:]
	}
	return nil
}

// promUnquote reads one PromQL string ("...", '...' or `...`) at the start
// of s and returns its value and the rest of s.
func promUnquote(s string) (val, rest string, err error) {
	if s == "" || (s[0] != '"' && s[0] != '\'' && s[0] != '`') {
		return "", "", errors.New("want a quoted value")
	}
	q := s[0]
	for i := 1; i < len(s); i++ {
		switch {
		case s[i] == '\\' && q != '`':
			i++
		case s[i] == '\n' && q != '`':
			return "", "", errors.New("newline in quoted value")
		case s[i] == q:
			lit := s[:i+1]
			if q == '\'' {
				lit = promRequote(s[1:i])
			}
			v, err := strconv.Unquote(lit)
			if err != nil {
				return "", "", fmt.Errorf("bad quoted value %s", s[:i+1])
			}
			return v, s[i+1:], nil
		}
	}
	return "", "", errors.New("unterminated quoted value")
}

// promRequote turns the body of a single-quoted PromQL string into a Go
// double-quoted literal: the escapes are the same, only the quotes differ.
func promRequote(body string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(body); i++ {
		switch c := body[i]; {
		case c == '\\' && i+1 < len(body) && body[i+1] == '\'':
			b.WriteByte('\'')
			i++
		case c == '\\' && i+1 < len(body):
			b.WriteByte(c)
			b.WriteByte(body[i+1])
			i++
		case c == '"':
			b.WriteString(`\"`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
