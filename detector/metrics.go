package detector

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/egressd/egressd"
)

// raisedKinds are the values of the kind label of
// egressd_detector_anomalies_raised_total: every kind the detector raises.
var raisedKinds = []egressd.AnomalyKind{
	egressd.AnomalyNovelDestination, egressd.AnomalyNovelFlood,
	egressd.AnomalyEgressVolume, egressd.AnomalyDNSTunnel,
}

// suppressReasons are the values of the reason label of
// egressd_detector_novel_suppressed_total.
var suppressReasons = []string{"learning", "unbounded", "flood"}

// Metrics are the detector's Prometheus metrics.
type Metrics struct {
	Observed     prometheus.Counter
	SlowPath     prometheus.Counter
	Raised       *prometheus.CounterVec
	Suppressed   *prometheus.CounterVec
	QueueDropped prometheus.Counter
	StoreErrors  prometheus.Counter
	// EvidenceErrors counts anomalies recorded without the store's
	// evidence (prevalence unknown) because it did not answer.
	EvidenceErrors prometheus.Counter
	KnownKeys      prometheus.Gauge
	NotRemembered  prometheus.Counter
	Apps           prometheus.Gauge
	VolumeErrors   prometheus.Counter
	// VolumeSourceUp is 1 while the volume rate source answers, 0 while
	// it fails (the rule then judges nothing).
	VolumeSourceUp prometheus.Gauge
}

// NewMetrics registers the detector's metrics with reg. Every series whose
// label values are known in advance exists from the start, at zero, so a
// dashboard shows 0 rather than no data before the first anomaly.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		Observed: f.NewCounter(prometheus.CounterOpts{
			Name: "egressd_detector_observations_total",
			Help: "Connect observations the novelty detector judged.",
		}),
		SlowPath: f.NewCounter(prometheus.CounterOpts{
			Name: "egressd_detector_slow_path_total",
			Help: "Observations whose key was not yet known to be normal.",
		}),
		Raised: f.NewCounterVec(prometheus.CounterOpts{
			Name: "egressd_detector_anomalies_raised_total",
			Help: "Anomalies raised, by kind (recorded once each; repeats of a stored fingerprint are not counted).",
		}, []string{"kind"}),
		Suppressed: f.NewCounterVec(prometheus.CounterOpts{
			Name: "egressd_detector_novel_suppressed_total",
			Help: "Novel destinations not raised on their own, by reason (learning, unbounded, flood).",
		}, []string{"reason"}),
		QueueDropped: f.NewCounter(prometheus.CounterOpts{
			Name: "egressd_detector_queue_dropped_total",
			Help: "Anomalies dropped because the queue to the store was full.",
		}),
		StoreErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "egressd_detector_store_errors_total",
			Help: "Failed attempts to record or resolve an anomaly (retried).",
		}),
		EvidenceErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "egressd_detector_evidence_errors_total",
			Help: "Anomalies recorded without the store's evidence (prevalence unknown) because the store did not answer.",
		}),
		KnownKeys: f.NewGauge(prometheus.GaugeOpts{
			Name: "egressd_detector_known_keys",
			Help: "(app, destination, port) keys in the live window index.",
		}),
		NotRemembered: f.NewCounter(prometheus.CounterOpts{
			Name: "egressd_detector_keys_not_remembered_total",
			Help: "Novel keys judged but not put in the live window because their app had MaxKeysPerApp keys there (a DNS tunnel or scanner).",
		}),
		Apps: f.NewGauge(prometheus.GaugeOpts{
			Name: "egressd_detector_apps",
			Help: "Apps the detector tracks.",
		}),
		VolumeErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "egressd_detector_volume_source_errors_total",
			Help: "Failed reads of the volume rate source.",
		}),
		VolumeSourceUp: f.NewGauge(prometheus.GaugeOpts{
			Name: "egressd_detector_volume_source_up",
			Help: "0 while the volume rule's Prometheus rate source fails and the rule judges nothing, else 1 (also without Prometheus).",
		}),
	}
	// Up until a query fails: without Prometheus the rate is Hubble's flow
	// rate, which always answers, so an alert on 0 fires only for a failing
	// Prometheus.
	m.VolumeSourceUp.Set(1)
	for _, k := range raisedKinds {
		m.Raised.WithLabelValues(string(k))
	}
	for _, r := range suppressReasons {
		m.Suppressed.WithLabelValues(r)
	}
	return m
}

// RegisterPodAppMetrics registers the metrics of a pod -> app map, read
// from its Stats at each scrape.
func RegisterPodAppMetrics(reg prometheus.Registerer, m *PodAppMap) {
	f := promauto.With(reg)
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "egressd_detector_pods",
		Help: "Pods whose app the pod -> app map knows (with --prometheus-url).",
	}, func() float64 { return float64(m.Stats().Pods) })
	f.NewCounterFunc(prometheus.CounterOpts{
		Name: "egressd_detector_pods_evicted_total",
		Help: "Pods the pod -> app map forgot early because it held its most pods.",
	}, func() float64 { return float64(m.Stats().Evicted) })
	f.NewCounterFunc(prometheus.CounterOpts{
		Name: "egressd_detector_pods_not_kept_total",
		Help: "New pods the pod -> app map did not keep because their app had its most pods (PodAppOptions.MaxPodsPerApp).",
	}, func() float64 { return float64(m.Stats().Refused) })
}
