package detector_test

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/detector"
	"github.com/egressd/egressd/detector/promtest"
)

// volStore is a Store made of functions, so that the test decides what
// each call records.
type volStore struct {
	RaiseFn   func(ctx context.Context, a egressd.Anomaly) (bool, error)
	ResolveFn func(ctx context.Context, fingerprint string, at time.Time) error
}

func (s volStore) Raise(ctx context.Context, a egressd.Anomaly) (bool, error) {
	return s.RaiseFn(ctx, a)
}

func (s volStore) Resolve(ctx context.Context, fingerprint string, at time.Time) error {
	return s.ResolveFn(ctx, fingerprint, at)
}

// volRecord is what volStore's functions saw, with the wall time of each call.
type volRecord struct {
	mu         sync.Mutex
	raised     []egressd.Anomaly
	raisedAt   []time.Time
	resolved   []string
	resolvedAt []time.Time // the ResolvedAt the detector gave
}

func (r *volRecord) store() volStore {
	return volStore{
		RaiseFn: func(_ context.Context, a egressd.Anomaly) (bool, error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			for _, b := range r.raised {
				if b.Fingerprint == a.Fingerprint {
					return false, nil
				}
			}
			r.raised = append(r.raised, a)
			r.raisedAt = append(r.raisedAt, time.Now())
			return true, nil
		},
		ResolveFn: func(_ context.Context, fp string, at time.Time) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.resolved = append(r.resolved, fp)
			r.resolvedAt = append(r.resolvedAt, at)
			return nil
		},
	}
}

func (r *volRecord) counts() (raised, resolved int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.raised), len(r.resolved)
}

// volEval is one Rates call as the detector made it.
type volEval struct {
	rates map[egressd.App]detector.Rate // as the Prometheus source returned them
	err   error
}

// volSource sits between the detector and the PrometheusSource. It records
// every evaluation, so the test can wait on the rule's own rhythm instead of
// sleeping, and it reports "the source's whole history is covered" as the
// detector's HistoryWindow.
//
// Why the translation: VolumeOptions.Validate wants whole minutes for
// ShortWindow and HistoryWindow (the Hubble flow rate counts per minute), so
// the smallest valid detector has a 2 m history, while this test's
// Prometheus history is seconds long. With an external source the rule
// (volumeRule.step, reached through RunVolume) uses Factor, Floor, Hold and
// Unit, ignores ShortWindow, and uses HistoryWindow twice: as the coverage
// gate (Rate.HistoryCovered >= HistoryWindow) and in the summary's text.
// PrometheusSource caps HistoryCovered at its own HistoryWindow, so without
// the translation no app would ever be judged. Rates, pods and errors pass
// through untouched; a partly covered history is scaled, so a young app
// stays unjudged.
type volSource struct {
	src                    detector.RateSource
	srcHistory, detHistory time.Duration

	mu    sync.Mutex
	evals []volEval
}

func (s *volSource) Rates(ctx context.Context, now time.Time) (map[egressd.App]detector.Rate, error) {
	rates, err := s.src.Rates(ctx, now)
	s.mu.Lock()
	s.evals = append(s.evals, volEval{rates: rates, err: err})
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	out := make(map[egressd.App]detector.Rate, len(rates))
	for a, r := range rates {
		if r.HistoryCovered >= s.srcHistory {
			r.HistoryCovered = s.detHistory
		} else {
			r.HistoryCovered = time.Duration(float64(r.HistoryCovered) * float64(s.detHistory) / float64(s.srcHistory))
		}
		out[a] = r
	}
	return out, nil
}

// judged returns how many evaluations so far had every one of apps with a
// fully covered history, i.e. judged by the rule.
func (s *volSource) judged(apps ...egressd.App) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.evals {
		all := e.err == nil
		for _, a := range apps {
			all = all && e.rates[a].HistoryCovered >= s.srcHistory
		}
		if all {
			n++
		}
	}
	return n
}

func (s *volSource) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.evals)
}

// last describes the newest evaluation, for failure messages.
func (s *volSource) last() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.evals) == 0 {
		return "no evaluation yet"
	}
	e := s.evals[len(s.evals)-1]
	if e.err != nil {
		return fmt.Sprintf("evaluation %d: %v", len(s.evals), e.err)
	}
	apps := make([]string, 0, len(e.rates))
	for a, r := range e.rates {
		apps = append(apps, fmt.Sprintf("%s: current %.0f B/s, average %.0f B/s, covered %s, pods %v",
			a, r.Current, r.Average, r.HistoryCovered, r.Pods))
	}
	sort.Strings(apps)
	return fmt.Sprintf("evaluation %d: %s", len(s.evals), strings.Join(apps, "; "))
}

// volWaitFor polls cond until it holds, failing t after timeout with what
// and the source's newest evaluation.
func volWaitFor(t *testing.T, src *volSource, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (%s)", what, timeout, src.last())
		}
		time.Sleep(20 * time.Millisecond) // poll interval, not a wait for a condition
	}
}

// volLogWriter sends the detector's log to the test's, so that a failing
// Rates call (volume_source_failed) shows up. The test waits for every
// goroutine that logs before it returns.
type volLogWriter struct{ t *testing.T }

func (w volLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestVolumeEndToEndPrometheus runs the volume path on real components: the
// real Prometheus scrapes promtest's cAdvisor-shaped exporter every second;
// a PodAppMap learns pod -> app from the observations a collector would hand
// it; a PrometheusSource with windows of seconds feeds Detector.RunVolume,
// evaluated every second; Detector.Run records anomalies through a Store.
//
// Timeline:
//
//	start  shop/web: web-1 and web-2 at 10 kB/s each; pay/api: api-1 at
//	       15 kB/s. Both apps unjudged until their history is covered.
//	P+H    both apps judged, steadily, and nothing is raised.
//	tb     web-1 bursts so that web sends 1 MB/s, 50x its 20 kB/s.
//	       Factor 10: one egress_volume anomaly for web, held Hold from
//	       when the rule first saw it, naming web-1; none for api.
//	ts     (the anomaly is stored) web-1 is back to 10 kB/s; the anomaly
//	       resolves once web has been calm for Hold.
//
// Windows: the rule stays hot only until the burst has filled enough of the
// average's window (it ends where the short window begins): about
// tb + ShortWindow + 4/49 of the rest of the history at Factor 10 and 50x.
// It must fire before then: it starts about 0.18 ShortWindow after tb (a
// rate over 8 s needs 1.5 s of burst to reach 10x), plus a scrape and an
// evaluation, then Hold. ShortWindow 8 s and HistoryWindow 24 s leave about
// 4 s of slack for a loaded machine and keep the test under a minute.
// The same absorption would end the condition about half a second after
// the stop anyway, so the resolution is checked for what the rule promises
// (same fingerprint, calm for Hold after firing), not for its cause.
func TestVolumeEndToEndPrometheus(t *testing.T) {
	t.Parallel()
	begin := time.Now()
	const (
		every = time.Second
		hold  = 2 * time.Second
		base  = 10e3 // bytes/s of each of web's pods
	)
	web := egressd.App{Cluster: "e2e", Namespace: "shop", Name: "web"}
	api := egressd.App{Cluster: "e2e", Namespace: "pay", Name: "api"}

	exp := promtest.NewExporter(promtest.ExporterOptions{PauseContainer: true})
	exp.SetRate("shop", "web-1", base)
	exp.SetRate("shop", "web-2", base)
	exp.SetRate("pay", "api-1", 1.5*base)
	addr := promtest.Serve(t, exp.Handler())

	// The detector's options must pass Validate (whole minutes; see
	// volSource). Floor is far below every rate, so only Factor keeps the
	// steady apps quiet.
	detOpts := detector.DefaultOptions()
	detOpts.Volume = detector.VolumeOptions{
		Factor:        10,
		Floor:         1000,
		Hold:          hold,
		ShortWindow:   time.Minute,
		HistoryWindow: 2 * time.Minute,
		Unit:          "bytes/s",
	}
	rec := &volRecord{}
	log := slog.New(slog.NewTextHandler(volLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	d, err := detector.New(detOpts, rec.store(), log, detector.NewMetrics(prometheus.NewRegistry()))
	require.NoError(t, err)

	pods, err := detector.NewPodAppMap(detector.DefaultPodAppOptions())
	require.NoError(t, err)
	// The collector hands every observation to each of its sinks: the
	// detector (novelty; the volume comes from Prometheus here) and the
	// pod -> app map.
	observe := func(app egressd.App, pod string) {
		o := &egressd.Observation{
			Time: time.Now(), Kind: egressd.KindConnect, App: app, Pod: pod, Node: "node-1",
			Destination: egressd.Destination{Name: "api.example.com", Port: 443, Protocol: egressd.ProtoTCP},
			NameSource:  egressd.NameFromFlow, Verdict: egressd.VerdictForwarded, Source: "e2e",
		}
		d.Observe(o)
		pods.Observe(o)
	}
	observe(web, "web-1")
	observe(web, "web-2")
	observe(api, "api-1")

	srv := promtest.Start(t, promtest.Options{
		Targets:        []promtest.Target{{Job: "kubelet", Address: addr}},
		ScrapeInterval: time.Second,
	})
	t.Logf("prometheus scraping after %v", time.Since(begin).Round(time.Millisecond))

	po := detector.DefaultPrometheusOptions()
	po.URL = srv.URL()
	po.ShortWindow, po.HistoryWindow, po.CoverageStep = 8*time.Second, 24*time.Second, time.Second
	po.Timeout = 5 * time.Second
	prom, err := detector.NewPrometheusSource(po, pods, nil)
	require.NoError(t, err)
	src := &volSource{src: prom, srcHistory: po.HistoryWindow, detHistory: detOpts.Volume.HistoryWindow}

	// Shutdown: RunVolume stops first, then Run drains what it queued.
	// Both must be gone before the test returns: they log through t.
	ctx, cancel := context.WithCancel(context.Background())
	runDone, volDone := make(chan error, 1), make(chan error, 1)
	go func() { runDone <- d.Run(ctx) }()
	go func() { volDone <- d.RunVolume(ctx, src, every, time.Now) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		require.NoError(t, <-volDone)
		require.NoError(t, <-runDone)
	}
	defer stop()

	// Steady: both apps judged for a few evaluations; nothing raised.
	volWaitFor(t, src, po.HistoryWindow+30*time.Second, "both apps judged 3 times", func() bool {
		return src.judged(web, api) >= 3
	})
	raised, _ := rec.counts()
	require.Zero(t, raised, "steady apps raised an anomaly: %s", src.last())
	t.Logf("steady and judged at %v: %s", time.Since(begin).Round(time.Millisecond), src.last())

	// Burst: web-1 sends 980 kB/s, web 1 MB/s.
	tb := time.Now()
	exp.SetRate("shop", "web-1", 50*2*base-base)
	observe(web, "web-1")
	volWaitFor(t, src, 20*time.Second, "the burst raised an anomaly", func() bool {
		n, _ := rec.counts()
		return n > 0
	})
	ts := time.Now()
	exp.SetRate("shop", "web-1", base)

	rec.mu.Lock()
	a, storedAt := rec.raised[0], rec.raisedAt[0]
	rec.mu.Unlock()
	t.Logf("raised %v after the burst, stored %v after it: %s (pod %s)",
		a.Time.Sub(tb).Round(time.Millisecond), storedAt.Sub(tb).Round(time.Millisecond), a.Summary, a.Pod)
	require.Equal(t, egressd.AnomalyEgressVolume, a.Kind)
	require.Equal(t, web, a.App)
	require.Equal(t, egressd.VolumeFingerprint(web, a.Time), a.Fingerprint)
	require.Equal(t, "web-1", a.Pod, "the example pod is the one bursting")
	require.Regexp(t, `^shop/web sends [0-9.]+ kB/s, against [0-9.]+ kB/s over the last 2 min$`, a.Summary)
	require.Equal(t, "bytes/s", a.Details["unit"])
	// The rule first saw the burst after it began (its rates came from
	// samples scraped after tb), and within a few seconds: a rate over 8 s
	// reaches 10x after 1.5 s of burst, plus a scrape and an evaluation.
	require.True(t, a.Time.After(tb), "anomaly time %v before the burst at %v", a.Time, tb)
	require.WithinDuration(t, tb, a.Time, 6*time.Second, "anomaly time near the burst's start")
	// Hold is judged within half an evaluation interval.
	require.GreaterOrEqual(t, storedAt.Sub(a.Time), hold-every/2, "fired before the condition held for Hold")

	// Calm: resolved after Hold, under the raise's fingerprint.
	volWaitFor(t, src, po.ShortWindow+hold+20*time.Second, "the anomaly resolved", func() bool {
		_, n := rec.counts()
		return n > 0
	})
	rec.mu.Lock()
	fp, resolvedAt := rec.resolved[0], rec.resolvedAt[0]
	rec.mu.Unlock()
	t.Logf("resolved at %v after the burst stopped", resolvedAt.Sub(ts).Round(time.Millisecond))
	require.Equal(t, a.Fingerprint, fp)
	// It fired at least Hold after a.Time, and calm began after it fired.
	require.GreaterOrEqual(t, resolvedAt.Sub(a.Time), 2*hold-every, "resolved before calm held for Hold")

	// A few more evaluations after the resolution: nothing fires again.
	calls := src.calls()
	volWaitFor(t, src, 20*time.Second, "3 evaluations after the resolution", func() bool {
		return src.calls() >= calls+3
	})
	stop()

	rec.mu.Lock()
	defer rec.mu.Unlock()
	require.Len(t, rec.raised, 1, "exactly one anomaly, for web only: %+v", rec.raised)
	require.Len(t, rec.resolved, 1, "resolved once: %v", rec.resolved)
	require.Zero(t, d.Pending())
	t.Logf("total %v", time.Since(begin).Round(time.Millisecond))
}
