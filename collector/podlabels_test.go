package collector_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/egressd/egressd"
)

// podSink records what a pipeline delivers, pods' facts included.
type podSink struct {
	captureSink
	sets      []egressd.AppLabelSet
	resolvers []egressd.AppResolver
}

func (s *podSink) ObserveLabelSet(l egressd.AppLabelSet) { s.sets = append(s.sets, l) }
func (s *podSink) ObserveResolver(r egressd.AppResolver) { s.resolvers = append(s.resolvers, r) }

func labelsOf(ss ...string) []egressd.Label {
	var out []egressd.Label
	for _, s := range ss {
		k, v, _ := strings.Cut(s, "=")
		out = append(out, egressd.Label{Key: k, Value: v})
	}
	return out
}

// TestPipelineSendsPodLabels: each pod's labels are sent once, without the
// labels of a rollout, of the namespace or of the cluster, with where the
// app's name came from.
func TestPipelineSendsPodLabels(t *testing.T) {
	t.Parallel()
	sink := &podSink{}
	p, m := newPipeline(t, sink)
	f := podFlow(t0, "140.82.112.6", 443)
	f.Source.Labels = append(f.Source.Labels,
		"k8s:pod-template-hash=7d9f8b6c5d",
		"k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=media",
		"k8s:io.cilium.k8s.policy.serviceaccount=recyclarr",
		"k8s:app.kubernetes.io/part-of=arr",
		"k8s:app.kubernetes.io/part-of=second-value-ignored",
		"k8s:bad=value with spaces",
		"reserved:something",
	)
	again := podFlow(t0.Add(time.Second), "140.82.112.7", 443)
	again.Source = f.Source
	handleAll(t, p, f, again)
	want := []egressd.AppLabelSet{{
		App:       egressd.App{Cluster: "homelab", Namespace: "media", Name: "recyclarr"},
		Labels:    labelsOf("app.kubernetes.io/name=recyclarr-label", "app.kubernetes.io/part-of=arr", "io.cilium.k8s.policy.serviceaccount=recyclarr"),
		NameFrom:  "workload",
		FirstSeen: t0, LastSeen: t0,
	}}
	if diff := cmp.Diff(want, sink.sets); diff != "" {
		t.Fatalf("label sets (-want +got):\n%s", diff)
	}
	require.Equal(t, 1.0, testutil.ToFloat64(m.LabelsDropped), "the invalid label is counted")

	// A pod named by a label says which.
	sink.sets = nil
	g := podFlow(t0, "140.82.112.6", 443)
	g.Source.PodName, g.Source.Workloads = "event-exporter-abc12", nil
	g.Source.Labels = []string{"k8s:k8s-app=event-exporter", "k8s:io.kubernetes.pod.namespace=media"}
	handleAll(t, p, g)
	require.Len(t, sink.sets, 1)
	require.Equal(t, "label:k8s-app", sink.sets[0].NameFrom)
	require.Equal(t, labelsOf("k8s-app=event-exporter"), sink.sets[0].Labels)
}

// TestPipelineBoundsPodLabels: a pod's labels past MaxLabelsPerSet, and an
// app's label sets past MaxLabelSetsPerApp, are counted and not sent.
func TestPipelineBoundsPodLabels(t *testing.T) {
	t.Parallel()
	sink := &podSink{}
	p, m := newPipeline(t, sink)
	f := podFlow(t0, "140.82.112.6", 443)
	for i := range egressd.MaxLabelsPerSet + 8 {
		f.Source.Labels = append(f.Source.Labels, fmt.Sprintf("k8s:l%03d=v", i))
	}
	handleAll(t, p, f)
	require.Len(t, sink.sets, 1)
	require.Len(t, sink.sets[0].Labels, egressd.MaxLabelsPerSet)
	require.Equal(t, 9.0, testutil.ToFloat64(m.LabelsDropped), "the labels past the bound")

	sink.sets = nil
	const pods = egressd.MaxLabelSetsPerApp + 5
	for i := range pods {
		g := podFlow(t0, "140.82.112.6", 443)
		g.Uuid = fmt.Sprint("pod-", i)
		g.Source.PodName = fmt.Sprintf("recyclarr-7d9f8b6c5d-p%d", i)
		g.Source.Labels = append(g.Source.Labels, fmt.Sprintf("k8s:attacker=%d", i))
		handleAll(t, p, g)
	}
	require.Len(t, sink.sets, egressd.MaxLabelSetsPerApp-1, "one set is already known")
	require.Equal(t, float64(pods-(egressd.MaxLabelSetsPerApp-1)), testutil.ToFloat64(m.LabelSetsDropped))
	require.Len(t, sink.obs, pods+1, "the flows themselves are all observations")
}

// TestPipelineSendsResolvers: a DNS question to a CoreDNS pod, to
// NodeLocal DNSCache's link-local address and to a server outside the
// cluster each name the app's resolver once.
func TestPipelineSendsResolvers(t *testing.T) {
	t.Parallel()
	sink := &podSink{}
	p, _ := newPipeline(t, sink)
	toPod := dnsQuestion(t0, "example.com.")
	toLocal := dnsQuestion(t0.Add(time.Second), "example.org.")
	toLocal.IP.Destination = "169.254.20.10"
	toLocal.Destination = &flowpb.Endpoint{Identity: 1, Labels: []string{"reserved:host"}}
	toWorld := dnsQuestion(t0.Add(2*time.Second), "example.net.")
	toWorld.IP.Destination = "8.8.8.8"
	toWorld.Destination = &flowpb.Endpoint{Identity: 2, Labels: []string{"reserved:world"}}
	again := dnsQuestion(t0.Add(3*time.Second), "example.com.")
	handleAll(t, p, toPod, toLocal, toWorld, again)
	app := egressd.App{Cluster: "default", Namespace: "media", Name: "recyclarr"}
	want := []egressd.AppResolver{
		{App: app, Kind: egressd.ResolverCluster, LastSeen: t0},
		{App: app, Kind: egressd.ResolverNodeLocal, Addr: "169.254.20.10", LastSeen: t0.Add(time.Second)},
		{App: app, Kind: egressd.ResolverExternal, Addr: "8.8.8.8", LastSeen: t0.Add(2 * time.Second)},
	}
	if diff := cmp.Diff(want, sink.resolvers); diff != "" {
		t.Fatalf("resolvers (-want +got):\n%s", diff)
	}
}

// lostSink records the lost_events records a pipeline hands over.
type lostSink struct {
	captureSink
	lost []egressd.LostEvents
}

func (s *lostSink) ObserveLost(l egressd.LostEvents) { s.lost = append(s.lost, l) }

// TestPipelineSendsLostEvents: a lost_events record goes to the lost sinks
// with its node and time (the newest flow's when it has none); one before
// any flow and without a time is only counted.
func TestPipelineSendsLostEvents(t *testing.T) {
	t.Parallel()
	sink := &lostSink{}
	p, m := newPipeline(t, sink)
	lost := func(node string, at *timestamppb.Timestamp, n uint64) []byte {
		b, err := proto.Marshal(&observer.GetFlowsResponse{NodeName: node, Time: at,
			ResponseTypes: &observer.GetFlowsResponse_LostEvents{LostEvents: &flowpb.LostEvent{Source: flowpb.LostEventSource_HUBBLE_RING_BUFFER, NumEventsLost: n}}})
		require.NoError(t, err)
		return b
	}
	require.NoError(t, p.Handle("test", lost("k8s-node-1", nil, 3)))
	handleAll(t, p, podFlow(t0, "140.82.112.6", 443))
	require.NoError(t, p.Handle("test", lost("homelab/k8s-node-2", timestamppb.New(t0.Add(time.Minute)), 7)))
	require.NoError(t, p.Handle("test", lost("k8s-node-1", nil, 5)))
	want := []egressd.LostEvents{
		{Node: "k8s-node-2", Time: t0.Add(time.Minute), Source: "HUBBLE_RING_BUFFER", Events: 7},
		{Node: "k8s-node-1", Time: t0, Source: "HUBBLE_RING_BUFFER", Events: 5},
	}
	if diff := cmp.Diff(want, sink.lost); diff != "" {
		t.Fatalf("lost events (-want +got):\n%s", diff)
	}
	require.Equal(t, 15.0, testutil.ToFloat64(m.LostEvents.WithLabelValues("HUBBLE_RING_BUFFER")), "the metric counts them all")
}

// TestAggregatorCarriesPodFactsAndLostEvents: label sets, resolvers and
// lost_events records reach the rollup once per key, times widened; a
// record seen twice is one.
func TestAggregatorCarriesPodFactsAndLostEvents(t *testing.T) {
	t.Parallel()
	w := &fakeWriter{}
	a, _ := newAggregator(t, w, 1000)
	app := egressd.App{Namespace: "media", Name: "recyclarr"}
	set := labelsOf("app=recyclarr")
	a.ObserveLabelSet(egressd.AppLabelSet{App: app, Labels: set, NameFrom: "workload", FirstSeen: t0, LastSeen: t0})
	a.ObserveLabelSet(egressd.AppLabelSet{App: app, Labels: set, NameFrom: "workload", FirstSeen: t0.Add(time.Minute), LastSeen: t0.Add(time.Minute)})
	a.ObserveResolver(egressd.AppResolver{App: app, Kind: egressd.ResolverCluster, LastSeen: t0})
	lost := egressd.LostEvents{Node: "n1", Time: t0, Source: "HUBBLE_RING_BUFFER", Events: 4}
	a.ObserveLost(lost)
	a.ObserveLost(lost)
	require.NoError(t, a.Flush(t.Context()))
	require.Len(t, w.rollups, 1)
	r := w.rollups[0]
	want := []egressd.AppLabelSet{{App: app, Labels: set, NameFrom: "workload", FirstSeen: t0, LastSeen: t0.Add(time.Minute)}}
	if diff := cmp.Diff(want, r.LabelSets); diff != "" {
		t.Fatalf("label sets (-want +got):\n%s", diff)
	}
	require.Equal(t, []egressd.AppResolver{{App: app, Kind: egressd.ResolverCluster, LastSeen: t0}}, r.Resolvers)
	require.Equal(t, []egressd.LostEvents{lost}, r.Lost)
}

// TestPipelineRefreshesPodFacts: a pod still seen an hour of flow time
// later has its labels, and its app its resolver, sent again, so that their
// stored last sighting follows a pod that runs for weeks.
func TestPipelineRefreshesPodFacts(t *testing.T) {
	t.Parallel()
	sink := &podSink{}
	p, _ := newPipeline(t, sink)
	at := []time.Duration{0, 30 * time.Minute, 61 * time.Minute, 90 * time.Minute, 130 * time.Minute}
	for i, d := range at {
		f := podFlow(t0.Add(d), "140.82.112.6", 443)
		f.Uuid = fmt.Sprint("refresh-", i)
		q := dnsQuestion(t0.Add(d), "example.com.")
		q.Uuid = fmt.Sprint("refresh-q-", i)
		handleAll(t, p, f, q)
	}
	var sent []time.Time
	for _, s := range sink.sets {
		sent = append(sent, s.LastSeen)
	}
	require.Equal(t, []time.Time{t0, t0.Add(61 * time.Minute), t0.Add(130 * time.Minute)}, sent)
	var resolved []time.Time
	for _, r := range sink.resolvers {
		resolved = append(resolved, r.LastSeen)
	}
	require.Equal(t, []time.Time{t0, t0.Add(61 * time.Minute), t0.Add(130 * time.Minute)}, resolved)
}
