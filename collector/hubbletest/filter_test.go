package hubbletest_test

import (
	"testing"
	"unicode/utf8"

	"github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"github.com/egressd/egressd/collector/hubbletest"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// filterFlows are the flows of the filter table, in the order added. Each
// uuid names what the flow is.
func filterFlows() []*flow.Flow {
	recyclarr := hubbletest.PodEndpoint("media", "recyclarr-7d9c5b-x2k4p", "10.0.1.5", "k8s:app=recyclarr", "k8s:app.kubernetes.io/name=recyclarr")
	recyclarr.Identity = 12345
	recyclarr.Workload = "recyclarr"
	sonarr := hubbletest.PodEndpoint("media", "sonarr-0", "10.0.1.6", "k8s:app=sonarr")
	sonarr.Identity = 23456
	coredns := hubbletest.PodEndpoint("kube-system", "coredns-5d78c9869d-abcde", "10.0.0.10", "k8s:k8s-app=kube-dns")
	coredns.Identity = 102
	coredns.Port = 53
	web := hubbletest.PodEndpoint("default", "web-1", "10.0.2.7", "k8s:app=web")
	web.Identity = 34567
	web.Port = 80

	legacy := hubbletest.NewFlow(hubbletest.FlowSpec{
		Time: at(5), Node: "default/kind-worker", UUID: "legacy-reply",
		Src: hubbletest.WorldEndpoint("93.184.216.34", 443), Dst: recyclarr,
		Direction: flow.TrafficDirection_INGRESS,
	})
	// An agent older than is_reply (Cilium 1.10) only set the deprecated
	// reply field.
	legacy.IsReply, legacy.Reply = nil, true

	// A CIDR identity as current Cilium allocates for a toCIDR or toFQDNs
	// destination in a dual-stack cluster: no "reserved:world" label.
	cidrWorld := hubbletest.WorldEndpoint("140.82.112.3", 443, "api.github.com")
	cidrWorld.Identity = 16777217
	cidrWorld.Labels = []string{"cidr:140.82.112.3/32", "reserved:world-ipv4"}
	v6World := hubbletest.WorldEndpoint("2606:4700:4700::1111", 443, "one.one.one.one")
	v6World.Labels = append(v6World.Labels, "cidr:2606-4700-4700--1111/128")

	recyclarr6 := recyclarr
	recyclarr6.IP = "fd00:10::5"

	return []*flow.Flow{
		hubbletest.NewFlow(hubbletest.FlowSpec{
			Time: at(0), Node: "kind-worker", UUID: "egress-world",
			Src: recyclarr, Dst: cidrWorld,
		}),
		hubbletest.NewFlow(hubbletest.FlowSpec{
			Time: at(1), Node: "kind-worker", UUID: "egress-dropped",
			Src: sonarr, Dst: hubbletest.WorldEndpoint("1.1.1.1", 443),
			Verdict: flow.Verdict_DROPPED,
		}),
		hubbletest.NewFlow(hubbletest.FlowSpec{
			Time: at(2), Node: "kind-worker", UUID: "dns-request",
			Src: recyclarr, Dst: coredns, Protocol: "UDP",
			DNS: &flow.DNS{Query: "api.github.com.", Qtypes: []string{"A"}},
		}),
		hubbletest.NewFlow(hubbletest.FlowSpec{
			Time: at(3), Node: "kind-worker", UUID: "dns-response",
			Src: coredns, Dst: recyclarr, Protocol: "UDP", Direction: flow.TrafficDirection_INGRESS, Reply: true,
			DNS:    &flow.DNS{Query: "api.github.com.", Ips: []string{"140.82.112.3"}, Ttl: 60},
			L7Type: flow.L7FlowType_RESPONSE,
		}),
		hubbletest.NewFlow(hubbletest.FlowSpec{
			Time: at(4), Node: "kind-control-plane", UUID: "ingress-http",
			Src: hubbletest.WorldEndpoint("203.0.113.9", 0), Dst: web, Direction: flow.TrafficDirection_INGRESS,
			HTTP: &flow.HTTP{Method: "GET", Url: "http://web/", Protocol: "HTTP/1.1"},
		}),
		legacy,
		hubbletest.NewFlow(hubbletest.FlowSpec{
			Time: at(6), UUID: "egress-ipv6",
			Src: recyclarr6, Dst: v6World,
		}),
	}
}

func TestFilters(t *testing.T) {
	t.Parallel()
	srv, c := startServer(t, hubbletest.Options{})
	for _, f := range filterFlows() {
		srv.Add(hubbletest.Response(f))
	}
	all := []string{"egress-world", "egress-dropped", "dns-request", "dns-response", "ingress-http", "legacy-reply", "egress-ipv6"}
	egress := &flow.FlowFilter{TrafficDirection: []flow.TrafficDirection{flow.TrafficDirection_EGRESS}}
	// Dual-stack clusters label world "reserved:world-ipv4" or
	// "reserved:world-ipv6", without "reserved:world".
	worldLabels := []string{"reserved:world", "reserved:world-ipv4", "reserved:world-ipv6"}

	tests := []struct {
		name      string
		whitelist []*flow.FlowFilter
		blacklist []*flow.FlowFilter
		want      []string
	}{
		{name: "no filters", want: all},
		{name: "empty whitelist filter matches all", whitelist: []*flow.FlowFilter{{}}, want: all},
		{name: "empty blacklist filter blocks all", blacklist: []*flow.FlowFilter{{}}, want: []string{}},
		{name: "traffic direction", whitelist: []*flow.FlowFilter{egress},
			want: []string{"egress-world", "egress-dropped", "dns-request", "egress-ipv6"}},
		{name: "fields of one filter are ANDed", whitelist: []*flow.FlowFilter{{
			TrafficDirection: []flow.TrafficDirection{flow.TrafficDirection_EGRESS},
			DestinationLabel: worldLabels,
		}}, want: []string{"egress-world", "egress-dropped", "egress-ipv6"}},
		{name: "whitelist filters are ORed", whitelist: []*flow.FlowFilter{
			{Verdict: []flow.Verdict{flow.Verdict_DROPPED}},
			{Protocol: []string{"http"}},
		}, want: []string{"egress-dropped", "ingress-http"}},
		{name: "values of one field are ORed", whitelist: []*flow.FlowFilter{{Uuid: []string{"dns-request", "egress-ipv6", "nope"}}},
			want: []string{"dns-request", "egress-ipv6"}},
		{name: "blacklist alone", blacklist: []*flow.FlowFilter{{DestinationLabel: worldLabels}},
			want: []string{"dns-request", "dns-response", "ingress-http", "legacy-reply"}},
		{name: "whitelist and blacklist", whitelist: []*flow.FlowFilter{egress},
			blacklist: []*flow.FlowFilter{{Verdict: []flow.Verdict{flow.Verdict_DROPPED}}, {Protocol: []string{"dns"}}},
			want:      []string{"egress-world", "egress-ipv6"}},

		{name: "source pod namespace", whitelist: []*flow.FlowFilter{{SourcePod: []string{"media/"}}},
			want: []string{"egress-world", "egress-dropped", "dns-request", "egress-ipv6"}},
		{name: "source pod prefix", whitelist: []*flow.FlowFilter{{SourcePod: []string{"media/recyclarr-"}}},
			want: []string{"egress-world", "dns-request", "egress-ipv6"}},
		{name: "pod without namespace means default", whitelist: []*flow.FlowFilter{{DestinationPod: []string{"web"}}},
			want: []string{"ingress-http"}},
		{name: "pod without namespace is not any namespace", whitelist: []*flow.FlowFilter{{SourcePod: []string{"recyclarr"}}},
			want: []string{}},
		{name: "destination pod namespace", whitelist: []*flow.FlowFilter{{DestinationPod: []string{"kube-system/"}}},
			want: []string{"dns-request"}},

		{name: "destination ip exact", whitelist: []*flow.FlowFilter{{DestinationIp: []string{"1.1.1.1"}}},
			want: []string{"egress-dropped"}},
		{name: "destination ip CIDR", whitelist: []*flow.FlowFilter{{DestinationIp: []string{"140.82.112.0/20", "2606:4700::/32"}}},
			want: []string{"egress-world", "egress-ipv6"}},
		{name: "source ip CIDR", whitelist: []*flow.FlowFilter{{SourceIp: []string{"10.0.0.0/24"}}},
			want: []string{"dns-response"}},
		{name: "ip version", whitelist: []*flow.FlowFilter{{IpVersion: []flow.IPVersion{flow.IPVersion_IPv6}}},
			want: []string{"egress-ipv6"}},

		{name: "label without source matches any source", whitelist: []*flow.FlowFilter{{SourceLabel: []string{"app=recyclarr"}}},
			want: []string{"egress-world", "dns-request", "egress-ipv6"}},
		{name: "label with source", whitelist: []*flow.FlowFilter{{SourceLabel: []string{"k8s:app=recyclarr"}}},
			want: []string{"egress-world", "dns-request", "egress-ipv6"}},
		{name: "label with another source", whitelist: []*flow.FlowFilter{{SourceLabel: []string{"container:app=recyclarr"}}},
			want: []string{}},
		{name: "bare label key matches any source but the whole key", whitelist: []*flow.FlowFilter{{DestinationLabel: []string{"world"}}},
			want: []string{"egress-dropped", "egress-ipv6"}},
		{name: "label set", whitelist: []*flow.FlowFilter{{SourceLabel: []string{"k8s:app in (sonarr, web)"}}},
			want: []string{"egress-dropped"}},
		{name: "label requirements are ANDed", whitelist: []*flow.FlowFilter{{SourceLabel: []string{"app=recyclarr,k8s:io.kubernetes.pod.namespace=media"}}},
			want: []string{"egress-world", "dns-request", "egress-ipv6"}},
		{name: "label absent", whitelist: []*flow.FlowFilter{{SourceLabel: []string{"!app"}}},
			want: []string{"dns-response", "ingress-http", "legacy-reply"}},
		{name: "label not equal", whitelist: []*flow.FlowFilter{{SourceLabel: []string{"app!=recyclarr"}}},
			want: []string{"egress-dropped", "dns-response", "ingress-http", "legacy-reply"}},
		{name: "cidr label selector contains the flow's prefix", whitelist: []*flow.FlowFilter{{DestinationLabel: []string{"cidr:140.82.0.0/16"}}},
			want: []string{"egress-world"}},
		{name: "cidr label selector for IPv6", whitelist: []*flow.FlowFilter{{DestinationLabel: []string{"cidr:2606-4700--/32"}}},
			want: []string{"egress-ipv6"}},
		{name: "world-ipv4 is not world", whitelist: []*flow.FlowFilter{{DestinationLabel: []string{"reserved:world-ipv4"}}},
			want: []string{"egress-world"}},
		{name: "label with prefixed key", whitelist: []*flow.FlowFilter{{SourceLabel: []string{"app.kubernetes.io/name=recyclarr"}}},
			want: []string{"egress-world", "dns-request", "egress-ipv6"}},

		{name: "event type", whitelist: []*flow.FlowFilter{{EventType: []*flow.EventTypeFilter{{Type: hubbletest.EventTypeL7}}}},
			want: []string{"dns-request", "dns-response", "ingress-http"}},
		{name: "event type with sub type", whitelist: []*flow.FlowFilter{{EventType: []*flow.EventTypeFilter{
			{Type: hubbletest.EventTypeDrop, MatchSubType: true, SubType: int32(flow.DropReason_POLICY_DENIED)},
		}}}, want: []string{"egress-dropped"}},
		{name: "event type with other sub type", whitelist: []*flow.FlowFilter{{EventType: []*flow.EventTypeFilter{
			{Type: hubbletest.EventTypeDrop, MatchSubType: true, SubType: 1},
		}}}, want: []string{}},
		{name: "verdict", whitelist: []*flow.FlowFilter{{Verdict: []flow.Verdict{flow.Verdict_FORWARDED}}},
			want: []string{"egress-world", "dns-request", "dns-response", "ingress-http", "legacy-reply", "egress-ipv6"}},
		{name: "protocol is case-insensitive", whitelist: []*flow.FlowFilter{{Protocol: []string{"UDP"}}},
			want: []string{"dns-request", "dns-response"}},
		{name: "protocol l7", whitelist: []*flow.FlowFilter{{Protocol: []string{"dns"}}},
			want: []string{"dns-request", "dns-response"}},
		{name: "destination port", whitelist: []*flow.FlowFilter{{DestinationPort: []string{"53", "80"}}},
			want: []string{"dns-request", "ingress-http"}},

		{name: "reply true", whitelist: []*flow.FlowFilter{{Reply: []bool{true}}},
			want: []string{"dns-response", "legacy-reply"}},
		{name: "reply false", whitelist: []*flow.FlowFilter{{Reply: []bool{false}}},
			want: []string{"egress-world", "egress-dropped", "dns-request", "ingress-http", "egress-ipv6"}},

		{name: "node name", whitelist: []*flow.FlowFilter{{NodeName: []string{"kind-control-plane"}}},
			want: []string{"ingress-http"}},
		{name: "node name glob", whitelist: []*flow.FlowFilter{{NodeName: []string{"kind-*"}}},
			want: []string{"egress-world", "egress-dropped", "dns-request", "dns-response", "ingress-http", "legacy-reply"}},
		{name: "node name with cluster", whitelist: []*flow.FlowFilter{{NodeName: []string{"default/kind-worker"}}},
			want: []string{"egress-world", "egress-dropped", "dns-request", "dns-response", "legacy-reply"}},
		{name: "node name in another cluster", whitelist: []*flow.FlowFilter{{NodeName: []string{"prod/kind-worker"}}},
			want: []string{}},

		{name: "destination fqdn", whitelist: []*flow.FlowFilter{{DestinationFqdn: []string{"API.GitHub.com."}}},
			want: []string{"egress-world"}},
		{name: "destination fqdn glob", whitelist: []*flow.FlowFilter{{DestinationFqdn: []string{"*.github.com", "one.*"}}},
			want: []string{"egress-world", "egress-ipv6"}},
		{name: "fqdn must match the whole name", whitelist: []*flow.FlowFilter{{DestinationFqdn: []string{"github.com"}}},
			want: []string{}},
		{name: "source fqdn", whitelist: []*flow.FlowFilter{{SourceFqdn: []string{"api.github.com"}}},
			want: []string{}},
		{name: "dns query is an unanchored regexp", whitelist: []*flow.FlowFilter{{DnsQuery: []string{`github\.com`}}},
			want: []string{"dns-request", "dns-response"}},

		{name: "source identity", whitelist: []*flow.FlowFilter{{SourceIdentity: []uint32{hubbletest.IdentityWorld}}},
			want: []string{"ingress-http", "legacy-reply"}},
		{name: "destination identity", whitelist: []*flow.FlowFilter{{DestinationIdentity: []uint32{102, 34567}}},
			want: []string{"dns-request", "ingress-http"}},
		{name: "source workload", whitelist: []*flow.FlowFilter{{SourceWorkload: []*flow.Workload{{Name: "recyclarr"}}}},
			want: []string{"egress-world", "dns-request", "egress-ipv6"}},
		{name: "workload kind must match when set", whitelist: []*flow.FlowFilter{{SourceWorkload: []*flow.Workload{{Name: "recyclarr", Kind: "StatefulSet"}}}},
			want: []string{}},
		{name: "http method", whitelist: []*flow.FlowFilter{{HttpMethod: []string{"get"}}},
			want: []string{"ingress-http"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := uuids(mustCollect(t, c, &observer.GetFlowsRequest{Whitelist: tt.whitelist, Blacklist: tt.blacklist}))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("flows (-want +got):\n%s", diff)
			}
		})
	}
}

// TestFilters_TCPFlags checks that a tcp_flags filter needs all its flags.
func TestFilters_TCPFlags(t *testing.T) {
	t.Parallel()
	srv, c := startServer(t, hubbletest.Options{})
	synAck := egressFlow(0)
	synAck.Uuid = "syn-ack"
	synAck.GetL4().GetTCP().Flags = &flow.TCPFlags{SYN: true, ACK: true}
	fin := egressFlow(1)
	fin.Uuid = "fin"
	fin.GetL4().GetTCP().Flags = &flow.TCPFlags{FIN: true}
	srv.Add(hubbletest.Responses(synAck, fin)...)

	got := uuids(mustCollect(t, c, &observer.GetFlowsRequest{Whitelist: []*flow.FlowFilter{{
		TcpFlags: []*flow.TCPFlags{{SYN: true}, {FIN: true, ACK: true}},
	}}}))
	if diff := cmp.Diff([]string{"syn-ack"}, got); diff != "" {
		t.Errorf("flows (-want +got):\n%s", diff)
	}
}

// FuzzFilterStrings sends fuzzed label selectors and name patterns: the
// server must answer with the flows or with codes.InvalidArgument, never
// fail otherwise.
func FuzzFilterStrings(f *testing.F) {
	srv := hubbletest.NewServer(hubbletest.Options{})
	addr, err := srv.Start()
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(srv.Stop)
	for _, fl := range filterFlows() {
		srv.Add(hubbletest.Response(fl))
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = conn.Close() })
	c := observer.NewObserverClient(conn)

	f.Add("k8s:app in (a, b),!reserved:world", "*.github.com", "default/kind-*", "media/")
	f.Add("app!=x,k8s:version>2", "api.github.com.", "kind-worker", "web")
	f.Add("", "", "/", "/")
	f.Fuzz(func(t *testing.T, label, fqdn, node, pod string) {
		// proto3 strings must be UTF-8: the client cannot even send others.
		for _, s := range []string{label, fqdn, node, pod} {
			if !utf8.ValidString(s) {
				return
			}
		}
		for _, ff := range []*flow.FlowFilter{
			{SourceLabel: []string{label}},
			{DestinationFqdn: []string{fqdn}},
			{NodeName: []string{node}},
			{SourcePod: []string{pod}},
		} {
			_, err := collect(t, c, &observer.GetFlowsRequest{Whitelist: []*flow.FlowFilter{ff}})
			if err != nil {
				requireCode(t, err, codes.InvalidArgument)
			}
		}
	})
}
