package detector

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/egressd/egressd"
)

// StateStore is what Prime reads: the store's record of what the detector
// saw before this process started. It has more methods than a consumer's
// interface usually does, because it is the detector's whole memory.
type StateStore interface {
	// AppsFirstSeen returns when each app was first seen, and the newest
	// flow time stored.
	AppsFirstSeen(ctx context.Context) (map[egressd.App]time.Time, time.Time, error)
	// EachSeenDestination calls fn for each destination last seen at or
	// after since, with any verdict; dst's strings need only be valid
	// during the call.
	EachSeenDestination(ctx context.Context, since time.Time, fn func(app egressd.App, dst egressd.Destination) error) error
	// NewDestinations returns the destinations first seen at or after
	// since and after their app's learning period, by first-seen time.
	NewDestinations(ctx context.Context, since time.Time, learning time.Duration) ([]egressd.DestinationRollup, error)
	// DetectorAnomalies returns the anomalies started at or after since
	// and the volume anomalies still firing.
	DetectorAnomalies(ctx context.Context, since time.Time) ([]egressd.Anomaly, error)
	// DNSQueriesSince returns the names asked last at or after since.
	DNSQueriesSince(ctx context.Context, since time.Time) ([]egressd.DNSQueryRollup, error)
	// AppHours returns each app's flows per hour in [from, to).
	AppHours(ctx context.Context, from, to time.Time) ([]egressd.AppHour, error)
}

// NoveltyWindow is how far back the live window reaches.
const NoveltyWindow = 7 * 24 * time.Hour

// PrimeStats says what Prime loaded.
type PrimeStats struct {
	// End is the time the state was primed for.
	End        time.Time
	Apps       int
	WindowKeys int
	// Rejudged counts the destinations that appeared in the last window
	// and were judged again; Reraised the anomalies among them that the
	// store lacked (lost before a restart) and that were raised again.
	Rejudged, Reraised int
	// VolumeApps counts the apps whose volume history was loaded.
	VolumeApps int
}

// Prime gives the detector what the store knows, so that the verdicts of
// this process are those one long-lived process would have reached: the
// apps' first sight (learning periods), the live window of the 7 days
// before end, the novel destinations of that window judged again in the
// order they appeared (which rebuilds the flood windows, and raises again
// any anomaly that never reached the store, because the queue was full or
// the store down when the process stopped), the DNS flood windows, the
// volume history and the volume anomalies still firing.
//
// end is "now", where the stream resumes: for serve the source's cursor
// (the wall clock when nothing is stored yet), and for replay the zero
// time, which stands for the newest flow stored (time is the flows' time). Call
// Prime after SetAccepted and SetBaselines, before the first observation;
// the anomalies it raises are queued for Run. It may be called again, when
// a standby takes over a source, to learn what another process stored
// meanwhile: what this process knows already is kept, and not counted
// twice.
func (d *Detector) Prime(ctx context.Context, s StateStore, end time.Time) (PrimeStats, error) {
	var ps PrimeStats
	first, newest, err := s.AppsFirstSeen(ctx)
	if err != nil {
		return ps, fmt.Errorf("prime detector: %w", err)
	}
	d.LoadApps(first)
	ps.Apps = len(first)
	if end.IsZero() {
		end = newest
	}
	if end.IsZero() {
		return ps, nil // nothing stored yet
	}
	ps.End = end
	since := end.Add(-NoveltyWindow)
	fresh, err := s.NewDestinations(ctx, since, d.opts.LearningPeriod)
	if err != nil {
		return ps, fmt.Errorf("prime detector: %w", err)
	}
	// The window is a week back from end, but judgments are as of when
	// each destination appeared: the ones that appeared within the window
	// are left out of it, to be judged again below.
	d.mu.Lock()
	skip := make(map[keyHash]struct{}, len(fresh))
	for _, f := range fresh {
		skip[d.hash(f.App, f.Destination)] = struct{}{}
	}
	err = s.EachSeenDestination(ctx, since, func(a egressd.App, dst egressd.Destination) error {
		h := d.hash(a, dst)
		if _, ok := skip[h]; !ok {
			d.addWindow(a, h, d.keys[h])
		}
		return nil
	})
	d.metrics.KnownKeys.Set(float64(d.windowKeys))
	ps.WindowKeys = d.windowKeys
	d.mu.Unlock()
	if err != nil {
		return ps, fmt.Errorf("prime detector: %w", err)
	}

	stored, err := s.DetectorAnomalies(ctx, since.Add(-d.opts.FloodWindow))
	if err != nil {
		return ps, fmt.Errorf("prime detector: %w", err)
	}
	have := make(map[string]struct{}, len(stored))
	floods := make(map[egressd.App][]time.Time)
	for _, a := range stored {
		have[a.Fingerprint] = struct{}{}
		if a.Kind == egressd.AnomalyNovelFlood {
			if t, ok := windowStart(a); ok {
				floods[a.App] = append(floods[a.App], t)
			}
		}
	}
	// inFlood reports whether a raised again falls within a flood window
	// that was stored: the store may lack some of that window's members
	// (the collector samples an app's names past its per-hour budget), so
	// the window rebuilt here can be cut differently from the original,
	// and what it raises there is not lost but folded into that flood.
	inFlood := func(a egressd.Anomaly) bool {
		t := a.Time
		if a.Kind == egressd.AnomalyNovelFlood {
			t, _ = windowStart(a)
		}
		for _, s := range floods[a.App] {
			if a.Kind == egressd.AnomalyNovelFlood && t.After(s.Add(-d.opts.FloodWindow)) && t.Before(s.Add(d.opts.FloodWindow)) ||
				!t.Before(s) && t.Before(s.Add(d.opts.FloodWindow)) {
				return true
			}
		}
		return false
	}
	ps.Rejudged = len(fresh)
	for i := range fresh {
		o := observationOf(&fresh[i])
		d.mu.Lock()
		h := d.hash(o.App, o.Destination)
		a, raise := d.judge(h, o)
		d.mu.Unlock()
		if !raise {
			continue
		}
		j := d.noveltyJob(a, h)
		if _, ok := have[a.Fingerprint]; ok || inFlood(a) {
			d.settle(j, true) // stored before the restart
			continue
		}
		ps.Reraised++
		d.enqueue(j)
	}

	if d.dnsRules() {
		n, err := d.primeDNS(ctx, s, end, stored, have)
		if err != nil {
			return ps, err
		}
		ps.Reraised += n
	}
	if d.volume.enabled() {
		if ps.VolumeApps, err = d.primeVolume(ctx, s, end, first, stored); err != nil {
			return ps, err
		}
	}
	d.log.Info("detector_primed", "end", end, "apps", ps.Apps, "window_keys", ps.WindowKeys,
		"rejudged", ps.Rejudged, "reraised", ps.Reraised, "volume_apps", ps.VolumeApps)
	return ps, nil
}

// windowStart is when the window of a stored flood or DNS tunnel anomaly
// began, from its details; false when they do not say.
func windowStart(a egressd.Anomaly) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339, a.Details["window_start"])
	return t, err == nil
}

// observationOf is the first observation of a stored destination, as far
// as the store tells it: its first-seen time, example pod and name source,
// and a denied verdict when it never had an allowed flow.
func observationOf(r *egressd.DestinationRollup) *egressd.Observation {
	v := egressd.VerdictForwarded
	if r.Flows > 0 && r.DroppedFlows >= r.Flows {
		v = egressd.VerdictDropped
	}
	return &egressd.Observation{
		Kind: egressd.KindConnect, App: r.App, Destination: r.Destination, Time: r.FirstSeen,
		Pod: r.ExamplePod, Verdict: v, NameSource: r.NameSource,
	}
}

// primeDNS rebuilds each app's DNS flood window: a window whose tunnel
// anomaly is stored is raised already; otherwise the names asked since the
// later of end - FloodWindow and the end of the app's last stored window
// are counted again, from the first of them. The window's start is then
// that of the first name asked again (the store keeps when a name was last
// asked, not every question), close to but not always the one a single
// process would have used. It returns how many anomalies it raised.
func (d *Detector) primeDNS(ctx context.Context, s StateStore, end time.Time, stored []egressd.Anomaly, have map[string]struct{}) (int, error) {
	from := make(map[egressd.App]time.Time)
	d.mu.Lock()
	for _, a := range stored {
		if a.Kind != egressd.AnomalyDNSTunnel {
			continue
		}
		start, ok := windowStart(a)
		if !ok {
			continue
		}
		wend := start.Add(d.opts.FloodWindow)
		if wend.After(from[a.App]) {
			from[a.App] = wend
		}
		if wend.After(end) {
			st := d.app(a.App, a.Time)
			st.dns = dnsFloodState{start: start, raised: true}
		}
	}
	d.mu.Unlock()
	names, err := s.DNSQueriesSince(ctx, end.Add(-d.opts.FloodWindow))
	if err != nil {
		return 0, fmt.Errorf("prime detector: %w", err)
	}
	n := 0
	for _, q := range names {
		if q.LastSeen.Before(from[q.App]) {
			continue
		}
		o := &egressd.Observation{Kind: egressd.KindDNSQuery, App: q.App, Time: q.LastSeen,
			Destination: egressd.Destination{Name: q.Name}}
		d.mu.Lock()
		a, raise := d.dnsFlood(o)
		d.mu.Unlock()
		if !raise {
			continue
		}
		if _, ok := have[a.Fingerprint]; ok {
			continue
		}
		n++
		d.enqueue(d.dnsTunnelJob(a))
	}
	return n, nil
}

// primeVolume loads the volume rule's history and its firing anomalies.
//
// The history is each app's stored flow count per hour (app_hourly), spread
// evenly over the minutes of the hour up to end: the rule's average over
// 24 h is then exact to within the hour at the window's far edge, and an
// app is judged from its first stored flow (its first sight) rather than
// from this process's first minute. Minutes are not stored: a burst that
// a restart cuts in two is judged again from the flows after the restart,
// so the anomaly fires once, though up to Hold later (and under another
// start time) than one process would have fired it. One that already fired
// keeps firing: its state is loaded from the store, compared with the
// average it was raised against, and resolves as it would have.
func (d *Detector) primeVolume(ctx context.Context, s StateStore, end time.Time, first map[egressd.App]time.Time, stored []egressd.Anomaly) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v := d.volume
	for _, a := range stored {
		if a.Kind != egressd.AnomalyEgressVolume || !a.ResolvedAt.IsZero() {
			continue
		}
		if st := v.states[a.App]; st != nil && (st.firing != "" || !st.condSince.IsZero()) {
			continue // primed before, or judged by this process since
		}
		base, _ := strconv.ParseFloat(a.Details["average_rate"], 64)
		v.states[a.App] = &volState{condSince: a.Time, baseAvg: base, firing: a.Fingerprint, pod: a.Pod}
	}
	if v.counts == nil {
		return 0, nil // an external source (Prometheus) has its own history
	}
	d.mu.Unlock()
	hours, err := s.AppHours(ctx, end.Add(-v.opts.HistoryWindow-time.Hour), end.Add(time.Nanosecond))
	d.mu.Lock()
	if err != nil {
		return 0, fmt.Errorf("prime detector: %w", err)
	}
	endMin := end.Unix() / 60
	size := int(v.opts.HistoryWindow / time.Minute)
	// Apps that have a history already (a Prime before, or flows this
	// process counted itself) keep it: their counts would be added twice.
	had := make(map[egressd.App]bool, len(v.counts))
	for a := range v.counts {
		had[a] = true
	}
	for _, h := range hours {
		if had[h.App] {
			continue
		}
		r := v.counts[h.App]
		if r == nil {
			firstMin := endMin
			if t, ok := first[h.App]; ok {
				firstMin = t.Unix() / 60
			}
			r = newMinuteRing(size, endMin, firstMin)
			v.counts[h.App] = r
		}
		// The hour's flows, spread over its minutes up to end.
		from := h.Hour.Unix() / 60
		to := min(from+60, endMin+1)
		if t, ok := first[h.App]; ok {
			from = max(from, t.Unix()/60)
		}
		if to <= from || h.Flows <= 0 {
			continue
		}
		k := to - from
		each, extra := h.Flows/k, h.Flows%k
		for m := from; m < to; m++ {
			// Minutes older than the ring are skipped (the hour at the
			// window's far edge).
			c := each
			if m-from < extra {
				c++
			}
			if c > 0 && r.inWindow(m) {
				r.add(m, uint32(min(c, int64(^uint32(0)))))
			}
		}
	}
	return len(v.counts), nil
}
