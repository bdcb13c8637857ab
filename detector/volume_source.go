package detector

import (
	"context"
	"time"

	"github.com/egressd/egressd"
)

// Rate is an app's egress rate now and over its own history, in the unit of
// its source (bytes/s from Prometheus, flows/s from Hubble).
type Rate struct {
	// Current is the recent rate (over the source's short window).
	Current float64
	// Average is the rate over the history window (default 24 h).
	Average float64
	// HistoryCovered is how much of the history window had data: the
	// volume rule does not judge an app with less than a full window.
	HistoryCovered time.Duration
	// Pods are the pods that contributed, for the alert's example pod.
	Pods []string
}

// RateSource reports egress rates per app. Prometheus (cAdvisor's
// container_network_transmit_bytes_total) is one; the flow rate counted from
// Hubble observations is the other.
type RateSource interface {
	Rates(ctx context.Context, now time.Time) (map[egressd.App]Rate, error)
}

// PodApps maps pods to the apps the collector attributed them to, so that
// per-pod metrics (cAdvisor) can be summed per app.
type PodApps interface {
	// AppOf returns the app of a pod seen within the retention of the
	// mapping, and false for a pod never seen egressing.
	AppOf(namespace, pod string) (egressd.App, bool)
}
