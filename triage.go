package egressd

import "time"

// ResolutionKind says how an operator ended an anomaly from the triage page.
type ResolutionKind string

// Resolution kinds.
const (
	// ResolutionAccepted: the destination was accepted exactly (name,
	// port and protocol).
	ResolutionAccepted ResolutionKind = "accepted"
	// ResolutionAcceptedPattern: a toFQDNs pattern covering the
	// destination was accepted.
	ResolutionAcceptedPattern ResolutionKind = "accepted_pattern"
	// ResolutionDismissed: the anomaly was resolved without accepting
	// anything; the destination stays out of the accepted set.
	ResolutionDismissed ResolutionKind = "dismissed"
)

// Resolution records who ended an anomaly from the triage page, how, and
// what they accepted. The zero value means nobody did: the anomaly fires,
// or resolved by itself (volume back to normal, the alert's time to live,
// an acceptance through the API).
type Resolution struct {
	Kind ResolutionKind
	By   string
	At   time.Time
	// Note is what was accepted ("*.example.com 443/TCP"); empty for a
	// dismissal.
	Note string
}
