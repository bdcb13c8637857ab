package detector_test

import (
	"context"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/detector"
)

var t0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// fakeStore keeps anomalies by fingerprint, like the database.
type fakeStore struct {
	mu       sync.Mutex
	raised   []egressd.Anomaly
	seen     map[string]bool
	resolved map[string]time.Time
	RaiseFn  func(egressd.Anomaly) error
}

func (s *fakeStore) Raise(_ context.Context, a egressd.Anomaly) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.RaiseFn != nil {
		if err := s.RaiseFn(a); err != nil {
			return false, err
		}
	}
	if s.seen == nil {
		s.seen = map[string]bool{}
	}
	if s.seen[a.Fingerprint] {
		return false, nil
	}
	s.seen[a.Fingerprint] = true
	s.raised = append(s.raised, a)
	return true, nil
}

func (s *fakeStore) Resolve(_ context.Context, fp string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.resolved == nil {
		s.resolved = map[string]time.Time{}
	}
	s.resolved[fp] = at
	return nil
}

func newDetector(t *testing.T, opts detector.Options, store detector.Store) *detector.Detector {
	t.Helper()
	d, err := detector.New(opts, store, slog.New(slog.NewTextHandler(io.Discard, nil)), detector.NewMetrics(prometheus.NewRegistry()))
	require.NoError(t, err)
	return d
}

// drain runs the detector's store loop until everything queued is stored.
func drain(t *testing.T, d *detector.Detector) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, d.Run(ctx))
}

var (
	recyclarr = egressd.App{Cluster: "homelab", Namespace: "media", Name: "recyclarr"}
	sonarr    = egressd.App{Cluster: "homelab", Namespace: "media", Name: "sonarr"}
)

func dst(name string, port uint16) egressd.Destination {
	return egressd.Destination{Name: name, Port: port, Protocol: egressd.ProtoTCP}
}

func conn(app egressd.App, d egressd.Destination, at time.Time) *egressd.Observation {
	return &egressd.Observation{Time: at, Kind: egressd.KindConnect, App: app, Destination: d, Pod: app.Name + "-pod", Verdict: egressd.VerdictForwarded, NameSource: egressd.NameFromFlow}
}

type raised struct {
	Kind egressd.AnomalyKind
	App  string
	Dest string
	At   time.Duration // after t0
}

func summarize(as []egressd.Anomaly) []raised {
	var out []raised
	for _, a := range as {
		out = append(out, raised{a.Kind, a.App.String(), a.Destination.String(), a.Time.Sub(t0)})
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].At < out[j].At || out[i].At == out[j].At && out[i].Dest < out[j].Dest
	})
	return out
}

func TestNoveltyRules(t *testing.T) {
	t.Parallel()
	day := 24 * time.Hour
	gh := dst("api.github.com", 443)
	tests := []struct {
		name  string
		setup func(d *detector.Detector)
		opts  func(o *detector.Options)
		obs   []*egressd.Observation
		want  []raised
	}{
		{
			name: "learning period learns, then a new destination raises once",
			obs: []*egressd.Observation{
				conn(recyclarr, gh, t0),
				conn(recyclarr, dst("raw.githubusercontent.com", 443), t0.Add(23*time.Hour)),
				conn(recyclarr, gh, t0.Add(2*day)),
				conn(recyclarr, dst("evil.example", 443), t0.Add(2*day+time.Hour)),
				conn(recyclarr, dst("evil.example", 443), t0.Add(2*day+2*time.Hour)),
				conn(recyclarr, dst("api.github.com", 8443), t0.Add(2*day+3*time.Hour)),
			},
			want: []raised{
				{egressd.AnomalyNovelDestination, "media/recyclarr", "evil.example:443/TCP", 2*day + time.Hour},
				{egressd.AnomalyNovelDestination, "media/recyclarr", "api.github.com:8443/TCP", 2*day + 3*time.Hour},
			},
		},
		{
			name: "an app still learning raises nothing",
			obs: []*egressd.Observation{
				conn(sonarr, gh, t0.Add(2*day)),
				conn(sonarr, dst("new.example", 443), t0.Add(2*day+time.Hour)),
			},
		},
		{
			name:  "first seen from the store starts the learning period",
			setup: func(d *detector.Detector) { d.LoadApps(map[egressd.App]time.Time{sonarr: t0}) },
			obs:   []*egressd.Observation{conn(sonarr, dst("new.example", 443), t0.Add(2*day))},
			want:  []raised{{egressd.AnomalyNovelDestination, "media/sonarr", "new.example:443/TCP", 2 * day}},
		},
		{
			name: "the live window loaded from the store is known",
			setup: func(d *detector.Detector) {
				d.LoadApps(map[egressd.App]time.Time{sonarr: t0})
				d.LoadWindow([]egressd.WindowEntry{{App: sonarr, Destination: gh}})
			},
			obs: []*egressd.Observation{conn(sonarr, gh, t0.Add(2*day))},
		},
		{
			name: "an app's baseline file is its whole baseline: patterns match, window does not count",
			setup: func(d *detector.Detector) {
				d.LoadApps(map[egressd.App]time.Time{recyclarr: t0})
				d.LoadWindow([]egressd.WindowEntry{{App: recyclarr, Destination: dst("window-only.example", 443)}})
				d.SetBaselines([]egressd.Baseline{{Namespace: "media", App: "recyclarr", Destinations: []egressd.BaselineDestination{
					{Name: "*.githubusercontent.com", Ports: []egressd.Port{{Number: 443, Protocol: "TCP"}}},
					{Name: "api.github.com", Ports: []egressd.Port{{Number: 443, Protocol: "TCP"}}},
				}}})
			},
			obs: []*egressd.Observation{
				conn(recyclarr, gh, t0.Add(2*day)),
				conn(recyclarr, dst("objects.githubusercontent.com", 443), t0.Add(2*day)),
				conn(recyclarr, dst("window-only.example", 443), t0.Add(2*day)),
			},
			want: []raised{{egressd.AnomalyNovelDestination, "media/recyclarr", "window-only.example:443/TCP", 2 * day}},
		},
		{
			name: "unbounded apps raise no novelty (file or option)",
			setup: func(d *detector.Detector) {
				d.LoadApps(map[egressd.App]time.Time{recyclarr: t0, sonarr: t0})
				d.SetBaselines([]egressd.Baseline{{Namespace: "media", App: "recyclarr", Unbounded: true}})
			},
			opts: func(o *detector.Options) { o.Unbounded = []egressd.App{{Namespace: "media", Name: "sonarr"}} },
			obs: []*egressd.Observation{
				conn(recyclarr, dst("anything.example", 443), t0.Add(2*day)),
				conn(sonarr, dst("anything.example", 443), t0.Add(2*day)),
			},
		},
		{
			name: "accepted destinations are known, any port with 0/ANY",
			setup: func(d *detector.Detector) {
				d.LoadApps(map[egressd.App]time.Time{recyclarr: t0})
				d.SetAccepted([]egressd.Accepted{
					{App: recyclarr, Destination: dst("ok.example", 443)},
					{App: recyclarr, Destination: egressd.Destination{Name: "any.example", Protocol: egressd.ProtoAny}},
					{App: egressd.App{Namespace: "media", Name: "recyclarr"}, Destination: dst("every-cluster.example", 443)},
				})
			},
			obs: []*egressd.Observation{
				conn(recyclarr, dst("ok.example", 443), t0.Add(2*day)),
				conn(recyclarr, dst("any.example", 8080), t0.Add(2*day)),
				conn(recyclarr, dst("ok.example", 80), t0.Add(2*day)),
				conn(recyclarr, dst("every-cluster.example", 443), t0.Add(2*day)),
			},
			want: []raised{{egressd.AnomalyNovelDestination, "media/recyclarr", "ok.example:80/TCP", 2 * day}},
		},
		{
			name: "accepted patterns match one label, on their port, in their cluster or every cluster",
			setup: func(d *detector.Detector) {
				d.LoadApps(map[egressd.App]time.Time{recyclarr: t0})
				d.SetAccepted([]egressd.Accepted{
					{App: recyclarr, Destination: dst("*.cdn.example", 443)},
					{App: egressd.App{Namespace: "media", Name: "recyclarr"}, Destination: dst("**.every.example", 443)},
					{App: egressd.App{Cluster: "other", Namespace: "media", Name: "recyclarr"}, Destination: dst("*.elsewhere.example", 443)},
				})
			},
			obs: []*egressd.Observation{
				conn(recyclarr, dst("a.cdn.example", 443), t0.Add(2*day)),
				conn(recyclarr, dst("x.y.every.example", 443), t0.Add(2*day)),
				conn(recyclarr, dst("a.b.cdn.example", 443), t0.Add(2*day)),
				conn(recyclarr, dst("b.cdn.example", 80), t0.Add(2*day)),
				conn(recyclarr, dst("a.elsewhere.example", 443), t0.Add(2*day)),
			},
			want: []raised{
				{egressd.AnomalyNovelDestination, "media/recyclarr", "a.b.cdn.example:443/TCP", 2 * day},
				{egressd.AnomalyNovelDestination, "media/recyclarr", "a.elsewhere.example:443/TCP", 2 * day},
				{egressd.AnomalyNovelDestination, "media/recyclarr", "b.cdn.example:80/TCP", 2 * day},
			},
		},
		{
			name:  "a flood is summarised: the first five, then one flood anomaly per window",
			setup: func(d *detector.Detector) { d.LoadApps(map[egressd.App]time.Time{recyclarr: t0}) },
			obs: func() []*egressd.Observation {
				var obs []*egressd.Observation
				for i := 0; i < 50; i++ {
					obs = append(obs, conn(recyclarr, dst(string(rune('a'+i%26))+string(rune('a'+i/26))+".tunnel.example", 443), t0.Add(2*day+time.Duration(i)*time.Second)))
				}
				return obs
			}(),
			want: []raised{
				{egressd.AnomalyNovelDestination, "media/recyclarr", "aa.tunnel.example:443/TCP", 2 * day},
				{egressd.AnomalyNovelDestination, "media/recyclarr", "ba.tunnel.example:443/TCP", 2*day + time.Second},
				{egressd.AnomalyNovelDestination, "media/recyclarr", "ca.tunnel.example:443/TCP", 2*day + 2*time.Second},
				{egressd.AnomalyNovelDestination, "media/recyclarr", "da.tunnel.example:443/TCP", 2*day + 3*time.Second},
				{egressd.AnomalyNovelDestination, "media/recyclarr", "ea.tunnel.example:443/TCP", 2*day + 4*time.Second},
				{egressd.AnomalyNovelFlood, "media/recyclarr", "fa.tunnel.example:443/TCP", 2*day + 5*time.Second},
			},
		},
		{
			name: "dropped attempts raise, labelled with their verdict",
			setup: func(d *detector.Detector) {
				d.LoadApps(map[egressd.App]time.Time{sonarr: t0})
			},
			obs: func() []*egressd.Observation {
				o := conn(sonarr, dst("203.0.113.50", 25), t0.Add(2*day))
				o.Verdict = egressd.VerdictDropped
				return []*egressd.Observation{o}
			}(),
			want: []raised{{egressd.AnomalyNovelDestination, "media/sonarr", "203.0.113.50:25/TCP", 2 * day}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := detector.DefaultOptions()
			opts.Volume.Factor = 0
			if tt.opts != nil {
				tt.opts(&opts)
			}
			store := &fakeStore{}
			d := newDetector(t, opts, store)
			if tt.setup != nil {
				tt.setup(d)
			}
			for _, o := range tt.obs {
				d.Observe(o)
			}
			drain(t, d)
			if diff := cmp.Diff(tt.want, summarize(store.raised)); diff != "" {
				t.Fatalf("anomalies (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRefreshesForgetJudgments: keys judged normal by an acceptance or a
// baseline file are judged again after every refresh, however many there
// were, while keys in the live window stay known.
func TestRefreshesForgetJudgments(t *testing.T) {
	t.Parallel()
	day := 24 * time.Hour
	store := &fakeStore{}
	opts := detector.DefaultOptions()
	opts.Volume.Factor = 0
	m := detector.NewMetrics(prometheus.NewRegistry())
	d, err := detector.New(opts, store, slog.New(slog.DiscardHandler), m)
	require.NoError(t, err)
	d.LoadApps(map[egressd.App]time.Time{recyclarr: t0, sonarr: t0})
	accepted := []egressd.Accepted{{App: recyclarr, Destination: dst("ok.example", 443)}}
	files := []egressd.Baseline{{Namespace: "media", App: "sonarr", Destinations: []egressd.BaselineDestination{
		{Name: "file.example", Ports: []egressd.Port{{Number: 443, Protocol: "TCP"}}},
	}}}
	d.SetAccepted(accepted)
	d.SetBaselines(files)
	at := t0.Add(2 * day)
	observe := func(app egressd.App, name string) {
		d.Observe(conn(app, dst(name, 443), at))
		at = at.Add(time.Hour) // past the flood window
	}
	observe(recyclarr, "ok.example")
	observe(sonarr, "file.example")
	observe(recyclarr, "new.example") // raised, then in the window
	for range 300 {
		d.SetAccepted(accepted)
		d.SetBaselines(files)
		observe(recyclarr, "ok.example")
		observe(sonarr, "file.example")
		observe(recyclarr, "new.example")
	}
	d.SetAccepted(nil)
	observe(recyclarr, "ok.example") // no longer accepted, never in the window
	observe(recyclarr, "new.example")
	d.SetBaselines(nil)
	observe(sonarr, "file.example") // no file: judged by the window, which never had it
	drain(t, d)
	want := []raised{
		{egressd.AnomalyNovelDestination, "media/recyclarr", "new.example:443/TCP", 2*day + 2*time.Hour},
		{egressd.AnomalyNovelDestination, "media/recyclarr", "ok.example:443/TCP", 2*day + 903*time.Hour},
		{egressd.AnomalyNovelDestination, "media/sonarr", "file.example:443/TCP", 2*day + 905*time.Hour},
	}
	if diff := cmp.Diff(want, summarize(store.raised)); diff != "" {
		t.Fatalf("anomalies (-want +got):\n%s", diff)
	}
	require.Equal(t, 3.0, testutil.ToFloat64(m.KnownKeys), "keys in the live window")

	// A window key judged normal before many refreshes is judged again
	// once a baseline file, which lacks it, arrives with the last one.
	for n := 1; n <= 300; n++ {
		store := &fakeStore{}
		d := newDetector(t, opts, store)
		d.LoadApps(map[egressd.App]time.Time{sonarr: t0})
		d.Observe(conn(sonarr, dst("window.example", 443), t0.Add(time.Hour))) // learning: joins the window
		for range n - 1 {
			d.SetAccepted(nil)
		}
		d.SetBaselines(files)
		d.Observe(conn(sonarr, dst("window.example", 443), t0.Add(2*day)))
		drain(t, d)
		require.Len(t, store.raised, 1, "after %d refreshes", n)
		require.Equal(t, "files", store.raised[0].BaselineSource)
	}
}

func TestDroppedAnomalyCarriesVerdict(t *testing.T) {
	t.Parallel()
	store := &fakeStore{}
	d := newDetector(t, detector.DefaultOptions(), store)
	d.LoadApps(map[egressd.App]time.Time{sonarr: t0})
	o := conn(sonarr, dst("203.0.113.50", 25), t0.Add(48*time.Hour))
	o.Verdict = egressd.VerdictDropped
	d.Observe(o)
	drain(t, d)
	require.Len(t, store.raised, 1)
	a := store.raised[0]
	require.Equal(t, egressd.VerdictDropped, a.Verdict)
	require.Equal(t, "DROPPED", a.Details["verdict"])
	require.Contains(t, a.Summary, "tried to reach")
	require.Equal(t, egressd.NoveltyFingerprint(sonarr, o.Destination), a.Fingerprint)
	require.Equal(t, "window", a.BaselineSource)
}

func TestStoreErrorsAreRetried(t *testing.T) {
	t.Parallel()
	fails := 2
	store := &fakeStore{}
	store.RaiseFn = func(egressd.Anomaly) error {
		if fails > 0 {
			fails--
			return context.DeadlineExceeded
		}
		return nil
	}
	d := newDetector(t, detector.DefaultOptions(), store)
	d.LoadApps(map[egressd.App]time.Time{sonarr: t0})
	d.Observe(conn(sonarr, dst("x.example", 443), t0.Add(48*time.Hour)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		store.mu.Lock()
		n := len(store.raised)
		store.mu.Unlock()
		if n == 1 {
			break
		}
		require.True(t, time.Now().Before(deadline), "the anomaly was never stored")
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	require.NoError(t, <-done)
}

// TestStopWaitsForTheAnomalyBeingStored: a stop that comes while an
// anomaly is being written does not cancel the write (the store would
// fail it, and the anomaly of the last flows would be lost until the next
// start): Run returns once it is stored.
func TestStopWaitsForTheAnomalyBeingStored(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}), make(chan struct{})
	var stored []egressd.Anomaly
	store := volStore{RaiseFn: func(ctx context.Context, a egressd.Anomaly) (bool, error) {
		close(entered)
		<-release
		// As PostgreSQL does: a cancelled context fails the write.
		if err := ctx.Err(); err != nil {
			return false, err
		}
		stored = append(stored, a)
		return true, nil
	}}
	d := newDetector(t, detector.DefaultOptions(), store)
	d.LoadApps(map[egressd.App]time.Time{sonarr: t0})
	d.Observe(conn(sonarr, dst("x.example", 443), t0.Add(48*time.Hour)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	<-entered
	cancel()
	close(release)
	require.NoError(t, <-done)
	require.Len(t, stored, 1, "the anomaly being written when the stop came was lost")
	require.Equal(t, 0, d.Pending())
}

func TestVolumeFromFlowRate(t *testing.T) {
	t.Parallel()
	store := &fakeStore{}
	opts := detector.DefaultOptions()
	d := newDetector(t, opts, store)
	gh := dst("api.github.com", 443)
	// Two days of one flow a minute, then 20 flows a second for 10 minutes,
	// then calm again.
	at := t0
	for ; at.Before(t0.Add(48 * time.Hour)); at = at.Add(time.Minute) {
		d.Observe(conn(recyclarr, gh, at))
		d.Advance("h", at)
	}
	burst := at
	for ; at.Before(burst.Add(10 * time.Minute)); at = at.Add(50 * time.Millisecond) {
		d.Observe(conn(recyclarr, gh, at))
		d.Advance("h", at)
	}
	for ; at.Before(burst.Add(30 * time.Minute)); at = at.Add(time.Minute) {
		d.Observe(conn(recyclarr, gh, at))
		d.Advance("h", at)
	}
	drain(t, d)
	require.Len(t, store.raised, 1, "one volume anomaly")
	a := store.raised[0]
	require.Equal(t, egressd.AnomalyEgressVolume, a.Kind)
	require.WithinDuration(t, burst, a.Time, 3*time.Minute, "near the burst's start")
	require.Contains(t, a.Summary, "flows/s")
	require.Contains(t, store.resolved, a.Fingerprint, "resolved once calm")
	require.True(t, store.resolved[a.Fingerprint].After(burst.Add(10*time.Minute)))
}

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	o := detector.DefaultOptions()
	o.FloodThreshold = 0
	require.ErrorContains(t, o.Validate(), "Options.FloodThreshold")
	o = detector.DefaultOptions()
	o.Volume.ShortWindow = 30 * time.Second
	require.ErrorContains(t, o.Validate(), "ShortWindow")
}

// TestVolumeSustainedBurstKeepsFiring: a burst that goes on for an hour
// drags the history average up; the rule compares with the average from
// before the burst, so the anomaly fires until the burst ends.
func TestVolumeSustainedBurstKeepsFiring(t *testing.T) {
	t.Parallel()
	store := &fakeStore{}
	d := newDetector(t, detector.DefaultOptions(), store)
	gh := dst("api.github.com", 443)
	at := t0
	for ; at.Before(t0.Add(25 * time.Hour)); at = at.Add(time.Minute) {
		d.Observe(conn(recyclarr, gh, at))
		d.Advance("h", at)
	}
	burst := at
	for ; at.Before(burst.Add(time.Hour)); at = at.Add(100 * time.Millisecond) {
		d.Observe(conn(recyclarr, gh, at))
		d.Advance("h", at)
	}
	drain(t, d)
	require.Len(t, store.raised, 1)
	require.Empty(t, store.resolved, "still bursting: not resolved")
	for end := at.Add(10 * time.Minute); at.Before(end); at = at.Add(time.Minute) {
		d.Observe(conn(recyclarr, gh, at))
		d.Advance("h", at)
	}
	drain(t, d)
	require.Contains(t, store.resolved, store.raised[0].Fingerprint)
}

// TestVolumeSparseAndDenseHistory: an app with a flow every 10 minutes
// keeps its history as a list of minutes, one with a flow every minute as
// a table of the day; both judge a burst against their own average. An
// app idle for longer than the history is forgotten by the rule, and
// judged again from nothing when it comes back.
func TestVolumeSparseAndDenseHistory(t *testing.T) {
	t.Parallel()
	store := &fakeStore{}
	d := newDetector(t, detector.DefaultOptions(), store)
	gh := dst("api.github.com", 443)
	sparse, dense := recyclarr, sonarr
	at := t0
	for i := 0; at.Before(t0.Add(48 * time.Hour)); at, i = at.Add(time.Minute), i+1 {
		if i%10 == 0 {
			d.Observe(conn(sparse, gh, at))
		}
		d.Observe(conn(dense, gh, at))
		d.Advance("h", at)
	}
	burst := func() {
		for end := at.Add(10 * time.Minute); at.Before(end); at = at.Add(50 * time.Millisecond) {
			d.Observe(conn(sparse, gh, at))
			d.Observe(conn(dense, gh, at))
			d.Advance("h", at)
		}
		for end := at.Add(20 * time.Minute); at.Before(end); at = at.Add(time.Minute) {
			d.Advance("h", at)
		}
		drain(t, d)
	}
	burst()
	avg := map[egressd.App]float64{}
	for _, a := range store.raised {
		require.Equal(t, egressd.AnomalyEgressVolume, a.Kind)
		f, err := strconv.ParseFloat(a.Details["average_rate"], 64)
		require.NoError(t, err)
		avg[a.App] = f
	}
	require.Len(t, avg, 2)
	require.InDelta(t, 1.0/600, avg[sparse], 0.02/600, "a flow every 10 minutes")
	require.InDelta(t, 1.0/60, avg[dense], 0.02/60, "a flow every minute")

	// Two days without a flow, then a burst of both: their history is
	// gone (the table too), so they are judged against nothing.
	for end := at.Add(48 * time.Hour); at.Before(end); at = at.Add(time.Minute) {
		d.Advance("h", at)
	}
	n := len(store.raised)
	for end := at.Add(10 * time.Minute); at.Before(end); at = at.Add(50 * time.Millisecond) {
		d.Observe(conn(sparse, gh, at))
		d.Observe(conn(dense, gh, at))
		d.Advance("h", at)
	}
	drain(t, d)
	require.Len(t, store.raised, n+2)
	for _, a := range store.raised[n:] {
		require.Equal(t, "0", a.Details["average_rate"], a.App.String())
	}
}
