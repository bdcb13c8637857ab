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
	OtherApps        int       `json:"other_apps"`                  // other apps that reached the destination
	OtherClusters    int       `json:"other_clusters"`              // other clusters whose apps reached it
	DomainApps       int       `json:"domain_apps"`                 // other apps that reached its registrable domain
	Domain           string    `json:"domain,omitempty"`            // registrable domain (public suffix list); "" for IPs
	ClusterFirstSeen time.Time `json:"cluster_first_seen,omitzero"` // when any app of the cluster first reached it; zero if never before

	// The app's own history.
	KnownPorts   []string  `json:"known_ports,omitempty"`   // the same name reached by this app on other ports/protocols ("443/TCP")
	Siblings     []string  `json:"siblings,omitempty"`      // names under the same registrable domain in the app's baseline
	AppFirstSeen time.Time `json:"app_first_seen,omitzero"` // when the app was first seen

	// The name's shape.
	BareIP       bool    `json:"bare_ip,omitempty"`       // a public IP with no DNS answer behind it
	Labels       int     `json:"labels,omitempty"`        // number of DNS labels
	LongestLabel int     `json:"longest_label,omitempty"` // length of the longest label
	Entropy      float64 `json:"entropy,omitempty"`       // Shannon entropy (bits per character) of the leftmost label
	PortClass    string  `json:"port_class,omitempty"`    // "well-known" (< 1024), "registered" (1024-49151) or "dynamic"

	// What happened to the flows.
	Dropped bool     `json:"dropped,omitempty"` // the flow that raised it was dropped by policy
	Pods    []string `json:"pods,omitempty"`    // pods involved, bounded

	// Reasons are the rule-table lines that set the severity, in order,
	// e.g. "never reached by any app in the cluster", "bare IP", "high port".
	Reasons []string `json:"reasons,omitempty"`

	// Incomplete says what could not be gathered, and why (the store did
	// not answer): the prevalence counts are then unknown, not zero.
	Incomplete string `json:"incomplete,omitempty"`
}
