package detector

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/egressd/egressd"
)

// VolumeOptions configure the egress volume rule.
type VolumeOptions struct {
	// Factor: an app is anomalous when its current rate is above Factor
	// times its history average. 0 disables the rule.
	Factor float64
	// Floor is the absolute rate below which nothing is anomalous, in the
	// source's unit (flows/s from Hubble, bytes/s from Prometheus).
	Floor float64
	// Hold is how long the condition must hold before the anomaly fires,
	// and how long it must be gone before it resolves.
	Hold time.Duration
	// ShortWindow is the current rate's window; HistoryWindow the
	// average's. An app is judged only once it has a full history.
	ShortWindow   time.Duration
	HistoryWindow time.Duration
	// Unit names the rate's unit in anomalies ("flows/s", "bytes/s").
	Unit string
}

// DefaultVolumeOptions returns the documented defaults for the Hubble flow
// rate: 100x the 24 h average, at least 5 flows/s, held for 2 minutes.
func DefaultVolumeOptions() VolumeOptions {
	return VolumeOptions{
		Factor:        100,
		Floor:         5,
		Hold:          2 * time.Minute,
		ShortWindow:   2 * time.Minute,
		HistoryWindow: 24 * time.Hour,
		Unit:          "flows/s",
	}
}

// Validate reports the first invalid field.
func (o VolumeOptions) Validate() error {
	if o.Factor == 0 {
		return nil
	}
	switch {
	case o.Factor < 1:
		return errors.New("detector: VolumeOptions.Factor must be >= 1 (or 0 to disable)")
	case o.Floor < 0:
		return errors.New("detector: VolumeOptions.Floor must be >= 0")
	case o.Hold < 0:
		return errors.New("detector: VolumeOptions.Hold must be >= 0")
	case o.ShortWindow < time.Minute || o.ShortWindow%time.Minute != 0:
		return errors.New("detector: VolumeOptions.ShortWindow must be whole minutes, at least 1m")
	case o.HistoryWindow < 2*o.ShortWindow || o.HistoryWindow%time.Minute != 0:
		return errors.New("detector: VolumeOptions.HistoryWindow must be whole minutes and at least twice ShortWindow")
	}
	return nil
}

// volumeRule holds each app's volume state, and, for the Hubble source, the
// per-minute flow counts it computes rates from. Callers hold Detector.mu.
type volumeRule struct {
	opts VolumeOptions
	// tick is the time between two evaluations (a minute of flow time,
	// or RunVolume's interval). Hold is compared with half a tick of
	// slack, so that a Hold of two ticks is two ticks whatever the
	// jitter of the clock: ticks 60 s apart are 59.99 s apart half the
	// time.
	tick time.Duration
	// firstSeen returns when an app was first seen, if known (zero
	// otherwise). observe asks it only when it starts counting an app,
	// not for every flow.
	firstSeen func(egressd.App) time.Time
	counts    map[egressd.App]*minuteRing // nil with an external source
	states    map[egressd.App]*volState
	lastMin   int64
}

type volState struct {
	condSince time.Time // when the condition began to hold; zero when not
	// baseAvg is the history average when the condition began. While the
	// condition holds or fires, the app is compared with it rather than
	// with the current average, which a long burst drags up: otherwise an
	// exfiltration that never stops would resolve itself within minutes.
	baseAvg   float64
	calmSince time.Time // when it stopped holding while firing
	firing    string    // fingerprint while an anomaly fires
	pod       string
}

func newVolumeRule(o VolumeOptions) *volumeRule {
	return &volumeRule{opts: o, tick: time.Minute, counts: make(map[egressd.App]*minuteRing), states: make(map[egressd.App]*volState)}
}

func (v *volumeRule) enabled() bool { return v.opts.Factor > 0 }

// observe counts a flow for the Hubble rate. An app's history counts from
// when it was first seen, if known, not from this process's first flow of
// it.
func (v *volumeRule) observe(o *egressd.Observation) {
	if !v.enabled() || v.counts == nil {
		return
	}
	r := v.counts[o.App]
	minute := o.Time.Unix() / 60
	if r == nil {
		first := minute
		if firstSeen := v.firstSeen(o.App); !firstSeen.IsZero() && firstSeen.Before(o.Time) {
			first = firstSeen.Unix() / 60
		}
		r = newMinuteRing(int(v.opts.HistoryWindow/time.Minute), minute, first)
		v.counts[o.App] = r
	}
	r.pod = o.Pod
	r.advance(minute)
	if !r.inWindow(minute) {
		return // older than the history
	}
	r.add(minute, 1)
}

// rate returns the flow rate over the short window ending before minute
// now (complete minutes only) and the average over the rest of the history,
// without the pods (advance adds them to the rates it steps).
func (r *minuteRing) rate(now int64, short, history int) Rate {
	r.advance(now - 1)
	cur, hist := r.sums(now, short, history)
	return Rate{
		Current:        float64(cur) / float64(short*60),
		Average:        float64(hist) / float64((history-short)*60),
		HistoryCovered: time.Duration(now-r.first) * time.Minute,
	}
}

// advance runs the rule at each new minute of flow time (once, however many
// minutes passed) with the Hubble flow rates.
func (v *volumeRule) advance(t time.Time) []job {
	if !v.enabled() || v.counts == nil {
		return nil
	}
	minute := t.Unix() / 60
	if minute <= v.lastMin {
		return nil
	}
	v.lastMin = minute
	short, history := int(v.opts.ShortWindow/time.Minute), int(v.opts.HistoryWindow/time.Minute)
	// Only apps the rule could judge hot, or whose state it must carry
	// on (a condition holding, an anomaly firing), are stepped: with many
	// apps, most are below the floor, and stepping each would cost a
	// state and a sort of them all every minute. An app with no flow
	// left in the window and no state is forgotten; if it comes back, its
	// history counts from its first sight again.
	rates := make(map[egressd.App]Rate)
	for a, r := range v.counts {
		rt := r.rate(minute, short, history)
		st := v.states[a]
		idle := st == nil || *st == volState{}
		switch {
		case idle && r.empty():
			delete(v.counts, a)
			delete(v.states, a)
		case idle && rt.Current < v.opts.Floor:
			delete(v.states, a)
		default:
			rt.Pods = []string{r.pod}
			rates[a] = rt
		}
	}
	return v.step(time.Unix(minute*60, 0).UTC(), rates)
}

// held reports whether a condition that began at since has lasted Hold at
// now, within half a tick.
func (v *volumeRule) held(since, now time.Time) bool {
	return now.Sub(since) >= v.opts.Hold-v.tick/2
}

// step applies the rule to one set of rates at now.
func (v *volumeRule) step(now time.Time, rates map[egressd.App]Rate) []job {
	var jobs []job
	for _, a := range sortedApps(rates) {
		r := rates[a]
		st := v.states[a]
		if st == nil {
			st = &volState{}
			v.states[a] = st
		}
		avg := r.Average
		if !st.condSince.IsZero() && st.baseAvg < avg {
			avg = st.baseAvg
		}
		hot := r.HistoryCovered >= v.opts.HistoryWindow && r.Current >= v.opts.Floor && r.Current > v.opts.Factor*avg
		if len(r.Pods) > 0 {
			st.pod = r.Pods[0]
		}
		switch {
		case hot && st.firing == "":
			if st.condSince.IsZero() {
				st.condSince, st.baseAvg = now, r.Average
			}
			if v.held(st.condSince, now) {
				an := v.anomaly(a, r, st, now)
				st.firing = an.Fingerprint
				jobs = append(jobs, job{anomaly: an, lost: func() {
					// Raised again at the next evaluation, under the
					// same fingerprint, if the condition still holds.
					if st.firing == an.Fingerprint {
						st.firing = ""
					}
				}})
			}
		case hot:
			st.calmSince = time.Time{}
		case st.firing != "":
			if st.calmSince.IsZero() {
				st.calmSince = now
			}
			if v.held(st.calmSince, now) {
				was := *st
				jobs = append(jobs, job{resolve: true, anomaly: egressd.Anomaly{Fingerprint: st.firing, App: a, Kind: egressd.AnomalyEgressVolume, ResolvedAt: now},
					lost: func() {
						// Still firing in the store: resolved again at
						// the next evaluation, unless it burst again.
						if st.firing == "" && st.condSince.IsZero() {
							*st = was
						}
					}})
				*st = volState{}
			}
		default:
			st.condSince, st.baseAvg = time.Time{}, 0
		}
	}
	return jobs
}

func (v *volumeRule) anomaly(a egressd.App, r Rate, st *volState, now time.Time) egressd.Anomaly {
	r.Average = min(r.Average, st.baseAvg)
	ratio := "inf"
	if r.Average > 0 {
		ratio = strconv.FormatFloat(r.Current/r.Average, 'f', 0, 64)
	}
	return egressd.Anomaly{
		Fingerprint:    egressd.VolumeFingerprint(a, st.condSince),
		Kind:           egressd.AnomalyEgressVolume,
		App:            a,
		Time:           st.condSince,
		Pod:            st.pod,
		BaselineSource: "history",
		Summary: fmt.Sprintf("%s sends %s, against %s over the last %s",
			a, formatRate(r.Current, v.opts.Unit), formatRate(r.Average, v.opts.Unit), formatSpan(v.opts.HistoryWindow)),
		Details: map[string]string{
			"current_rate": strconv.FormatFloat(r.Current, 'g', 6, 64),
			"average_rate": strconv.FormatFloat(r.Average, 'g', 6, 64),
			"unit":         v.opts.Unit,
			"factor":       ratio,
			"held_since":   st.condSince.UTC().Format(time.RFC3339),
		},
	}
}

// RunVolume evaluates an external rate source (Prometheus) every interval
// of wall time until ctx ends. With it, the detector stops counting flows.
//
// While the source fails, the rule judges nothing: an anomaly firing keeps
// firing, none is raised or resolved. The first failure is logged
// (volume_source_failed), as is the recovery (volume_source_recovered,
// with how long it lasted); egressd_detector_volume_source_up is 0 in
// between, and VolumeSourceErr returns the error.
func (d *Detector) RunVolume(ctx context.Context, src RateSource, every time.Duration, now func() time.Time) error {
	d.mu.Lock()
	d.volume.counts = nil
	d.volume.tick = every
	d.mu.Unlock()
	if !d.volume.enabled() {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(every)
	defer t.Stop()
	d.metrics.VolumeSourceUp.Set(1)
	var failingSince time.Time
	for {
		// One time for the query and the rule: the query's own delay must
		// not count towards Hold.
		at := now()
		rates, err := src.Rates(ctx, at)
		switch {
		case err != nil && ctx.Err() == nil:
			d.metrics.VolumeErrors.Inc()
			d.metrics.VolumeSourceUp.Set(0)
			d.mu.Lock()
			d.volumeErr = err
			d.mu.Unlock()
			if failingSince.IsZero() {
				failingSince = at
				d.log.Warn("volume_source_failed", "err", err)
			} else {
				d.log.Debug("volume_source_failed", "err", err)
			}
		case err == nil && !failingSince.IsZero():
			d.metrics.VolumeSourceUp.Set(1)
			d.mu.Lock()
			d.volumeErr = nil
			d.mu.Unlock()
			d.log.Info("volume_source_recovered", "failed_for", at.Sub(failingSince).Round(time.Second).String())
			failingSince = time.Time{}
		}
		if err == nil {
			d.mu.Lock()
			jobs := d.volume.step(at, rates)
			d.mu.Unlock()
			for _, j := range jobs {
				d.enqueue(j)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// VolumeSourceErr returns the last error of RunVolume's rate source while
// it fails, and nil while it answers: the volume rule judges nothing in
// between.
func (d *Detector) VolumeSourceErr() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.volumeErr
}
