package triage

import (
	"net/http"
	"time"

	"github.com/egressd/egressd"
)

// actionTarget reads the anomaly an action is about; only novel
// destinations (single or flood) can be accepted.
func (p *pages) actionTarget(w http.ResponseWriter, r *http.Request, accept bool) (egressd.Anomaly, bool) {
	fp, err := fingerprint(r)
	if err != nil {
		p.fail(w, r, err)
		return egressd.Anomaly{}, false
	}
	a, err := p.b.Anomalies.Anomaly(r.Context(), fp)
	if err != nil {
		p.fail(w, r, err)
		return a, false
	}
	if accept && (a.Destination.Name == "" || a.Kind != egressd.AnomalyNovelDestination && a.Kind != egressd.AnomalyNovelFlood) {
		p.fail(w, r, egressd.Errorf(egressd.EINVALID, "a %s anomaly has no destination to accept: dismiss it instead", a.Kind))
		return a, false
	}
	return a, true
}

// now returns the clock as PostgreSQL keeps it (microseconds).
func (p *pages) now() time.Time {
	return p.opts.Now().UTC().Truncate(time.Microsecond)
}

// done records who ended the anomaly, tells the service, and shows the
// anomaly's page again.
func (p *pages) done(w http.ResponseWriter, r *http.Request, a egressd.Anomaly, res egressd.Resolution) {
	if _, err := p.b.Actions.ResolveBy(r.Context(), a.Fingerprint, res); err != nil {
		p.fail(w, r, err)
		return
	}
	p.log.Info("triage_action", "action", string(res.Kind), "fingerprint", a.Fingerprint, "app", a.App.String(),
		"cluster", a.App.Cluster, "note", res.Note, "user", res.By, "remote", r.RemoteAddr)
	if p.b.Changed != nil {
		p.b.Changed()
	}
	http.Redirect(w, r, AnomalyPath(a.Fingerprint), http.StatusSeeOther)
}

// acceptExact accepts the anomaly's destination (name, port and protocol)
// for its app in its cluster, which resolves its alert.
func (p *pages) acceptExact(w http.ResponseWriter, r *http.Request, user string) {
	a, ok := p.actionTarget(w, r, true)
	if !ok {
		return
	}
	at := p.now()
	if err := p.b.Actions.Accept(r.Context(), egressd.Accepted{App: a.App, Destination: a.Destination, By: user, At: at}); err != nil {
		p.fail(w, r, err)
		return
	}
	p.done(w, r, a, egressd.Resolution{Kind: egressd.ResolutionAccepted, By: user, At: at, Note: a.Destination.Name + " " + a.Destination.PortString()})
}

// acceptPattern accepts a toFQDNs pattern on the anomaly's port and
// protocol for its app, and resolves every firing novel-destination
// anomaly of the app it covers, this one included.
func (p *pages) acceptPattern(w http.ResponseWriter, r *http.Request, user string) {
	a, ok := p.actionTarget(w, r, true)
	if !ok {
		return
	}
	pattern, err := CheckPattern(r.PostForm.Get("pattern"), a.Destination.Name)
	if err != nil {
		p.fail(w, r, err)
		return
	}
	ctx := r.Context()
	at := p.now()
	dest := egressd.Destination{Name: pattern, Port: a.Destination.Port, Protocol: a.Destination.Protocol}
	if err := p.b.Actions.Accept(ctx, egressd.Accepted{App: a.App, Destination: dest, By: user, At: at}); err != nil {
		p.fail(w, r, err)
		return
	}
	res := egressd.Resolution{Kind: egressd.ResolutionAcceptedPattern, By: user, At: at, Note: pattern + " " + dest.PortString()}
	app := a.App
	firing, err := p.b.Anomalies.Anomalies(ctx, egressd.AnomalyFilter{
		State: egressd.AnomaliesFiring, App: &app, Kind: egressd.AnomalyNovelDestination, Limit: egressd.MaxPageSize,
	})
	if err != nil {
		p.fail(w, r, err)
		return
	}
	for _, o := range firing {
		if o.Fingerprint == a.Fingerprint || o.Destination.Port != dest.Port || o.Destination.Protocol != dest.Protocol ||
			len(covered(pattern, []string{o.Destination.Name})) == 0 {
			continue
		}
		if _, err := p.b.Actions.ResolveBy(ctx, o.Fingerprint, res); err != nil {
			p.fail(w, r, err)
			return
		}
	}
	p.done(w, r, a, res)
}

// dismiss resolves the anomaly without accepting anything.
func (p *pages) dismiss(w http.ResponseWriter, r *http.Request, user string) {
	a, ok := p.actionTarget(w, r, false)
	if !ok {
		return
	}
	p.done(w, r, a, egressd.Resolution{Kind: egressd.ResolutionDismissed, By: user, At: p.now()})
}
