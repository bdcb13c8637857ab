package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/egressd/egressd/alerts"
	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/detector"
	"github.com/egressd/egressd/httpapi"
)

// TestPrometheusRule checks egressd's health alerts with the real promtool
// (syntax, then the unit tests in testdata/prometheusrule_test.yml) and
// against the metrics egressd registers: every metric name, label name and
// label value an expression uses must exist.
func TestPrometheusRule(t *testing.T) {
	t.Parallel()
	promtool := requireTool(t, "promtool", "prometheus")
	objs := build(t, baseDir)
	pr := one[*monitoringv1.PrometheusRule](t, objs)
	svc := one[*corev1.Service](t, objs)

	// promtool reads a Prometheus rule file: the PrometheusRule's spec, as
	// the Operator hands it to Prometheus.
	var spec any
	for _, o := range objs {
		if o.Kind == "PrometheusRule" {
			spec = o.Raw["spec"]
		}
	}
	rules, err := yaml.Marshal(spec)
	require.NoError(t, err)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "egressd-rules.yml"), rules, 0o644))
	unit, err := os.ReadFile("testdata/prometheusrule_test.yml")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "rules_test.yml"), unit, 0o644))
	run(t, 0, dir, nil, promtool, "check", "rules", "egressd-rules.yml")
	run(t, 0, dir, nil, promtool, "test", "rules", "rules_test.yml")

	metrics := registeredMetrics(t)
	sources := metricSources(t)
	// Labels the Prometheus Operator adds to every scraped series.
	targetLabels := map[string]bool{"job": true, "namespace": true, "pod": true, "instance": true, "service": true, "endpoint": true, "container": true}
	selector := regexp.MustCompile(`\b([a-z_:][a-z0-9_:]*)\s*(\{[^}]*\})?`)
	matcher := regexp.MustCompile(`([a-z_][a-z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
	grouping := regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)

	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	require.Len(t, pr.Spec.Groups, 1)
	seen := map[string]bool{}
	for _, r := range pr.Spec.Groups[0].Rules {
		t.Run(r.Alert, func(t *testing.T) {
			require.NotEmpty(t, r.Alert, "every rule is an alert")
			require.False(t, seen[r.Alert], "alert names are unique")
			seen[r.Alert] = true
			require.True(t, strings.HasPrefix(r.Alert, "Egressd"), "health alerts are named Egressd*")
			require.Contains(t, []string{"warning", "critical"}, r.Labels["severity"])
			require.NotEmpty(t, r.Annotations["summary"])
			require.NotEmpty(t, r.Annotations["description"])
			require.Regexp(t, "(?m)^ *\\| `"+r.Alert+"` \\|.*\\| "+r.Labels["severity"]+" \\|$", string(readme), "deploy/README.md's table of health alerts lists it with its severity")

			expr := r.Expr.String()
			for _, m := range selector.FindAllStringSubmatch(expr, -1) {
				name := m[1]
				if name == "up" {
					// Prometheus' own: the scrape job is named after the Service.
					for _, mm := range matcher.FindAllStringSubmatch(m[2], -1) {
						require.Equal(t, "job", mm[1])
						require.Equal(t, svc.Name, mm[3], "job of up{}")
					}
					continue
				}
				if !strings.HasPrefix(name, "egressd_") {
					continue
				}
				labelNames, ok := metrics[name]
				require.True(t, ok, "%s is not a metric egressd registers", name)
				for _, mm := range matcher.FindAllStringSubmatch(m[2], -1) {
					label, op, value := mm[1], mm[2], mm[3]
					if targetLabels[label] {
						continue
					}
					require.True(t, labelNames[label], "%s has no label %q", name, label)
					values := []string{value}
					if op == "=~" || op == "!~" {
						values = strings.Split(value, "|")
					}
					pkg := strings.SplitN(name, "_", 3)[1]
					for _, v := range values {
						require.Contains(t, sources[pkg], `"`+v+`"`, "%s{%s=%q}: %q is not a value %s/metrics.go sets", name, label, v, v, pkg)
					}
				}
			}
			for _, m := range grouping.FindAllStringSubmatch(expr, -1) {
				for _, l := range strings.Split(m[1], ",") {
					l = strings.TrimSpace(l)
					known := targetLabels[l]
					for _, labelNames := range metrics {
						known = known || labelNames[l]
					}
					require.True(t, known, "%q in %q is neither a target label nor a label of an egressd metric", l, m[0])
				}
			}
		})
	}

	// The unit tests' series are egressd metrics too.
	for _, m := range regexp.MustCompile(`series: '(egressd_[a-z0-9_]+)\{`).FindAllStringSubmatch(string(unit), -1) {
		require.Contains(t, metrics, m[1], "testdata/prometheusrule_test.yml")
	}
}

// registeredMetrics returns the name and variable label names of every
// metric the collector, detector, alerts and httpapi packages register.
func registeredMetrics(t *testing.T) map[string]map[string]bool {
	t.Helper()
	r := &descRecorder{}
	collector.NewMetrics(r)
	detector.NewMetrics(r)
	alerts.NewMetrics(r)
	httpapi.NewMetrics(r)
	detector.RegisterPodAppMetrics(r, nil) // described only: its functions run at a scrape
	// Desc has no accessors: its String form is
	// Desc{fqName: "...", help: "...", ..., variableLabels: {a,b}}.
	re := regexp.MustCompile(`^Desc\{fqName: "([^"]+)",.*variableLabels: \{([^}]*)\}\}$`)
	out := map[string]map[string]bool{}
	for _, d := range r.descs {
		m := re.FindStringSubmatch(d.String())
		require.NotNil(t, m, "unexpected Desc format %s", d)
		labels := map[string]bool{}
		for _, l := range strings.Split(m[2], ",") {
			if l != "" {
				labels[l] = true
			}
		}
		out[m[1]] = labels
	}
	require.Contains(t, out, "egressd_collector_hubble_stream_up")
	return out
}

// metricSources returns the source of each package's metrics.go, where the
// label values are declared, by package name.
func metricSources(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, pkg := range []string{"collector", "detector", "alerts"} {
		b, err := os.ReadFile(filepath.Join("..", pkg, "metrics.go"))
		require.NoError(t, err)
		out[pkg] = string(b)
	}
	return out
}

// descRecorder is a prometheus.Registerer that keeps the descriptors of
// what is registered with it.
type descRecorder struct{ descs []*prometheus.Desc }

func (r *descRecorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		r.descs = append(r.descs, d)
	}
	return nil
}

func (r *descRecorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r *descRecorder) Unregister(prometheus.Collector) bool { return true }
