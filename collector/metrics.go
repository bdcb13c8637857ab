package collector

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Reasons a flow is not an observation, as values of the reason label of
// egressd_collector_flows_skipped_total. They are a fixed set: the label never
// carries anything read from a flow.
const (
	skipNotFlow       = "not_flow"
	skipNotEgress     = "not_egress"
	skipReply         = "reply"
	skipICMPAnswer    = "icmp_answer"
	skipInCluster     = "in_cluster"
	skipInternalCIDR  = "internal_cidr"
	skipAlreadyStored = "already_stored"
	skipDuplicate     = "duplicate"
	skipDNSOther      = "dns_other"
	skipDNSAnswer     = "dns_answer"
	skipLostEvents    = "lost_events" // the record, not the events it reports lost
)

// Reasons a flow is refused before any processing, as values of
// egressd_flows_rejected_total{reason}.
const (
	rejectClock = "clock"
)

// Reasons a flow that should be an observation could not be attributed, as
// values of egressd_collector_unattributed_flows_total{reason}.
const (
	unattrNoNamespace   = "no_namespace"
	unattrBadNamespace  = "invalid_namespace"
	unattrNoApp         = "no_app"
	unattrBadIP         = "invalid_ip"
	unattrBadName       = "invalid_name"
	unattrNoTime        = "no_time"
	unattrSourceNotPod  = "source_not_pod"
	unattrBadDNSAnswer  = "invalid_dns_answer"
	unattrDNSNoAskerPod = "dns_no_pod"
)

// Metrics are the collector's Prometheus metrics. Create them once per
// registry with NewMetrics and share them between pipelines.
type Metrics struct {
	Messages       prometheus.Counter
	DecodeErrors   prometheus.Counter
	Observations   *prometheus.CounterVec
	Skipped        *prometheus.CounterVec
	Unattributed   *prometheus.CounterVec
	LostEvents     *prometheus.CounterVec
	DNSCache       prometheus.Gauge
	DNSEvicted     prometheus.Counter
	DNSPodFull     prometheus.Counter
	DedupEvicted   prometheus.Counter
	StreamUp       prometheus.Gauge
	Reconnects     prometheus.Counter
	StreamErrors   prometheus.Counter
	ReplayBadLines prometheus.Counter
	// Rejected counts flows refused at the door, by reason ("clock": a
	// time too far ahead of the receiving clock, or before 2000).
	Rejected *prometheus.CounterVec

	// LeaseHeld, FlushesFenced and LeaseLost are set by cmd/egressd, which
	// lets one replica at a time collect a Hubble source (the source's
	// lease in PostgreSQL).
	LeaseHeld     prometheus.Gauge
	FlushesFenced prometheus.Counter
	LeaseLost     prometheus.Counter

	// PodFactsDropped counts pod labels, label sets and resolvers not
	// kept for their bounds (egressd.MaxLabelsPerSet and the like), by
	// what was dropped; LabelsDropped, LabelSetsDropped and
	// ResolversDropped are its series.
	PodFactsDropped  *prometheus.CounterVec
	LabelsDropped    prometheus.Counter
	LabelSetsDropped prometheus.Counter
	ResolversDropped prometheus.Counter

	AggKeys        prometheus.Gauge
	AggDropped     prometheus.Counter
	AggSampled     prometheus.Counter
	Apps           prometheus.Gauge
	AppsMax        prometheus.Gauge
	AppsSampled    prometheus.Counter
	Flushes        *prometheus.CounterVec
	FlushDuration  prometheus.Histogram
	FlushedRows    prometheus.Counter
	CursorLagSecs  prometheus.Gauge
	obsConnect     prometheus.Counter
	rejectedClock  prometheus.Counter
	obsDNS         prometheus.Counter
	skipped        map[string]prometheus.Counter
	unattributed   map[string]prometheus.Counter
	flushOK        prometheus.Counter
	flushFailed    prometheus.Counter
	lostBySource   [4]prometheus.Counter
	lostSourceName [4]string
}

// NewMetrics registers the collector's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		Messages: f.NewCounter(prometheus.CounterOpts{
			Name: "egressd_collector_messages_received_total",
			Help: "GetFlowsResponse messages received from Hubble or read from replay files.",
		}),
		DecodeErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "egressd_collector_decode_errors_total",
			Help: "Messages that could not be decoded as a GetFlowsResponse.",
		}),
		Observations: f.NewCounterVec(prometheus.CounterOpts{
			Name: "egressd_collector_observations_total",
			Help: "Attributed observations by kind (connect: egress to outside the cluster; dns_query).",
		}, []string{"kind"}),
		Skipped: f.NewCounterVec(prometheus.CounterOpts{
			Name: "egressd_collector_flows_skipped_total",
			Help: "Flows that are not observations, by reason (not egress, reply, in-cluster destination, duplicate...).",
		}, []string{"reason"}),
		Unattributed: f.NewCounterVec(prometheus.CounterOpts{
			Name: "egressd_collector_unattributed_flows_total",
			Help: "Egress flows to outside the cluster that could not be attributed to an app or destination, by reason.",
		}, []string{"reason"}),
		// Named without the collector_ prefix: the name the PrometheusRule
		// alerts on.
		LostEvents: f.NewCounterVec(prometheus.CounterOpts{
			Name: "egressd_hubble_lost_events_total",
			Help: "Events Hubble reported lost (lost_events), by where they were lost.",
		}, []string{"source"}),
		DNSCache: f.NewGauge(prometheus.GaugeOpts{
			Name: "egressd_collector_dns_cache_entries",
			Help: "(pod, address) -> name entries learned from DNS answers.",
		}),
		DNSEvicted: f.NewCounter(prometheus.CounterOpts{
			Name: "egressd_collector_dns_cache_evictions_total",
			Help: "Unexpired DNS cache entries evicted because the cache was full.",
		}),
		DNSPodFull: f.NewCounter(prometheus.CounterOpts{
			Name: "egressd_collector_dns_cache_pod_full_total",
			Help: "DNS answers not cached because their pod had its most live answers (5,000): its connections to those addresses are named by address.",
		}),
		DedupEvicted: f.NewCounter(prometheus.CounterOpts{
			Name: "egressd_collector_dedup_evictions_total",
			Help: "Flows forgotten by the duplicate filter before its window passed because it was full.",
		}),
		StreamUp: f.NewGauge(prometheus.GaugeOpts{
			Name: "egressd_collector_hubble_stream_up",
			Help: "1 while the GetFlows stream to Hubble is established.",
		}),
		LeaseHeld: f.NewGauge(prometheus.GaugeOpts{
			Name: "egressd_collector_lease_held",
			Help: "1 while this replica holds the lease of its Hubble source and collects it; 0 on a standby replica.",
		}),
		FlushesFenced: f.NewCounter(prometheus.CounterOpts{
			Name: "egressd_collector_flushes_fenced_total",
			Help: "Flushes discarded because another replica had taken the Hubble source over; it re-reads those flows from the stored cursor.",
		}),
		LeaseLost: f.NewCounter(prometheus.CounterOpts{
			Name: "egressd_collector_lease_lost_total",
			Help: "Times this replica found that another had taken its Hubble source over.",
		}),
		Reconnects: f.NewCounter(prometheus.CounterOpts{
			Name: "egressd_collector_hubble_reconnects_total",
			Help: "GetFlows streams opened after the first.",
		}),
		StreamErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "egressd_collector_hubble_stream_errors_total",
			Help: "GetFlows streams that ended with an error.",
		}),
		ReplayBadLines: f.NewCounter(prometheus.CounterOpts{
			Name: "egressd_collector_replay_bad_lines_total",
			Help: "Replay lines that were not a Hubble flow, lost-events or node-status record.",
		}),
		// Named without the collector_ prefix the other metrics have: it
		// is the name operators were told to alert on.
		Rejected: f.NewCounterVec(prometheus.CounterOpts{
			Name: "egressd_flows_rejected_total",
			Help: "Flows refused before any processing, by reason (clock: stamped more than --max-clock-skew ahead of the receiving clock, or before 2000); they move no cursor.",
		}, []string{"reason"}),
		AggKeys: f.NewGauge(prometheus.GaugeOpts{
			Name: "egressd_collector_aggregate_keys",
			Help: "Distinct (app, destination) and hourly keys waiting for the next flush.",
		}),
		AggDropped: f.NewCounter(prometheus.CounterOpts{
			Name: "egressd_collector_observations_dropped_total",
			Help: "Observations dropped because the aggregator was full while PostgreSQL was not keeping up.",
		}),
		AggSampled: f.NewCounter(prometheus.CounterOpts{
			Name: "egressd_collector_observations_sampled_total",
			Help: "Observations of new names not kept because their app was past --max-keys-per-app names in the hour (sampled; logged per app).",
		}),
		Apps: f.NewGauge(prometheus.GaugeOpts{
			Name: "egressd_collector_apps",
			Help: "Apps the pipeline knows (stored, or kept since the stream started), which --max-apps bounds.",
		}),
		AppsMax: f.NewGauge(prometheus.GaugeOpts{
			Name: "egressd_collector_apps_max",
			Help: "The --max-apps bound.",
		}),
		AppsSampled: f.NewCounter(prometheus.CounterOpts{
			Name: "egressd_collector_observations_apps_sampled_total",
			Help: "Observations of new apps not kept because the pipeline knew half of --max-apps apps (past half, new apps are sampled; at the bound, none is kept; logged as apps_not_kept).",
		}),
		Flushes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "egressd_collector_flushes_total",
			Help: "Flushes of aggregated observations to PostgreSQL, by result.",
		}, []string{"result"}),
		FlushDuration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "egressd_collector_flush_duration_seconds",
			Help:    "Time to write one flush to PostgreSQL.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
		FlushedRows: f.NewCounter(prometheus.CounterOpts{
			Name: "egressd_collector_flushed_rows_total",
			Help: "Destination, hourly and DNS rows written to PostgreSQL.",
		}),
		CursorLagSecs: f.NewGauge(prometheus.GaugeOpts{
			Name: "egressd_collector_cursor_lag_seconds",
			Help: "Wall-clock time minus the newest flow time committed to PostgreSQL.",
		}),
	}
	m.PodFactsDropped = f.NewCounterVec(prometheus.CounterOpts{
		Name: "egressd_collector_pod_facts_dropped_total",
		Help: "Pod labels (invalid or past 32 per pod), label sets (past 16 per app) and DNS resolvers (past 8 per app) not kept for policy generation, by what.",
	}, []string{"what"})
	m.LabelsDropped = m.PodFactsDropped.WithLabelValues("label")
	m.LabelSetsDropped = m.PodFactsDropped.WithLabelValues("label_set")
	m.ResolversDropped = m.PodFactsDropped.WithLabelValues("resolver")
	m.obsConnect = m.Observations.WithLabelValues("connect")
	m.obsDNS = m.Observations.WithLabelValues("dns_query")
	m.rejectedClock = m.Rejected.WithLabelValues(rejectClock)
	m.skipped = map[string]prometheus.Counter{}
	for _, r := range []string{skipNotFlow, skipNotEgress, skipReply, skipICMPAnswer, skipInCluster, skipInternalCIDR, skipAlreadyStored, skipDuplicate, skipDNSOther, skipDNSAnswer, skipLostEvents} {
		m.skipped[r] = m.Skipped.WithLabelValues(r)
	}
	m.unattributed = map[string]prometheus.Counter{}
	for _, r := range []string{unattrNoNamespace, unattrBadNamespace, unattrNoApp, unattrBadIP, unattrBadName, unattrNoTime, unattrSourceNotPod, unattrBadDNSAnswer, unattrDNSNoAskerPod} {
		m.unattributed[r] = m.Unattributed.WithLabelValues(r)
	}
	m.flushOK = m.Flushes.WithLabelValues("ok")
	m.flushFailed = m.Flushes.WithLabelValues("error")
	m.lostSourceName = [4]string{"UNKNOWN_LOST_EVENT_SOURCE", "PERF_EVENT_RING_BUFFER", "OBSERVER_EVENTS_QUEUE", "HUBBLE_RING_BUFFER"}
	for i, n := range m.lostSourceName {
		m.lostBySource[i] = m.LostEvents.WithLabelValues(n)
	}
	return m
}

func (m *Metrics) skip(reason string)   { m.skipped[reason].Inc() }
func (m *Metrics) unattr(reason string) { m.unattributed[reason].Inc() }

func (m *Metrics) lost(source int32, n uint64) {
	if source < 0 || int(source) >= len(m.lostBySource) {
		source = 0
	}
	m.lostBySource[source].Add(float64(n))
}
