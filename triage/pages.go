package triage

import (
	"cmp"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/egressd/egressd"
)

// listData is the list of firing anomalies.
type listData struct {
	page
	Now       time.Time
	Anomalies []egressd.Anomaly
	// Full is true when more anomalies fire than one page holds.
	Full bool
}

// list answers GET /triage/: the firing anomalies, highest severity first
// (Severity.Rank), then newest first.
func (p *pages) list(w http.ResponseWriter, r *http.Request) {
	as, err := p.b.Anomalies.Anomalies(r.Context(), egressd.AnomalyFilter{State: egressd.AnomaliesFiring, Limit: egressd.MaxPageSize})
	if err != nil {
		p.fail(w, r, err)
		return
	}
	sortBySeverity(as)
	p.render(w, r, http.StatusOK, "list", listData{
		page: p.page(r, "Firing anomalies"), Now: p.opts.Now(), Anomalies: as, Full: len(as) == egressd.MaxPageSize,
	})
}

// sortBySeverity orders anomalies by severity, highest first, then by
// start time, newest first, then by fingerprint: the same order whatever
// order storage answered in.
func sortBySeverity(as []egressd.Anomaly) {
	slices.SortStableFunc(as, func(a, b egressd.Anomaly) int {
		return cmp.Or(cmp.Compare(b.Severity.Rank(), a.Severity.Rank()), b.Time.Compare(a.Time), strings.Compare(a.Fingerprint, b.Fingerprint))
	})
}

// destRow is one app's destination as the anomaly page lists it.
type destRow struct {
	App         egressd.App
	Destination egressd.Destination
	FirstSeen   time.Time
	LastSeen    time.Time
	Flows       int64
	Dropped     int64
	Verdicts    string
	ExamplePod  string
	// This marks the anomaly's own destination.
	This bool
}

func toRow(d egressd.DestinationRollup, this egressd.Destination) destRow {
	return destRow{
		App: d.App, Destination: d.Destination, FirstSeen: d.FirstSeen, LastSeen: d.LastSeen,
		Flows: d.Flows, Dropped: d.DroppedFlows, Verdicts: strings.Join(d.Verdicts.Names(), ", "),
		ExamplePod: d.ExamplePod, This: d.Destination == this,
	}
}

// detail is one of an anomaly's details.
type detail struct{ Key, Value string }

// anomalyData is an anomaly's page.
type anomalyData struct {
	page
	Now        time.Time
	A          egressd.Anomaly
	Firing     bool
	Resolution egressd.Resolution
	// Evidence is shown when the detector gathered any.
	HasEvidence   bool
	HasPrevalence bool
	HasHistory    bool
	HasShape      bool
	Details       []detail
	// Destination sections (novel destinations and floods).
	HasDestination bool
	Hours          []egressd.HourlyRollup
	Own            []destRow
	Others         []destRow
	OthersFull     bool
	Pods           []string
	// The app's baseline: its destinations seen within the window.
	Baseline     []destRow
	BaselineFull bool
	WindowDays   int
	// Actions.
	CanAccept    bool
	Pattern      string
	PatternError string
	Covered      []string
}

// maxUsers bounds the apps listed as reaching the destination.
const maxUsers = 50

// anomaly answers GET /triage/anomalies/{fingerprint}[?pattern=P].
func (p *pages) anomaly(w http.ResponseWriter, r *http.Request) {
	fp, err := fingerprint(r)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	d, err := p.anomalyData(r, fp)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	if q, ok := r.URL.Query()["pattern"]; ok && d.CanAccept {
		d.Pattern = q[0]
		if pat, err := CheckPattern(q[0], d.A.Destination.Name); err != nil {
			d.PatternError = egressd.ErrorMessage(err)
		} else {
			d.Pattern = pat
		}
	}
	if d.CanAccept && d.PatternError == "" && d.Pattern != "" {
		names := []string{d.A.Destination.Name}
		for _, b := range d.Baseline {
			names = append(names, b.Destination.Name)
		}
		d.Covered = covered(d.Pattern, names)
		slices.Sort(d.Covered)
	}
	p.render(w, r, http.StatusOK, "anomaly", d)
}

// anomalyData reads everything the anomaly page shows.
func (p *pages) anomalyData(r *http.Request, fp string) (anomalyData, error) {
	ctx := r.Context()
	a, err := p.b.Anomalies.Anomaly(ctx, fp)
	if err != nil {
		if egressd.ErrorCode(err) == egressd.ENOTFOUND {
			err = egressd.Errorf(egressd.ENOTFOUND, "No anomaly has the fingerprint %s: it may have been removed, or the link was cut.", fp)
		}
		return anomalyData{}, err
	}
	res, err := p.b.Anomalies.Resolution(ctx, fp)
	if err != nil {
		return anomalyData{}, err
	}
	now := p.opts.Now()
	e := a.Evidence
	d := anomalyData{
		page: p.page(r, a.App.String()+": "+string(a.Kind)), Now: now, A: a, Firing: a.ResolvedAt.IsZero(), Resolution: res,
		HasPrevalence: e.OtherApps != 0 || e.OtherClusters != 0 || e.DomainApps != 0 || e.Domain != "" || !e.ClusterFirstSeen.IsZero(),
		HasHistory:    len(e.KnownPorts) > 0 || len(e.Siblings) > 0 || !e.AppFirstSeen.IsZero(),
		HasShape:      e.BareIP || e.Labels != 0 || e.LongestLabel != 0 || e.Entropy != 0 || e.PortClass != "",
		WindowDays:    int(p.opts.Window / (24 * time.Hour)),
	}
	d.HasEvidence = d.HasPrevalence || d.HasHistory || d.HasShape || len(e.Reasons) > 0 || e.Dropped || len(e.Pods) > 0
	for k, v := range a.Details {
		if k == "verdict" || k == "name_source" {
			continue // shown with the facts already
		}
		d.Details = append(d.Details, detail{k, v})
	}
	slices.SortFunc(d.Details, func(x, y detail) int { return strings.Compare(x.Key, y.Key) })

	baseline, err := p.b.Traffic.AppDestinations(ctx, egressd.DestinationFilter{
		App: a.App, Since: now.Add(-p.opts.Window), Limit: egressd.MaxPageSize,
	})
	if err != nil && egressd.ErrorCode(err) != egressd.ENOTFOUND {
		return d, err
	}
	for _, b := range baseline {
		d.Baseline = append(d.Baseline, toRow(b, a.Destination))
	}
	d.BaselineFull = len(baseline) == egressd.MaxPageSize

	pods := []string{a.Pod}
	pods = append(pods, e.Pods...)
	if a.Destination.Name != "" && (a.Kind == egressd.AnomalyNovelDestination || a.Kind == egressd.AnomalyNovelFlood) {
		d.HasDestination = true
		d.CanAccept = true
		d.Pattern = suggestPattern(a.Destination.Name)
		d.Hours, err = p.b.Traffic.DestinationHours(ctx, a.App, a.Destination, now.Add(-p.opts.Window), now.Add(time.Hour))
		if err != nil {
			return d, err
		}
		users, err := p.b.Traffic.DestinationUsers(ctx, a.Destination.Name, maxUsers+1)
		if err != nil {
			return d, err
		}
		d.OthersFull = len(users) > maxUsers
		for _, u := range users[:min(len(users), maxUsers)] {
			row := toRow(u, a.Destination)
			if u.App == a.App {
				d.Own = append(d.Own, row)
				pods = append(pods, u.ExamplePod)
				continue
			}
			row.This = false
			d.Others = append(d.Others, row)
		}
	}
	for _, pod := range pods {
		if pod != "" && !slices.Contains(d.Pods, pod) {
			d.Pods = append(d.Pods, pod)
		}
	}
	return d, nil
}
