package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// unmatchedRoute is the route label of requests that matched no route.
const unmatchedRoute = "unmatched"

// Metrics are the HTTP API's Prometheus metrics. The route label is the
// chi route pattern ("/api/v1/apps/{namespace}/{app}/destinations"), never
// the request's path, and the method label is one of the standard methods
// or "other": no label value comes from the request as written.
type Metrics struct {
	Requests *prometheus.CounterVec
	Duration *prometheus.HistogramVec
	// Unauthorized counts mutations refused for want of the right bearer
	// token, by reason (no_token, wrong_token).
	Unauthorized *prometheus.CounterVec
	// ClientLimited counts /api requests answered 429 because their
	// client had Options.MaxClientRequests in flight.
	ClientLimited prometheus.Counter
}

// Reasons a mutation is refused, as values of the reason label of
// egressd_httpapi_unauthorized_requests_total.
const (
	unauthorizedNoToken    = "no_token"
	unauthorizedWrongToken = "wrong_token"
)

// NewMetrics registers the HTTP API's metrics with reg; a nil reg leaves
// them unregistered.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		Requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "egressd_httpapi_requests_total",
			Help: "HTTP requests answered, by method, route pattern and status code.",
		}, []string{"method", "route", "code"}),
		Duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "egressd_httpapi_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by method and route pattern.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"method", "route"}),
		Unauthorized: f.NewCounterVec(prometheus.CounterOpts{
			Name: "egressd_httpapi_unauthorized_requests_total",
			Help: "Mutations refused for want of the right bearer token, by reason (no_token, wrong_token).",
		}, []string{"reason"}),
		ClientLimited: f.NewCounter(prometheus.CounterOpts{
			Name: "egressd_httpapi_client_limited_requests_total",
			Help: "API requests answered 429 because their client (remote IP address) already had the maximum in flight.",
		}),
	}
	// Every reason is exported from the start, at 0.
	m.Unauthorized.WithLabelValues(unauthorizedNoToken)
	m.Unauthorized.WithLabelValues(unauthorizedWrongToken)
	return m
}

func (m *Metrics) unauthorized(reason string) {
	m.Unauthorized.WithLabelValues(reason).Inc()
}

func (m *Metrics) observe(method, route string, code int, d time.Duration) {
	method = methodLabel(method)
	m.Requests.WithLabelValues(method, route, strconv.Itoa(code)).Inc()
	m.Duration.WithLabelValues(method, route).Observe(d.Seconds())
}

func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}
