package promtest

import (
	"fmt"
	"hash/fnv"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// TransmitMetric is the metric the Exporter serves.
const TransmitMetric = "container_network_transmit_bytes_total"

// ExporterOptions configure an Exporter. The zero value is ready to use.
type ExporterOptions struct {
	// Now is the exporter's clock; nil means time.Now. Counters are
	// computed at Now when scraped and stamped with it.
	Now func() time.Time
	// PauseContainer also exposes each pod's counter a second time, for
	// its pause container (container="POD"), as cAdvisor does with some
	// runtimes: the pod's containers share one network namespace, so both
	// series carry the same bytes.
	PauseContainer bool
	// NodeBytesPerSecond, when > 0, adds the node's own interface (id="/",
	// empty namespace and pod), which is no pod's traffic.
	NodeBytesPerSecond float64
	// NoTimestamps leaves the samples' timestamps out, so Prometheus stamps
	// them with the scrape time and marks series that vanish as stale.
	NoTimestamps bool
}

// Exporter is a cAdvisor-shaped exporter of per-pod transmit byte counters
// that a test drives. It is safe for concurrent use.
type Exporter struct {
	opts ExporterOptions
	reg  *prometheus.Registry
	desc *prometheus.Desc

	mu      sync.Mutex
	start   time.Time
	pods    map[podKey]*pod
	removed map[podKey]*pod
}

type podKey struct{ namespace, name string }

// pod is one pod's counter: piecewise linear in time, one segment per
// SetRate.
type pod struct {
	created, removed time.Time // removed is zero while the pod runs
	segs             []segment
}

type segment struct {
	from time.Time
	rate float64 // bytes/s
}

// NewExporter returns an exporter with no pods.
func NewExporter(opts ExporterOptions) *Exporter {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	e := &Exporter{
		opts: opts,
		reg:  prometheus.NewRegistry(),
		desc: prometheus.NewDesc(TransmitMetric, "Cumulative count of bytes transmitted",
			[]string{"container", "id", "image", "interface", "name", "namespace", "pod"}, nil),
		pods:    make(map[podKey]*pod),
		removed: make(map[podKey]*pod),
	}
	e.start = opts.Now()
	e.reg.MustRegister(collector{e})
	return e
}

// SetRate makes the pod send bytesPerSecond from now on, starting the pod
// (its counter at 0) if it is not running.
func (e *Exporter) SetRate(namespace, podName string, bytesPerSecond float64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.opts.Now()
	k := podKey{namespace, podName}
	p := e.pods[k]
	if p == nil {
		p = &pod{created: now}
		e.pods[k] = p
		delete(e.removed, k)
	}
	p.segs = append(p.segs, segment{from: now, rate: bytesPerSecond})
}

// RemovePod stops the pod: its series is no longer served, and its byte
// count stays at what it was now.
func (e *Exporter) RemovePod(namespace, podName string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := podKey{namespace, podName}
	if p := e.pods[k]; p != nil {
		p.removed = e.opts.Now()
		e.removed[k] = p
		delete(e.pods, k)
	}
}

// Bytes returns the pod's counter at time at: 0 before it started, and its
// final count after it was removed.
func (e *Exporter) Bytes(namespace, podName string, at time.Time) float64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := podKey{namespace, podName}
	p := e.pods[k]
	if p == nil {
		p = e.removed[k]
	}
	if p == nil {
		return 0
	}
	return p.bytes(at)
}

func (p *pod) bytes(at time.Time) float64 {
	end := at
	if !p.removed.IsZero() && p.removed.Before(end) {
		end = p.removed
	}
	var total float64
	for i, s := range p.segs {
		from := s.from
		to := end
		if i+1 < len(p.segs) && p.segs[i+1].from.Before(to) {
			to = p.segs[i+1].from
		}
		if to.After(from) {
			total += s.rate * to.Sub(from).Seconds()
		}
	}
	return total
}

// Handler serves the metrics in the Prometheus text format.
func (e *Exporter) Handler() http.Handler {
	return promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{})
}

// Serve serves h on a free port of 127.0.0.1 until t ends and returns its
// host:port, the form Target.Address takes.
func Serve(t testing.TB, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// collector adapts the Exporter to the registry without exporting Collect.
type collector struct{ e *Exporter }

func (c collector) Describe(ch chan<- *prometheus.Desc) { ch <- c.e.desc }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	e := c.e
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.opts.Now()
	emit := func(v float64, labels ...string) {
		m := prometheus.MustNewConstMetric(e.desc, prometheus.CounterValue, v, labels...)
		if !e.opts.NoTimestamps {
			m = prometheus.NewMetricWithTimestamp(now, m)
		}
		ch <- m
	}
	if e.opts.NodeBytesPerSecond > 0 {
		emit(e.opts.NodeBytesPerSecond*now.Sub(e.start).Seconds(), "", "/", "", "ens3", "", "", "")
	}
	for k, p := range e.pods {
		v := p.bytes(now)
		uid := podUID(k)
		cgroup := "/kubepods/besteffort/pod" + uid
		// cAdvisor's labels: container and name are empty for the pod's
		// own cgroup.
		emit(v, "", cgroup, "", "eth0", "", k.namespace, k.name)
		if e.opts.PauseContainer {
			emit(v, "POD", cgroup+"/"+uid[:12], "registry.k8s.io/pause:3.9", "eth0",
				fmt.Sprintf("k8s_POD_%s_%s_%s_0", k.name, k.namespace, uid), k.namespace, k.name)
		}
	}
}

// podUID makes a stable UID-like string for a pod.
func podUID(k podKey) string {
	h := fnv.New64a()
	h.Write([]byte(k.namespace + "/" + k.name))
	s := fmt.Sprintf("%016x", h.Sum64())
	return s[:8] + "-" + s[8:12] + "-" + s[12:16] + "-0000-000000000000"
}
