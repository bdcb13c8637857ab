package detector

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/egressd/egressd"
)

// EvidenceStore tells what the store knows of a destination across every
// app (postgres.DB). It is asked once per anomaly, off the hot path.
type EvidenceStore interface {
	// DestinationEvidence returns, from the destinations stored with
	// allowed flows first seen before at: how many other apps, and apps of
	// other clusters, reached dst's name (on any port); when app's cluster
	// first reached it (its exact destination left out); app's other ports
	// on it, and the pods app reached it from. With a domain: how many
	// other apps reached a name under it, and app's names under it last
	// allowed at or after since (its live window). The other fields stay
	// zero.
	DestinationEvidence(ctx context.Context, app egressd.App, dst egressd.Destination, domain string, since, at time.Time) (egressd.Evidence, error)
}

// Bounds of the evidence lists an anomaly carries.
const (
	maxEvidencePods     = 10
	maxEvidenceSiblings = 5
	// evidenceTimeout bounds the store's answer: an anomaly is recorded
	// with what is known rather than late.
	evidenceTimeout = 5 * time.Second
)

// UseEvidence makes the detector ask es for the prevalence of each
// anomaly's destination before it records it. Without it, anomalies carry
// only what the detector knows itself (the app's first sight and
// baseline file, the name's shape, the verdict, the pod). Call it before
// Run.
func (d *Detector) UseEvidence(es EvidenceStore) { d.evidence = es }

// SetFlush sets what makes the store hold every flow observed so far (the
// aggregator's Flush), called before the store is asked for an anomaly's
// evidence: without it, the flows of the last flush interval (in a replay,
// of the whole capture) would be missing from the prevalence. nil turns it
// off. Safe to call while Run runs.
func (d *Detector) SetFlush(flush func(context.Context) error) {
	if flush == nil {
		d.flush.Store(nil)
		return
	}
	d.flush.Store(&flush)
}

// gather fills a's evidence and sets its severity from it (Severity). It runs
// in Run's goroutine, never in Observe: anomalies are rare, and the store
// is asked once each.
func (d *Detector) gather(ctx context.Context, a *egressd.Anomaly) {
	e := &a.Evidence
	name := a.Destination.Name
	d.mu.Lock()
	if st := d.apps[a.App]; st != nil {
		e.AppFirstSeen = st.firstSeen
	}
	file, hasFile := d.files[egressd.App{Namespace: a.App.Namespace, Name: a.App.Name}]
	d.mu.Unlock()
	if a.Pod != "" {
		e.Pods = []string{a.Pod}
	}
	if a.Kind != egressd.AnomalyEgressVolume && name != "" {
		nameShape(e, name, a.NameSource)
		if a.Kind != egressd.AnomalyDNSTunnel {
			e.Dropped = a.Verdict.Denied()
			e.PortClass = portClass(a.Destination)
		}
		if d.evidence != nil {
			d.askStore(ctx, a)
		}
		if hasFile {
			e.Siblings, e.KnownPorts = fileEvidence(file, a.Destination, e.Domain, e.KnownPorts)
		}
	}
	a.Severity, e.Reasons = Severity(*a)
}

// askStore merges the store's evidence into a's; a store that fails
// leaves the prevalence unknown, said in Evidence.Incomplete.
func (d *Detector) askStore(ctx context.Context, a *egressd.Anomaly) {
	e := &a.Evidence
	ctx, cancel := context.WithTimeout(ctx, evidenceTimeout)
	defer cancel()
	if f := d.flush.Load(); f != nil {
		if err := (*f)(ctx); err != nil && ctx.Err() == nil {
			// The store then lacks the last flows at most; the next
			// flush retries them.
			d.log.Warn("evidence_flush_failed", "fingerprint", a.Fingerprint, "err", err)
		}
	}
	got, err := d.evidence.DestinationEvidence(ctx, a.App, a.Destination, e.Domain, a.Time.Add(-NoveltyWindow), a.Time)
	if err != nil {
		e.Incomplete = "the store did not answer"
		if ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			d.metrics.EvidenceErrors.Inc()
			d.log.Warn("evidence_failed", "fingerprint", a.Fingerprint, "err", err)
		}
		return
	}
	e.OtherApps, e.OtherClusters, e.DomainApps = got.OtherApps, got.OtherClusters, got.DomainApps
	e.ClusterFirstSeen, e.KnownPorts, e.Siblings = got.ClusterFirstSeen, got.KnownPorts, got.Siblings
	for _, p := range got.Pods {
		if len(e.Pods) < maxEvidencePods && !slices.Contains(e.Pods, p) {
			e.Pods = append(e.Pods, p)
		}
	}
}

// nameShape sets the shape fields of e for name.
func nameShape(e *egressd.Evidence, name string, src egressd.NameSource) {
	if _, err := netip.ParseAddr(name); err == nil {
		e.BareIP = src == egressd.NameIsIP || src == 0
		return
	}
	e.Domain = registrableDomain(name)
	labels := strings.Split(name, ".")
	e.Labels = len(labels)
	for _, l := range labels {
		e.LongestLabel = max(e.LongestLabel, len(l))
	}
	e.Entropy = float64(int(entropy(labels[0])*100+0.5)) / 100
}

// portClass is "well-known" below 1024, "registered" up to 49151 and
// "dynamic" above; "" for protocols without ports.
func portClass(d egressd.Destination) string {
	switch {
	case d.Port == 0:
		return ""
	case d.Port < 1024:
		return "well-known"
	case d.Port <= 49151:
		return "registered"
	}
	return "dynamic"
}

// fileEvidence returns the names of b under domain other than dst's (the
// app's baseline file is its whole baseline), and known with b's ports for
// dst's name added.
func fileEvidence(b egressd.Baseline, dst egressd.Destination, domain string, known []string) (siblings, ports []string) {
	ports = known
	for _, bd := range b.Destinations {
		if bd.Name == dst.Name {
			for _, p := range bd.Ports {
				if s := p.String(); s != dst.PortString() && !slices.Contains(ports, s) {
					ports = append(ports, s)
				}
			}
			continue
		}
		if domain != "" && len(siblings) < maxEvidenceSiblings && (bd.Name == domain || strings.HasSuffix(bd.Name, "."+domain)) {
			siblings = append(siblings, bd.Name)
		}
	}
	slices.Sort(ports)
	return siblings, ports
}
