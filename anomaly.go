package egressd

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"
)

// AnomalyKind names what an anomaly is about. The values appear in replay
// --detect output and map to Alertmanager alert names.
type AnomalyKind string

// Anomaly kinds.
const (
	// AnomalyNovelDestination: an app reached a destination that is
	// neither in its baseline nor accepted.
	AnomalyNovelDestination AnomalyKind = "novel_destination"
	// AnomalyNovelFlood: an app reached many novel destinations in a short
	// time; they are summarised in one anomaly instead of one page each.
	AnomalyNovelFlood AnomalyKind = "novel_destination_flood"
	// AnomalyEgressVolume: an app sends far more than its own history.
	AnomalyEgressVolume AnomalyKind = "egress_volume"
	// AnomalyDNSTunnel: an app asked DNS for many distinct names in a
	// short time, as a DNS tunnel does without connecting to any of them.
	AnomalyDNSTunnel AnomalyKind = "dns_tunnel"
)

// AlertName returns the Alertmanager alertname of the kind.
func (k AnomalyKind) AlertName() string {
	switch k {
	case AnomalyNovelDestination, AnomalyNovelFlood:
		return "EgressNovelDestination"
	case AnomalyEgressVolume:
		return "EgressVolumeAnomaly"
	case AnomalyDNSTunnel:
		return "EgressDNSTunnel"
	}
	return "Egress" + string(k)
}

// Anomaly is something the detector raised. It is stored once, under its
// fingerprint, however many replicas or restarts see it again.
type Anomaly struct {
	Fingerprint string
	Kind        AnomalyKind
	App         App
	// Destination is set for novel destinations; for a flood it is the
	// first destination past the threshold (the parent domain is in
	// Details["domain"]); zero for volume anomalies.
	Destination Destination
	// Time is when the anomaly started (flow time).
	Time       time.Time
	Pod        string
	Node       string
	Verdict    Verdict
	NameSource NameSource
	// BaselineSource says what the destination was compared with:
	// "files" (committed baseline files), "window" (the live rolling
	// window) or "none" (the app had no destinations yet).
	BaselineSource string
	// Summary is one human sentence; Details carries kind-specific values
	// (flow counts, rates, flood members...) for annotations and output.
	Summary string
	Details map[string]string
	// Severity and Evidence rank the anomaly and say why (severity.go).
	Severity Severity
	Evidence Evidence
	// ResolvedAt is zero while the anomaly fires.
	ResolvedAt time.Time
}

// NoveltyFingerprint identifies a novel destination: the same app reaching
// the same destination and port is one anomaly, forever.
func NoveltyFingerprint(a App, d Destination) string {
	return fingerprint(string(AnomalyNovelDestination), a.Cluster, a.Namespace, a.Name, d.Name, strconv.Itoa(int(d.Port)), d.Protocol)
}

// VolumeFingerprint identifies one volume episode of an app: an app that
// calms down and bursts again later is a new anomaly.
func VolumeFingerprint(a App, start time.Time) string {
	return fingerprint(string(AnomalyEgressVolume), a.Cluster, a.Namespace, a.Name, start.UTC().Format(time.RFC3339))
}

// FloodFingerprint identifies a flood of novel destinations of an app that
// started at start.
func FloodFingerprint(a App, start time.Time) string {
	return fingerprint(string(AnomalyNovelFlood), a.Cluster, a.Namespace, a.Name, start.UTC().Format(time.RFC3339))
}

// DNSTunnelFingerprint identifies one window of an app's DNS questions for
// too many distinct names, starting at start.
func DNSTunnelFingerprint(a App, start time.Time) string {
	return fingerprint(string(AnomalyDNSTunnel), a.Cluster, a.Namespace, a.Name, start.UTC().Format(time.RFC3339))
}

func fingerprint(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Accepted is a destination an operator accepted for an app: it counts as
// part of the app's baseline from then on.
type Accepted struct {
	App         App
	Destination Destination
	By          string
	At          time.Time
}

// Delivery is one pending notification of an anomaly to one Alertmanager, as
// the durable outbox holds it: every configured Alertmanager gets its own
// row, so one that is down delays nobody else.
type Delivery struct {
	ID int64
	// Target is the Alertmanager's base URL.
	Target  string
	Anomaly Anomaly
	// Resolved deliveries are sent once with endsAt = now; firing ones are
	// sent again every resend interval until the anomaly resolves.
	Resolved bool
	// Attempts counts failed attempts since the last success.
	Attempts int
}
