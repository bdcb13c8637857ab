package collector_test

import (
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// captureSink records what a pipeline delivers.
type captureSink struct {
	obs     []egressd.Observation
	cursors map[string]time.Time
}

func (c *captureSink) Observe(o *egressd.Observation) { c.obs = append(c.obs, *o) }
func (c *captureSink) Advance(source string, t time.Time) {
	if c.cursors == nil {
		c.cursors = map[string]time.Time{}
	}
	c.cursors[source] = t
}

// podFlow returns an egress TCP flow from a recyclarr pod to a world address.
func podFlow(at time.Time, dstIP string, port uint32) *flowpb.Flow {
	return &flowpb.Flow{
		Time:     timestamppb.New(at),
		Uuid:     "uuid-" + at.Format(time.RFC3339Nano) + dstIP,
		Verdict:  flowpb.Verdict_FORWARDED,
		IP:       &flowpb.IP{Source: "10.42.1.17", Destination: dstIP, IpVersion: flowpb.IPVersion_IPv4},
		L4:       &flowpb.Layer4{Protocol: &flowpb.Layer4_TCP{TCP: &flowpb.TCP{SourcePort: 40000, DestinationPort: port, Flags: &flowpb.TCPFlags{SYN: true}}}},
		NodeName: "k8s-node-1",
		Source: &flowpb.Endpoint{
			ID: 1234, Identity: 51234, Namespace: "media", PodName: "recyclarr-7d9f8b6c5d-x2k9p",
			Labels: []string{
				"k8s:app.kubernetes.io/name=recyclarr-label",
				"k8s:io.cilium.k8s.policy.cluster=homelab",
				"k8s:io.kubernetes.pod.namespace=media",
			},
			Workloads: []*flowpb.Workload{{Name: "recyclarr", Kind: "Deployment"}},
		},
		Destination:      &flowpb.Endpoint{Identity: 2, Labels: []string{"reserved:world"}},
		Type:             flowpb.FlowType_L3_L4,
		EventType:        &flowpb.CiliumEventType{Type: 4},
		TrafficDirection: flowpb.TrafficDirection_EGRESS,
		IsReply:          wrapperspb.Bool(false),
	}
}

// dnsAnswer is the proxy's DNS response to the recyclarr pod.
func dnsAnswer(at time.Time, query string, ttl uint32, ips ...string) *flowpb.Flow {
	return &flowpb.Flow{
		Time:     timestamppb.New(at),
		Uuid:     "dns-" + at.Format(time.RFC3339Nano) + query,
		Verdict:  flowpb.Verdict_FORWARDED,
		IP:       &flowpb.IP{Source: "10.42.0.5", Destination: "10.42.1.17", IpVersion: flowpb.IPVersion_IPv4},
		L4:       &flowpb.Layer4{Protocol: &flowpb.Layer4_UDP{UDP: &flowpb.UDP{SourcePort: 53, DestinationPort: 41000}}},
		NodeName: "k8s-node-1",
		Source: &flowpb.Endpoint{Identity: 796, Namespace: "kube-system", PodName: "coredns-5d78c9869d-8xk2m",
			Labels: []string{"k8s:k8s-app=kube-dns"}, Workloads: []*flowpb.Workload{{Name: "coredns", Kind: "Deployment"}}},
		Destination: &flowpb.Endpoint{Identity: 51234, Namespace: "media", PodName: "recyclarr-7d9f8b6c5d-x2k9p",
			Workloads: []*flowpb.Workload{{Name: "recyclarr", Kind: "Deployment"}}},
		Type: flowpb.FlowType_L7,
		L7: &flowpb.Layer7{Type: flowpb.L7FlowType_RESPONSE, Record: &flowpb.Layer7_Dns{Dns: &flowpb.DNS{
			Query: query, Ips: ips, Ttl: ttl, ObservationSource: "proxy", Qtypes: []string{"A"}, Rrtypes: []string{"A"},
		}}},
		EventType:        &flowpb.CiliumEventType{Type: 129},
		TrafficDirection: flowpb.TrafficDirection_EGRESS,
		IsReply:          wrapperspb.Bool(true),
	}
}

func dnsQuestion(at time.Time, query string) *flowpb.Flow {
	f := dnsAnswer(at, query, 0)
	f.Uuid = "q-" + f.Uuid
	f.Source, f.Destination = f.Destination, f.Source
	f.IP.Source, f.IP.Destination = f.IP.Destination, f.IP.Source
	f.L4 = &flowpb.Layer4{Protocol: &flowpb.Layer4_UDP{UDP: &flowpb.UDP{SourcePort: 41000, DestinationPort: 53}}}
	f.L7 = &flowpb.Layer7{Type: flowpb.L7FlowType_REQUEST, Record: &flowpb.Layer7_Dns{Dns: &flowpb.DNS{Query: query, Qtypes: []string{"A"}}}}
	f.IsReply = wrapperspb.Bool(false)
	return f
}

func resp(f *flowpb.Flow) *observer.GetFlowsResponse {
	return &observer.GetFlowsResponse{
		ResponseTypes: &observer.GetFlowsResponse_Flow{Flow: f},
		NodeName:      f.GetNodeName(), Time: f.GetTime(),
	}
}

func syntheticResponses() []*observer.GetFlowsResponse {
	named := podFlow(t0, "140.82.112.5", 443)
	named.DestinationNames = []string{"API.GitHub.com."}
	return []*observer.GetFlowsResponse{
		resp(podFlow(t0, "140.82.112.6", 443)), resp(named),
		resp(dnsAnswer(t0, "raw.githubusercontent.com.", 60, "185.199.108.133")),
		resp(dnsQuestion(t0, "example.com.")),
		{ResponseTypes: &observer.GetFlowsResponse_LostEvents{LostEvents: &flowpb.LostEvent{Source: flowpb.LostEventSource_HUBBLE_RING_BUFFER, NumEventsLost: 7}}},
	}
}

func newPipeline(t *testing.T, sink collector.Sink) (*collector.Pipeline, *collector.Metrics) {
	t.Helper()
	m := collector.NewMetrics(prometheus.NewRegistry())
	opts := collector.DefaultOptions()
	opts.Cluster = "default"
	p, err := collector.NewPipeline(opts, m, sink)
	require.NoError(t, err)
	return p, m
}

func handleAll(t *testing.T, p *collector.Pipeline, flows ...*flowpb.Flow) {
	t.Helper()
	for _, f := range flows {
		b, err := proto.Marshal(resp(f))
		require.NoError(t, err)
		require.NoError(t, p.Handle("test", b))
	}
}

type wantObs struct {
	App    string
	Pod    string
	Dest   string
	Kind   egressd.ObservationKind
	Source egressd.NameSource
	Verd   egressd.Verdict
}

func summarize(obs []egressd.Observation) []wantObs {
	var out []wantObs
	for _, o := range obs {
		out = append(out, wantObs{
			App: o.App.Cluster + ":" + o.App.String(), Pod: o.Pod, Dest: o.Destination.String(),
			Kind: o.Kind, Source: o.NameSource, Verd: o.Verdict,
		})
	}
	return out
}

const (
	connect = egressd.KindConnect
	fromIP  = egressd.NameIsIP
	fromDNS = egressd.NameFromDNS
	fromFlw = egressd.NameFromFlow
	fwd     = egressd.VerdictForwarded
)

func TestAttribution(t *testing.T) {
	t.Parallel()
	recyclarr := "homelab:media/recyclarr"
	pod := "recyclarr-7d9f8b6c5d-x2k9p"
	tests := []struct {
		name  string
		flows func() []*flowpb.Flow
		want  []wantObs
	}{
		{
			name:  "world egress by IP, app from workload",
			flows: func() []*flowpb.Flow { return []*flowpb.Flow{podFlow(t0, "140.82.112.6", 443)} },
			want:  []wantObs{{recyclarr, pod, "140.82.112.6:443/TCP", connect, fromIP, fwd}},
		},
		{
			name: "destination_names lower-cased, trailing dot removed",
			flows: func() []*flowpb.Flow {
				f := podFlow(t0, "140.82.112.6", 443)
				f.DestinationNames = []string{"API.GitHub.com.", "other.example"}
				return []*flowpb.Flow{f}
			},
			want: []wantObs{{recyclarr, pod, "api.github.com:443/TCP", connect, fromFlw, fwd}},
		},
		{
			name: "replies are not egress",
			flows: func() []*flowpb.Flow {
				f := podFlow(t0, "140.82.112.6", 443)
				f.IsReply = wrapperspb.Bool(true)
				g := podFlow(t0, "140.82.112.7", 443)
				g.IsReply, g.Reply = nil, true // the deprecated field alone
				return []*flowpb.Flow{f, g}
			},
		},
		{
			name: "ingress is not egress",
			flows: func() []*flowpb.Flow {
				f := podFlow(t0, "140.82.112.6", 443)
				f.TrafficDirection = flowpb.TrafficDirection_INGRESS
				return []*flowpb.Flow{f}
			},
		},
		{
			name: "identity 2 that names a pod is in the cluster (L7 proxy quirk)",
			flows: func() []*flowpb.Flow {
				f := podFlow(t0, "10.156.2.9", 9080)
				f.Destination.Namespace, f.Destination.PodName = "bookinfo", "details-v1-5498c86cf5-abcde"
				g := podFlow(t0, "34.1.2.3", 9080)
				g.Destination.PodName = "details-v1-5498c86cf5-abcde"
				return []*flowpb.Flow{f, g}
			},
		},
		{
			name: "world that is a node or LAN address is internal",
			flows: func() []*flowpb.Flow {
				return []*flowpb.Flow{podFlow(t0, "192.168.1.11", 9100), podFlow(t0, "10.128.0.4", 10250), podFlow(t0, "fd00::1", 443)}
			},
		},
		{
			name: "kube-apiserver identity that also carries reserved:world",
			flows: func() []*flowpb.Flow {
				f := podFlow(t0, "34.118.224.1", 443)
				f.Destination = &flowpb.Endpoint{Identity: 16777217, Labels: []string{"reserved:kube-apiserver", "reserved:world"}}
				return []*flowpb.Flow{f}
			},
		},
		{
			name: "cidr and fqdn identities are outside; unlabelled identity 2 too",
			flows: func() []*flowpb.Flow {
				f := podFlow(t0, "1.1.1.1", 443)
				f.Destination = &flowpb.Endpoint{Identity: 16777218, Labels: []string{"cidr:1.1.1.1/32", "reserved:world-ipv4"}}
				g := podFlow(t0, "140.82.112.5", 443)
				g.Destination = &flowpb.Endpoint{Identity: 16777219, Labels: []string{"fqdn:api.github.com"}}
				g.DestinationNames = []string{"api.github.com"}
				h := podFlow(t0, "8.8.8.8", 853)
				h.Destination = &flowpb.Endpoint{Identity: 2}
				i := podFlow(t0, "8.8.4.4", 853)
				i.Destination = &flowpb.Endpoint{Identity: 12345} // unlabelled, not a world identity
				return []*flowpb.Flow{f, g, h, i}
			},
			want: []wantObs{
				{recyclarr, pod, "1.1.1.1:443/TCP", connect, fromIP, fwd},
				{recyclarr, pod, "api.github.com:443/TCP", connect, fromFlw, fwd},
				{recyclarr, pod, "8.8.8.8:853/TCP", connect, fromIP, fwd},
			},
		},
		{
			name: "app from label, then from the pod name",
			flows: func() []*flowpb.Flow {
				f := podFlow(t0, "1.1.1.1", 443)
				f.Source.Workloads = nil
				g := podFlow(t0, "1.1.1.2", 443)
				g.Source = &flowpb.Endpoint{Namespace: "backup", PodName: "restic-backup-29345760-x7k2p", Labels: []string{"k8s:job-name=restic-backup-29345760"}}
				return []*flowpb.Flow{f, g}
			},
			want: []wantObs{
				{"homelab:media/recyclarr-label", pod, "1.1.1.1:443/TCP", connect, fromIP, fwd},
				{"default:backup/restic-backup", "restic-backup-29345760-x7k2p", "1.1.1.2:443/TCP", connect, fromIP, fwd},
			},
		},
		{
			name: "host network is host/<node>",
			flows: func() []*flowpb.Flow {
				f := podFlow(t0, "151.101.2.132", 80)
				f.NodeName = "k8s-node-2"
				f.Source = &flowpb.Endpoint{Identity: 1, Labels: []string{"reserved:host"}}
				g := podFlow(t0, "151.101.2.133", 80)
				g.NodeName = "homelab/k8s-node-3" // Cilium's form outside the "default" cluster
				g.Source = &flowpb.Endpoint{Identity: 1, Labels: []string{"reserved:host"}}
				return []*flowpb.Flow{f, g}
			},
			want: []wantObs{
				{"default:host/k8s-node-2", "", "151.101.2.132:80/TCP", connect, fromIP, fwd},
				{"homelab:host/k8s-node-3", "", "151.101.2.133:80/TCP", connect, fromIP, fwd},
			},
		},
		{
			name: "name from the pod's DNS answer, CNAME chain resolves to the asked name",
			flows: func() []*flowpb.Flow {
				a := dnsAnswer(t0, "api.thetvdb.com.", 30, "104.18.1.1", "104.18.1.2")
				a.L7.GetDns().Cnames = []string{"thetvdb.b-cdn.net."}
				return []*flowpb.Flow{a, podFlow(t0.Add(time.Second), "104.18.1.2", 443)}
			},
			want: []wantObs{{recyclarr, pod, "api.thetvdb.com:443/TCP", connect, fromDNS, fwd}},
		},
		{
			name: "a DNS answer is honoured for at least the minimum TTL, not after",
			flows: func() []*flowpb.Flow {
				return []*flowpb.Flow{
					dnsAnswer(t0, "raw.githubusercontent.com.", 60, "185.199.108.133"),
					podFlow(t0.Add(59*time.Minute), "185.199.108.133", 443),
					podFlow(t0.Add(61*time.Minute), "185.199.108.133", 443),
				}
			},
			want: []wantObs{
				{recyclarr, pod, "raw.githubusercontent.com:443/TCP", connect, fromDNS, fwd},
				{recyclarr, pod, "185.199.108.133:443/TCP", connect, fromIP, fwd},
			},
		},
		{
			name: "another pod's DNS answer does not name this pod's address",
			flows: func() []*flowpb.Flow {
				a := dnsAnswer(t0, "raw.githubusercontent.com.", 60, "185.199.108.133")
				a.Destination.PodName = "someone-else"
				return []*flowpb.Flow{a, podFlow(t0.Add(time.Second), "185.199.108.133", 443)}
			},
			want: []wantObs{{recyclarr, pod, "185.199.108.133:443/TCP", connect, fromIP, fwd}},
		},
		{
			name: "cluster-local answers and questions are ignored",
			flows: func() []*flowpb.Flow {
				return []*flowpb.Flow{
					dnsAnswer(t0, "sonarr.media.svc.cluster.local.", 30, "34.1.1.1"),
					podFlow(t0.Add(time.Second), "34.1.1.1", 443),
					dnsQuestion(t0, "sonarr.media.svc.cluster.local."),
				}
			},
			want: []wantObs{{recyclarr, pod, "34.1.1.1:443/TCP", connect, fromIP, fwd}},
		},
		{
			name:  "a DNS question is a dns_query observation, not a destination",
			flows: func() []*flowpb.Flow { return []*flowpb.Flow{dnsQuestion(t0, "Example.COM.")} },
			want:  []wantObs{{"default:media/recyclarr", pod, "example.com:53/UDP", egressd.KindDNSQuery, fromFlw, fwd}},
		},
		{
			name: "policy-dropped attempts are kept with their verdict",
			flows: func() []*flowpb.Flow {
				f := podFlow(t0, "203.0.113.50", 25)
				f.Verdict = flowpb.Verdict_DROPPED
				f.EventType = &flowpb.CiliumEventType{Type: 1, SubType: 133}
				return []*flowpb.Flow{f}
			},
			want: []wantObs{{recyclarr, pod, "203.0.113.50:25/TCP", connect, fromIP, egressd.VerdictDropped}},
		},
		{
			name: "a flow delivered twice counts once",
			flows: func() []*flowpb.Flow {
				f := podFlow(t0, "1.1.1.1", 443)
				return []*flowpb.Flow{f, f, podFlow(t0.Add(time.Second), "1.1.1.1", 443)}
			},
			want: []wantObs{
				{recyclarr, pod, "1.1.1.1:443/TCP", connect, fromIP, fwd},
				{recyclarr, pod, "1.1.1.1:443/TCP", connect, fromIP, fwd},
			},
		},
		{
			name: "ICMP has no port",
			flows: func() []*flowpb.Flow {
				f := podFlow(t0, "1.1.1.1", 0)
				f.L4 = &flowpb.Layer4{Protocol: &flowpb.Layer4_ICMPv4{ICMPv4: &flowpb.ICMPv4{Type: 8}}}
				return []*flowpb.Flow{f}
			},
			want: []wantObs{{recyclarr, pod, "1.1.1.1:0/ICMPv4", connect, fromIP, fwd}},
		},
		{
			name: "hostile names never become apps or destinations",
			flows: func() []*flowpb.Flow {
				a := podFlow(t0, "1.1.1.1", 443)
				a.Source.Namespace = "../../etc"
				b := podFlow(t0, "1.1.1.2", 443)
				b.Source.Workloads = []*flowpb.Workload{{Name: "../x"}}
				b.Source.Labels = []string{"k8s:app=" + string(make([]byte, 5000))}
				b.Source.PodName = "evil-\x00pod"
				c := podFlow(t0, "1.1.1.3", 443)
				c.DestinationNames = []string{"bad name\n.example.com"}
				d := podFlow(t0, "not-an-ip", 443)
				return []*flowpb.Flow{a, b, c, d}
			},
			want: []wantObs{{recyclarr, pod, "1.1.1.3:443/TCP", connect, fromIP, fwd}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sink := &captureSink{}
			p, _ := newPipeline(t, sink)
			handleAll(t, p, tt.flows()...)
			if diff := cmp.Diff(tt.want, summarize(sink.obs)); diff != "" {
				t.Errorf("observations (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAttributionMetrics(t *testing.T) {
	t.Parallel()
	sink := &captureSink{}
	p, m := newPipeline(t, sink)
	f := podFlow(t0, "1.1.1.1", 443)
	reply := podFlow(t0, "1.1.1.2", 443)
	reply.IsReply = wrapperspb.Bool(true)
	bad := podFlow(t0, "1.1.1.3", 443)
	bad.Source.Namespace = "Not_Valid"
	handleAll(t, p, f, f, reply, bad, podFlow(t0, "192.168.1.1", 80))
	for _, r := range syntheticResponses()[4:] {
		b, _ := proto.Marshal(r)
		require.NoError(t, p.Handle("test", b))
	}
	require.Error(t, p.Handle("test", []byte{0xff, 0xff, 0xff}))

	require.Equal(t, 1.0, testutil.ToFloat64(m.Observations.WithLabelValues("connect")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.Skipped.WithLabelValues("duplicate")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.Skipped.WithLabelValues("reply")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.Skipped.WithLabelValues("internal_cidr")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.Unattributed.WithLabelValues("invalid_namespace")))
	require.Equal(t, 7.0, testutil.ToFloat64(m.LostEvents.WithLabelValues("HUBBLE_RING_BUFFER")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.DecodeErrors))
	require.Equal(t, 7.0, testutil.ToFloat64(m.Messages))
	require.Equal(t, t0, sink.cursors["test"])
}

func TestResumeSkipsStoredFlows(t *testing.T) {
	t.Parallel()
	sink := &captureSink{}
	p, m := newPipeline(t, sink)
	p.SkipUntil("test", t0)
	handleAll(t, p, podFlow(t0.Add(-time.Second), "1.1.1.1", 443), podFlow(t0, "1.1.1.1", 443), podFlow(t0.Add(time.Second), "1.1.1.1", 443))
	require.Len(t, sink.obs, 1)
	require.Equal(t, t0.Add(time.Second), sink.obs[0].Time)
	require.Equal(t, 2.0, testutil.ToFloat64(m.Skipped.WithLabelValues("already_stored")))
	require.Equal(t, t0.Add(time.Second), p.Resume("test"))
	require.Equal(t, time.Time{}, p.Resume("other"))
}

func TestStripPodSuffix(t *testing.T) {
	t.Parallel()
	for pod, want := range map[string]string{
		"recyclarr-7d9f8b6c5d-x2k9p":   "recyclarr",     // ReplicaSet
		"restic-backup-29345760-x7k2p": "restic-backup", // CronJob
		"netcheck-x8k2l":               "netcheck",      // DaemonSet
		"prometheus-0":                 "prometheus",    // StatefulSet
		"reviews-v1-545db77b95-s6jb8":  "reviews-v1",
		"nginx-proxy":                  "nginx-proxy", // a word, not a suffix
		"standalone":                   "standalone",
		"a-":                           "a-",
	} {
		require.Equal(t, want, collector.StripPodSuffix(pod), pod)
	}
}
