package alerts

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Values of the result label of egressd_alerts_sent_total.
const (
	resultSent     = "sent"     // Alertmanager accepted it
	resultRejected = "rejected" // Alertmanager refused it (400, 413, 422): dropped
	resultFailed   = "failed"   // 5xx, network, timeout, other 4xx: retried
	resultDeferred = "deferred" // its Alertmanager is not configured here
)

// Values of the reason label of egressd_alerts_dropped_total.
const (
	reasonRejected   = "rejected"    // Alertmanager refused the alert
	reasonOutboxFull = "outbox_full" // past Options.MaxPending, the oldest pending went
)

// outboxOps are the values of the op label of
// egressd_alerts_outbox_errors_total.
var outboxOps = []string{"claim", "sent", "failed", "dropped", "trim"}

// outboxStates are the values of the state label of
// egressd_alerts_outbox_pending.
var outboxStates = []string{"firing", "resolved"}

// unknownTarget is the target label of deliveries for an Alertmanager this
// Sender is not configured with.
const unknownTarget = "unknown"

// Metrics are the alert sender's Prometheus metrics. The target label is the
// Alertmanager's host:port, never its full URL (which may hold a password).
type Metrics struct {
	Sent         *prometheus.CounterVec
	PostDuration *prometheus.HistogramVec
	Dropped      *prometheus.CounterVec
	Retries      *prometheus.CounterVec
	OutboxErrors *prometheus.CounterVec
	// OutboxPending is set by whoever reads the outbox depth (serve's
	// refresh loop), by state: firing, resolved.
	OutboxPending *prometheus.GaugeVec
}

// NewMetrics registers the sender's metrics with reg; a nil reg leaves them
// unregistered. Every series whose label values are known in advance exists
// from the start, at zero, so a dashboard shows 0 rather than no data before
// the first delivery; the series of each configured Alertmanager are created
// with the Sender.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		Sent: f.NewCounterVec(prometheus.CounterOpts{
			Name: "egressd_alerts_sent_total",
			Help: "Alert deliveries posted to Alertmanager, by target (host:port) and result: sent, rejected (dropped), failed (retried later), deferred (target not configured on this replica).",
		}, []string{"target", "result"}),
		PostDuration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "egressd_alerts_post_duration_seconds",
			Help:    "Time of one POST /api/v2/alerts, by target (host:port).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"target"}),
		Dropped: f.NewCounterVec(prometheus.CounterOpts{
			Name: "egressd_alerts_dropped_total",
			Help: "Alert deliveries given up for good, by target (host:port) and reason (rejected: Alertmanager refused the alert; outbox_full: the outbox had more than its bound of pending deliveries, the oldest went).",
		}, []string{"target", "reason"}),
		Retries: f.NewCounterVec(prometheus.CounterOpts{
			Name: "egressd_alerts_retries_total",
			Help: "Alert deliveries posted again after a failed attempt, by target (host:port).",
		}, []string{"target"}),
		OutboxErrors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "egressd_alerts_outbox_errors_total",
			Help: "Failed outbox operations (claim, sent, failed, dropped, trim); a failed outcome write means the delivery is sent again after its lease.",
		}, []string{"op"}),
		OutboxPending: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "egressd_alerts_outbox_pending",
			Help: "Alert deliveries waiting in the outbox, by state (firing: to post or post again; resolved: to post once).",
		}, []string{"state"}),
	}
	for _, op := range outboxOps {
		m.OutboxErrors.WithLabelValues(op)
	}
	for _, st := range outboxStates {
		m.OutboxPending.WithLabelValues(st)
	}
	m.Sent.WithLabelValues(unknownTarget, resultDeferred)
	m.Dropped.WithLabelValues(unknownTarget, reasonOutboxFull)
	return m
}
