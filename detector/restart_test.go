package detector_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/detector"
)

// waitFor polls cond until it holds, failing t after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *fakeStore) fingerprints() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, a := range s.raised {
		out = append(out, a.Destination.Name)
	}
	return out
}

// TestNoveltyNotLostWhenQueueFullAndStoreDown: with the store down, the
// first anomaly waits in Run's retries and the second fills the queue; the
// third is dropped. It must stay unknown (not learnt silently), so that
// its next observation, once the store is back, raises it.
func TestNoveltyNotLostWhenQueueFullAndStoreDown(t *testing.T) {
	t.Parallel()
	var down atomic.Bool
	down.Store(true)
	store := &fakeStore{RaiseFn: func(egressd.Anomaly) error {
		if down.Load() {
			return errors.New("connection refused")
		}
		return nil
	}}
	opts := detector.DefaultOptions()
	opts.QueueSize = 1
	m := detector.NewMetrics(prometheus.NewRegistry())
	d, err := detector.New(opts, store, slog.New(slog.NewTextHandler(io.Discard, nil)), m)
	require.NoError(t, err)
	d.LoadApps(map[egressd.App]time.Time{recyclarr: t0})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	at := t0.Add(48 * time.Hour)
	a, b, c := dst("a.example", 443), dst("b.example", 443), dst("c.example", 443)
	d.Observe(conn(recyclarr, a, at))
	waitFor(t, "Run to take the first anomaly", func() bool { return d.Pending() == 0 })
	d.Observe(conn(recyclarr, b, at.Add(time.Second)))
	require.Equal(t, 1, d.Pending())
	d.Observe(conn(recyclarr, c, at.Add(2*time.Second))) // queue full: dropped
	d.Observe(conn(recyclarr, c, at.Add(3*time.Second))) // still unknown, still full
	d.Observe(conn(recyclarr, b, at.Add(4*time.Second))) // queued already: not again
	require.Equal(t, 2.0, testutil.ToFloat64(m.QueueDropped))
	require.Empty(t, store.fingerprints())

	down.Store(false)
	waitFor(t, "a and b stored", func() bool { return len(store.fingerprints()) == 2 })
	waitFor(t, "the queue drained", func() bool { return d.Pending() == 0 })
	d.Observe(conn(recyclarr, c, at.Add(time.Hour)))
	waitFor(t, "c stored", func() bool { return len(store.fingerprints()) == 3 })
	// Known now: once each.
	for _, x := range []egressd.Destination{a, b, c} {
		d.Observe(conn(recyclarr, x, at.Add(2*time.Hour)))
	}
	cancel()
	require.NoError(t, <-done)
	done <- nil
	require.ElementsMatch(t, []string{"a.example", "b.example", "c.example"}, store.fingerprints())
}

// fakeState is a StateStore over fixed rows.
type fakeState struct {
	first     map[egressd.App]time.Time
	newest    time.Time
	seen      []egressd.WindowEntry
	fresh     []egressd.DestinationRollup
	anomalies []egressd.Anomaly
	dns       []egressd.DNSQueryRollup
	hours     []egressd.AppHour
}

func (s *fakeState) AppsFirstSeen(context.Context) (map[egressd.App]time.Time, time.Time, error) {
	return s.first, s.newest, nil
}

func (s *fakeState) EachSeenDestination(_ context.Context, _ time.Time, fn func(egressd.App, egressd.Destination) error) error {
	for _, e := range s.seen {
		if err := fn(e.App, e.Destination); err != nil {
			return err
		}
	}
	return nil
}

func (s *fakeState) NewDestinations(context.Context, time.Time, time.Duration) ([]egressd.DestinationRollup, error) {
	return s.fresh, nil
}

func (s *fakeState) DetectorAnomalies(context.Context, time.Time) ([]egressd.Anomaly, error) {
	return s.anomalies, nil
}

func (s *fakeState) DNSQueriesSince(context.Context, time.Time) ([]egressd.DNSQueryRollup, error) {
	return s.dns, nil
}

func (s *fakeState) AppHours(_ context.Context, from, to time.Time) ([]egressd.AppHour, error) {
	var out []egressd.AppHour
	for _, h := range s.hours {
		if !h.Hour.Before(from.Truncate(time.Hour)) && h.Hour.Before(to) {
			out = append(out, h)
		}
	}
	return out, nil
}

// TestPrimeRaisesWhatTheStoreLacks: of the destinations that appeared
// after learning, the one whose anomaly never reached the store is raised
// at start; the stored ones are not raised again, and a flood window that
// spans the restart stays one flood.
func TestPrimeRaisesWhatTheStoreLacks(t *testing.T) {
	t.Parallel()
	at := t0.Add(48 * time.Hour)
	state := &fakeState{first: map[egressd.App]time.Time{recyclarr: t0, sonarr: t0}, newest: at.Add(5 * time.Minute)}
	novel := func(app egressd.App, name string, when time.Time) egressd.DestinationRollup {
		return egressd.DestinationRollup{App: app, Destination: dst(name, 443), FirstSeen: when, LastSeen: when, Flows: 1,
			Verdicts: egressd.VerdictSet(0).Add(egressd.VerdictForwarded), NameSource: egressd.NameFromFlow, ExamplePod: "p"}
	}
	// sonarr: lost.example appeared an hour ago; its anomaly is not stored.
	state.fresh = append(state.fresh, novel(sonarr, "lost.example", at.Add(-time.Hour)))
	state.anomalies = append(state.anomalies, egressd.Anomaly{
		Fingerprint: egressd.NoveltyFingerprint(sonarr, dst("stored.example", 443)), Kind: egressd.AnomalyNovelDestination, App: sonarr})
	state.fresh = append(state.fresh, novel(sonarr, "stored.example", at.Add(-2*time.Hour)))
	// recyclarr: a flood of 7 in the last 5 minutes, 5 raised one by one and
	// the flood, all stored.
	for i := range 7 {
		r := novel(recyclarr, "n"+string(rune('a'+i))+".flood.example", at.Add(time.Duration(i)*time.Second))
		state.fresh = append(state.fresh, r)
		fp := egressd.NoveltyFingerprint(recyclarr, r.Destination)
		kind := egressd.AnomalyNovelDestination
		if i == 5 {
			fp, kind = egressd.FloodFingerprint(recyclarr, at), egressd.AnomalyNovelFlood
		}
		if i < 6 {
			state.anomalies = append(state.anomalies, egressd.Anomaly{Fingerprint: fp, Kind: kind, App: recyclarr})
		}
	}
	sortFresh(state.fresh)

	store := &fakeStore{}
	d := newDetector(t, detector.DefaultOptions(), store)
	ps, err := d.Prime(context.Background(), state, time.Time{})
	require.NoError(t, err)
	require.Equal(t, 1, ps.Reraised)
	require.Equal(t, 9, ps.Rejudged)
	// Within the flood window: folded into the stored flood.
	d.Observe(conn(recyclarr, dst("nh.flood.example", 443), at.Add(6*time.Minute)))
	// Stored before: known, not raised again.
	d.Observe(conn(sonarr, dst("stored.example", 443), at.Add(6*time.Minute)))
	drain(t, d)
	require.Equal(t, []string{"lost.example"}, store.fingerprints())
	for _, a := range store.raised {
		require.Equal(t, at.Add(-time.Hour), a.Time, "raised as of when it appeared")
	}
}

func sortFresh(rs []egressd.DestinationRollup) {
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && rs[j].FirstSeen.Before(rs[j-1].FirstSeen); j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
}

// sonarrWeek returns the stored state of sonarr at a restart (start) a week
// after it was first seen at t0: flows flows every step since, and
// skyhook (sky) in its window.
func sonarrWeek(step time.Duration, flows int64) (state *fakeState, start time.Time, sky egressd.Destination) {
	start = t0.Add(7 * 24 * time.Hour)
	sky = dst("skyhook.sonarr.tv", 443)
	state = &fakeState{first: map[egressd.App]time.Time{sonarr: t0}, newest: start,
		seen: []egressd.WindowEntry{{App: sonarr, Destination: sky, FirstSeen: t0, LastSeen: start}}}
	for h := t0; h.Before(start); h = h.Add(step) {
		state.hours = append(state.hours, egressd.AppHour{App: sonarr, Hour: h, Flows: flows})
	}
	return state, start, sky
}

// TestPrimeVolumeHistory: an app that makes four connections a day, whose
// history is stored, bursts to 3000 in ten minutes an hour after the
// restart: the rule judges it at once, against the stored average, rather
// than waiting for a day of this process's own history.
func TestPrimeVolumeHistory(t *testing.T) {
	t.Parallel()
	state, start, sky := sonarrWeek(6*time.Hour, 1)
	store := &fakeStore{}
	d := newDetector(t, detector.DefaultOptions(), store)
	ps, err := d.Prime(context.Background(), state, time.Time{})
	require.NoError(t, err)
	require.Equal(t, 1, ps.VolumeApps)

	burst := start.Add(time.Hour)
	d.Advance("h", start.Add(time.Minute))
	for i := range 3000 {
		at := burst.Add(time.Duration(i) * 200 * time.Millisecond)
		d.Observe(conn(sonarr, sky, at))
		d.Advance("h", at)
	}
	for at := burst.Add(10 * time.Minute); at.Before(burst.Add(30 * time.Minute)); at = at.Add(time.Minute) {
		d.Advance("h", at)
	}
	drain(t, d)
	require.Len(t, store.raised, 1)
	a := store.raised[0]
	require.Equal(t, egressd.AnomalyEgressVolume, a.Kind)
	require.WithinDuration(t, burst, a.Time, 3*time.Minute)
	require.Regexp(t, `^media/sonarr sends 5\.0 flows/s, against 0\.0000[0-9]+ flows/s over the last 24 h$`, a.Summary)
	require.Contains(t, store.resolved, a.Fingerprint, "resolved once calm")
}

// TestPrimeKeepsFiringVolume: a volume anomaly that fired before the
// restart and still fires is neither raised again nor forgotten: it
// resolves once the burst ends.
func TestPrimeKeepsFiringVolume(t *testing.T) {
	t.Parallel()
	state, start, sky := sonarrWeek(time.Hour, 1)
	fp := egressd.VolumeFingerprint(sonarr, start.Add(-5*time.Minute))
	state.anomalies = []egressd.Anomaly{{Fingerprint: fp, Kind: egressd.AnomalyEgressVolume, App: sonarr,
		Time: start.Add(-5 * time.Minute), Details: map[string]string{"average_rate": "0.0001"}}}
	store := &fakeStore{}
	d := newDetector(t, detector.DefaultOptions(), store)
	_, err := d.Prime(context.Background(), state, time.Time{})
	require.NoError(t, err)
	at := start
	for ; at.Before(start.Add(5 * time.Minute)); at = at.Add(100 * time.Millisecond) {
		d.Observe(conn(sonarr, sky, at))
		d.Advance("h", at)
	}
	for ; at.Before(start.Add(20 * time.Minute)); at = at.Add(time.Minute) {
		d.Advance("h", at)
	}
	drain(t, d)
	require.Empty(t, store.raised, "fired before the restart: not raised again")
	require.Contains(t, store.resolved, fp)
}

// rateFunc is a RateSource.
type rateFunc func(ctx context.Context, now time.Time) (map[egressd.App]detector.Rate, error)

func (f rateFunc) Rates(ctx context.Context, now time.Time) (map[egressd.App]detector.Rate, error) {
	return f(ctx, now)
}

// TestVolumeHoldIsTwoEvaluations: with Hold two ticks, the anomaly fires at
// the third evaluation that sees the burst (the burst seen at 0, 60 s and
// 120 s), and resolves at the third calm one, whether the ticks come a
// microsecond early or late.
func TestVolumeHoldIsTwoEvaluations(t *testing.T) {
	t.Parallel()
	for _, jitter := range []time.Duration{-time.Microsecond, 0, time.Microsecond} {
		t.Run(jitter.String(), func(t *testing.T) {
			t.Parallel()
			opts := detector.DefaultOptions()
			opts.Volume.Hold = 2 * time.Minute
			store := &fakeStore{}
			d := newDetector(t, opts, store)
			const hotFrom, calmFrom, evaluations = 1, 6, 12
			var (
				mu    sync.Mutex
				calls int
				// seen is how many jobs the rule had queued before each
				// evaluation: Run is not running, so they stay queued.
				seen []int
			)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			src := rateFunc(func(context.Context, time.Time) (map[egressd.App]detector.Rate, error) {
				mu.Lock()
				defer mu.Unlock()
				calls++
				if calls > evaluations {
					cancel()
					return nil, context.Canceled
				}
				cur := 0.01
				if calls > hotFrom && calls <= calmFrom {
					cur = 100
				}
				return map[egressd.App]detector.Rate{sonarr: {Current: cur, Average: 0.01, HistoryCovered: 48 * time.Hour}}, nil
			})
			n := 0
			now := func() time.Time {
				seen = append(seen, d.Pending())
				n++
				return t0.Add(time.Duration(n-1) * (time.Minute + jitter))
			}
			require.NoError(t, d.RunVolume(ctx, src, time.Millisecond, now))
			drain(t, d)
			require.Len(t, store.raised, 1)
			a := store.raised[0]
			// Hot at evaluations 1..5 (0-based), so it fires at evaluation 3
			// and is stored before evaluation 4 starts.
			require.Equal(t, t0.Add(time.Minute+jitter), a.Time)
			require.Equal(t, []int{0, 0, 0, 0, 1}, seen[:5], "fired at the third evaluation of the burst")
			require.Equal(t, []int{1, 1, 1, 1, 2}, seen[5:10], "resolved at the third calm evaluation")
			require.Contains(t, store.resolved, a.Fingerprint)
			require.Equal(t, t0.Add(8*(time.Minute+jitter)), store.resolved[a.Fingerprint], "resolved at the third calm evaluation")
		})
	}
}

// TestPrimeVolumeNoFalseAlarm: an app that steadily sends 10 flows/s is
// not a burst ten minutes after a restart. Without its stored history, its
// 24 h average would be the ten minutes this process saw over a day
// (0.07 flows/s), and 10 flows/s more than 100 times that.
func TestPrimeVolumeNoFalseAlarm(t *testing.T) {
	t.Parallel()
	state, start, sky := sonarrWeek(time.Hour, 36000)
	store := &fakeStore{}
	d := newDetector(t, detector.DefaultOptions(), store)
	_, err := d.Prime(context.Background(), state, time.Time{})
	require.NoError(t, err)
	for at := start; at.Before(start.Add(30 * time.Minute)); at = at.Add(100 * time.Millisecond) {
		d.Observe(conn(sonarr, sky, at))
		d.Advance("h", at)
	}
	drain(t, d)
	require.Empty(t, store.raised)
}

// TestPodAppMapLoad: pods stored before a restart map to their apps at
// once, a pod relabelled since maps to its newest app, and one older than
// the TTL is not loaded.
func TestPodAppMapLoad(t *testing.T) {
	t.Parallel()
	m := podAppMap(t, 48*time.Hour, 0)
	m.Load([]egressd.AppPod{
		{App: sonarr, Pod: "sonarr-0", LastSeen: t0},
		{App: recyclarr, Pod: "shared-0", LastSeen: t0.Add(time.Hour)},
		{App: sonarr, Pod: "shared-0", LastSeen: t0},
		{App: recyclarr, Pod: "old-0", LastSeen: t0.Add(-72 * time.Hour)},
	})
	app, ok := m.AppOf("media", "sonarr-0")
	require.True(t, ok)
	require.Equal(t, sonarr, app)
	app, ok = m.AppOf("media", "shared-0")
	require.True(t, ok)
	require.Equal(t, recyclarr, app, "the newest app wins")
	_, ok = m.AppOf("media", "old-0")
	require.False(t, ok, "older than the TTL")
}

// TestPrimeTwice: priming again (a standby taking over its source) raises
// nothing twice and counts no history twice.
func TestPrimeTwice(t *testing.T) {
	t.Parallel()
	state, start, sky := sonarrWeek(6*time.Hour, 1)
	state.fresh = []egressd.DestinationRollup{{App: sonarr, Destination: dst("lost.example", 443), FirstSeen: start.Add(-time.Hour),
		LastSeen: start.Add(-time.Hour), Flows: 1, Verdicts: egressd.VerdictSet(0).Add(egressd.VerdictForwarded)}}
	summaries := map[int]string{}
	for _, primes := range []int{1, 2} {
		store := &fakeStore{}
		d := newDetector(t, detector.DefaultOptions(), store)
		var reraised int
		for range primes {
			ps, err := d.Prime(context.Background(), state, time.Time{})
			require.NoError(t, err)
			reraised += ps.Reraised
		}
		require.Equal(t, 1, reraised, "lost.example raised once")
		burst := start.Add(time.Hour)
		for i := range 3000 {
			at := burst.Add(time.Duration(i) * 200 * time.Millisecond)
			d.Observe(conn(sonarr, sky, at))
			d.Advance("h", at)
		}
		drain(t, d)
		require.Len(t, store.raised, 2)
		summaries[primes] = store.raised[1].Summary
	}
	require.Equal(t, summaries[1], summaries[2], "the same history")
}

// TestPrimeSampledFloodRaisesNothing: a flood whose members the store
// only partly kept (the collector samples names past an app's budget) is
// rebuilt with other windows; what those raise falls within the stored
// floods and is not raised again.
func TestPrimeSampledFloodRaisesNothing(t *testing.T) {
	t.Parallel()
	at := t0.Add(48 * time.Hour)
	state := &fakeState{first: map[egressd.App]time.Time{recyclarr: t0}, newest: at.Add(30 * time.Minute)}
	// Originally: 60 names, one every 30 s; windows at +0, +10 min and
	// +20 min, each with 5 raised and a flood, all stored.
	window := 10 * time.Minute
	for i := range 60 {
		when := at.Add(time.Duration(i) * 30 * time.Second)
		w := at.Add(time.Duration(i/20) * window)
		name := fmt.Sprintf("n%02d.scan.example", i)
		if i%20 < 5 {
			state.anomalies = append(state.anomalies, egressd.Anomaly{Fingerprint: egressd.NoveltyFingerprint(recyclarr, dst(name, 443)), Kind: egressd.AnomalyNovelDestination, App: recyclarr, Time: when})
		}
		if i%20 == 5 {
			state.anomalies = append(state.anomalies, egressd.Anomaly{Fingerprint: egressd.FloodFingerprint(recyclarr, w), Kind: egressd.AnomalyNovelFlood, App: recyclarr,
				Time: when, Details: map[string]string{"window_start": w.Format(time.RFC3339)}})
		}
		// Sampled out: every other name past the first five of a
		// window, and the first name of the second and third windows.
		if (i%20 < 5 || i%2 == 0) && (i < 20 || i%20 != 0) {
			state.fresh = append(state.fresh, egressd.DestinationRollup{App: recyclarr, Destination: dst(name, 443), FirstSeen: when, LastSeen: when, Flows: 1,
				Verdicts: egressd.VerdictSet(0).Add(egressd.VerdictForwarded)})
		}
	}
	store := &fakeStore{}
	d := newDetector(t, detector.DefaultOptions(), store)
	ps, err := d.Prime(context.Background(), state, time.Time{})
	require.NoError(t, err)
	require.Zero(t, ps.Reraised)
	drain(t, d)
	require.Empty(t, store.raised)
}
