package egressd

import "time"

// Verdict is what Cilium did with a flow, with Hubble's numbering.
type Verdict uint8

// Verdicts as Hubble numbers them (flow.Verdict).
const (
	VerdictUnknown    Verdict = 0
	VerdictForwarded  Verdict = 1
	VerdictDropped    Verdict = 2
	VerdictError      Verdict = 3
	VerdictAudit      Verdict = 4
	VerdictRedirected Verdict = 5
	VerdictTraced     Verdict = 6
	VerdictTranslated Verdict = 7
)

var verdictNames = [...]string{"UNKNOWN", "FORWARDED", "DROPPED", "ERROR", "AUDIT", "REDIRECTED", "TRACED", "TRANSLATED"}

// String returns Hubble's name of the verdict.
func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return "UNKNOWN"
}

// Denied reports whether the flow did not reach its destination: dropped by
// policy or failed. Such attempts are recorded, but never enter a baseline.
func (v Verdict) Denied() bool {
	return v == VerdictDropped || v == VerdictError
}

// VerdictSet is a set of verdicts as a bit mask, so that merging two sets is a
// commutative OR.
type VerdictSet uint16

// Add returns the set with v added.
func (s VerdictSet) Add(v Verdict) VerdictSet {
	if v > VerdictTranslated {
		v = VerdictUnknown
	}
	return s | 1<<v
}

// Has reports whether v is in the set.
func (s VerdictSet) Has(v Verdict) bool {
	return v <= VerdictTranslated && s&(1<<v) != 0
}

// Names returns the names of the verdicts in the set, in Hubble's order.
func (s VerdictSet) Names() []string {
	var out []string
	for v := VerdictUnknown; v <= VerdictTranslated; v++ {
		if s.Has(v) {
			out = append(out, v.String())
		}
	}
	return out
}

// ObservationKind says what an observation records.
type ObservationKind uint8

const (
	// KindConnect is a flow from an app to a destination outside the cluster.
	KindConnect ObservationKind = iota + 1
	// KindDNSQuery is a DNS question an app asked. It is not a destination:
	// a name that was only queried is not where the app connects.
	KindDNSQuery
)

// NameSource says where an observation's destination name came from.
type NameSource uint8

const (
	// NameFromFlow: the flow's destination_names (Cilium's FQDN cache).
	NameFromFlow NameSource = iota + 1
	// NameFromDNS: a DNS answer the same pod received for the address.
	NameFromDNS
	// NameIsIP: no name is known; the destination is the bare IP.
	NameIsIP
)

// String names the source as the API and anomaly details show it: "flow",
// "dns", "ip", or "unknown" (rows stored before it was recorded).
func (s NameSource) String() string {
	switch s {
	case NameFromFlow:
		return "flow"
	case NameFromDNS:
		return "dns"
	case NameIsIP:
		return "ip"
	}
	return "unknown"
}

// Observation is one attributed flow: an app reached a destination, or asked
// DNS for a name, at a time, from a pod.
type Observation struct {
	Time        time.Time
	Kind        ObservationKind
	App         App
	Pod         string
	Node        string
	Destination Destination
	NameSource  NameSource
	Verdict     Verdict
	// Source names the flow stream the observation came from (a Hubble
	// address or a replayed file); the collector cursor is kept per source.
	Source string
}
