package egressd

import "time"

// Severity ranks an anomaly by its evidence; it is the alert's severity
// label. The rule table that sets it is in the detector package doc.
type Severity string

// Severities, highest first.
const (
	// SeverityCritical: worth waking someone up (for instance a
	// destination no app in the cluster ever reached).
	SeverityCritical Severity = "critical"
	// SeverityWarning: look at it today.
	SeverityWarning Severity = "warning"
	// SeverityInfo: worth a glance (for instance a host the app already
	// uses, on a new port, or a destination other apps use every day).
	SeverityInfo Severity = "info"
)

// Rank orders severities: critical 3, warning 2, info 1, anything else 0.
func (s Severity) Rank() int {
	switch s {
	case SeverityCritical:
		return 3
	case SeverityWarning:
		return 2
	case SeverityInfo:
		return 1
	}
	return 0
}

// Evidence is what a person checks first about an anomaly, gathered when
// it is raised. Fields that do not apply to the anomaly's kind stay zero.
type Evidence struct {
	// Prevalence within the retention period.
	OtherApps        int       // other apps that reached the destination
	OtherClusters    int       // other clusters whose apps reached it
	DomainApps       int       // other apps that reached its registrable domain
	Domain           string    // registrable domain (public suffix list); "" for IPs
	ClusterFirstSeen time.Time // when any app of the cluster first reached it; zero if never before

	// The app's own history.
	KnownPorts   []string  // the same name reached by this app on other ports/protocols ("443/TCP")
	Siblings     []string  // names under the same registrable domain in the app's baseline
	AppFirstSeen time.Time // when the app was first seen

	// The name's shape.
	BareIP       bool    // a public IP with no DNS answer behind it
	Labels       int     // number of DNS labels
	LongestLabel int     // length of the longest label
	Entropy      float64 // Shannon entropy (bits per character) of the leftmost label
	PortClass    string  // "well-known" (< 1024), "registered" (1024-49151) or "dynamic"

	// What happened to the flows.
	Dropped bool     // the flow that raised it was dropped by policy
	Pods    []string // pods involved, bounded

	// Reasons are the rule-table lines that set the severity, in order,
	// e.g. "never reached by any app in the cluster", "bare IP", "high port".
	Reasons []string
}
