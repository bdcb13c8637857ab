package collector_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/collector/flowgen"
)

// samplesDir holds real recorded Hubble flows (see its SOURCES.md). CI has
// the folder beside the checkout; it is not part of the repository.
const samplesDir = "../../shared/hubble-samples/cilium-hubble-otel"

var testLabelKeys = []string{"app.kubernetes.io/name", "app", "k8s-app", "io.cilium.k8s.policy.cluster"}

// sampleLine is one line of a recorded sample, and where it is.
type sampleLine struct {
	at   string
	line []byte
}

// loadSampleLines returns every recorded sample line. It is the one helper
// allowed to skip, when the samples folder is absent.
func loadSampleLines(t testing.TB) []sampleLine {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(samplesDir, "*.json"))
	if len(files) == 0 {
		t.Skipf("real Hubble samples not found at %s (they live in shared/hubble-samples beside the checkout); skipping the comparison with recorded flows", samplesDir)
	}
	var out []sampleLine
	for _, name := range files {
		f, err := os.Open(name)
		require.NoError(t, err)
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 8<<20)
		for line := 1; sc.Scan(); line++ {
			out = append(out, sampleLine{at: fmt.Sprintf("%s:%d", name, line), line: bytes.Clone(sc.Bytes())})
		}
		require.NoError(t, sc.Err())
		f.Close()
	}
	return out
}

// loadSamples returns every recorded sample line as an encoded
// GetFlowsResponse (see loadSampleLines).
func loadSamples(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	for _, l := range loadSampleLines(t) {
		var r observer.GetFlowsResponse
		require.NoError(t, protojson.Unmarshal(l.line, &r), l.at)
		b, err := proto.Marshal(&r)
		require.NoError(t, err)
		out = append(out, b)
	}
	return out
}

func expectFields(r *observer.GetFlowsResponse, keys []string) collector.DecodedFields {
	out := collector.DecodedFields{Kind: "none", NodeName: r.GetNodeName()}
	if r.Time != nil {
		out.TimeSec, out.TimeNanos, out.HasTime = r.Time.Seconds, int64(r.Time.Nanos), true
	}
	switch x := r.GetResponseTypes().(type) {
	case *observer.GetFlowsResponse_NodeStatus:
		out.Kind = "node_status"
	case *observer.GetFlowsResponse_LostEvents:
		out.Kind = "lost_events"
		out.LostSource, out.LostNum = int32(x.LostEvents.GetSource()), x.LostEvents.GetNumEventsLost()
	case *observer.GetFlowsResponse_Flow:
		out.Kind = "flow"
		f := x.Flow
		if f.Time != nil {
			out.FlowTimeSec, out.FlowTimeNanos, out.HasFlowTime = f.Time.Seconds, int64(f.Time.Nanos), true
		}
		out.UUID, out.Verdict = f.GetUuid(), int32(f.GetVerdict())
		out.IPSource, out.IPDest = f.GetIP().GetSource(), f.GetIP().GetDestination()
		switch p := f.GetL4().GetProtocol().(type) {
		case *flowpb.Layer4_TCP:
			out.L4, out.DstPort = 1, p.TCP.GetDestinationPort()
		case *flowpb.Layer4_UDP:
			out.L4, out.DstPort = 2, p.UDP.GetDestinationPort()
		case *flowpb.Layer4_ICMPv4:
			out.L4, out.ICMPType = 3, p.ICMPv4.GetType()
		case *flowpb.Layer4_ICMPv6:
			out.L4, out.ICMPType = 4, p.ICMPv6.GetType()
		case *flowpb.Layer4_SCTP:
			out.L4, out.DstPort = 5, p.SCTP.GetDestinationPort()
		case *flowpb.Layer4_VRRP:
			out.L4 = 6
		case *flowpb.Layer4_IGMP:
			out.L4 = 7
		}
		if out.L4 > 5 {
			out.L4 = 0 // not read by the decoder
		}
		out.Source, out.Dest = expectEndpoint(f.GetSource(), keys), expectEndpoint(f.GetDestination(), keys)
		out.FlowType, out.FlowNodeName = int32(f.GetType()), f.GetNodeName()
		if n := f.GetDestinationNames(); len(n) > 0 {
			out.DestName, out.NDestNames = n[0], len(n)
		}
		out.L7Type = int32(f.GetL7().GetType())
		if dns := f.GetL7().GetDns(); dns != nil {
			out.HasDNS = true
			out.DNSQuery, out.DNSTTL, out.DNSRcode = dns.GetQuery(), dns.GetTtl(), dns.GetRcode()
			ips := dns.GetIps()
			if len(ips) > 32 {
				ips = ips[:32]
			}
			out.DNSIPs = ips
		}
		out.Reply = f.GetReply()
		if f.IsReply != nil {
			out.IsReplySet, out.IsReply = true, f.IsReply.GetValue()
		}
		out.EventType, out.Direction = f.GetEventType().GetType(), int32(f.GetTrafficDirection())
	}
	return out
}

func expectEndpoint(e *flowpb.Endpoint, keys []string) collector.EndpointFields {
	out := collector.EndpointFields{
		Identity: e.GetIdentity(), Namespace: e.GetNamespace(), PodName: e.GetPodName(),
		ClusterName: e.GetClusterName(), NLabels: len(e.GetLabels()),
	}
	if w := e.GetWorkloads(); len(w) > 0 {
		out.WorkloadName, out.WorkloadKind = w[0].GetName(), w[0].GetKind()
	}
	vals := make([]string, len(keys))
	for i := range vals {
		vals[i] = "<none>"
	}
	for _, l := range e.GetLabels() {
		switch {
		case l == "reserved:world" || l == "reserved:world-ipv4" || l == "reserved:world-ipv6":
			out.World = true
		case l == "reserved:host":
			out.Host = true
		case strings.HasPrefix(l, "reserved:"):
			out.OtherReserve = true
		case strings.HasPrefix(l, "cidr:"):
			out.CIDR = true
		case strings.HasPrefix(l, "fqdn:"):
			out.FQDN = true
		default:
			for i, k := range keys {
				if vals[i] == "<none>" && strings.HasPrefix(l, "k8s:"+k+"=") {
					vals[i] = strings.TrimPrefix(l, "k8s:"+k+"=")
				}
			}
		}
	}
	out.LabelVals = vals
	return out
}

func TestDecodeAgreesWithProtoOnRecordedFlows(t *testing.T) {
	t.Parallel()
	samples := loadSamples(t)
	require.Greater(t, len(samples), 1000)
	d := collector.NewTestDecoder(testLabelKeys)
	for i, b := range samples {
		var r observer.GetFlowsResponse
		require.NoError(t, proto.Unmarshal(b, &r))
		got, err := d.Decode(b)
		require.NoError(t, err, "sample %d", i)
		if diff := cmp.Diff(expectFields(&r, testLabelKeys), got); diff != "" {
			t.Fatalf("sample %d: decoder disagrees with proto.Unmarshal (-want +got):\n%s", i, diff)
		}
	}
}

func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(samplesDir, "basic-sample-5-*.json"))
	for _, name := range files {
		data, err := os.ReadFile(name)
		require.NoError(f, err)
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var r observer.GetFlowsResponse
			require.NoError(f, protojson.Unmarshal([]byte(line), &r))
			b, _ := proto.Marshal(&r)
			f.Add(b)
		}
	}
	for _, r := range syntheticResponses() {
		b, _ := proto.Marshal(r)
		f.Add(b)
	}
	d := collector.NewTestDecoder(testLabelKeys)
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := d.Decode(b)
		var r observer.GetFlowsResponse
		if perr := proto.Unmarshal(b, &r); perr != nil {
			return // the decoder may accept what it does not read
		}
		require.NoError(t, err, "proto.Unmarshal accepted what the decoder rejected")
		if diff := cmp.Diff(expectFields(&r, testLabelKeys), got); diff != "" {
			t.Fatalf("decoder disagrees with proto.Unmarshal (-want +got):\n%s", diff)
		}
	})
}

// TestDecodeAgreesWithProtoOnGeneratedFlows runs a day of flowgen's home lab
// through one decoder twice: the second pass finds every endpoint in the
// decoder's cache, at other offsets in other messages than where it was
// first decoded.
func TestDecodeAgreesWithProtoOnGeneratedFlows(t *testing.T) {
	t.Parallel()
	resps, err := flowgen.HomeLab(t0, 24*time.Hour).Generate()
	require.NoError(t, err)
	d := collector.NewTestDecoder(testLabelKeys)
	for pass := range 2 {
		for i, r := range resps {
			b, err := proto.Marshal(r)
			require.NoError(t, err)
			got, err := d.Decode(b)
			require.NoError(t, err, "pass %d, message %d", pass, i)
			if diff := cmp.Diff(expectFields(r, testLabelKeys), got); diff != "" {
				t.Fatalf("pass %d, message %d: decoder disagrees with proto.Unmarshal (-want +got):\n%s", pass, i, diff)
			}
		}
	}
}

// Encoding helpers for messages proto.Marshal never writes: fields that
// occur twice, oneof members that replace each other, unusual encodings.
func field(num protowire.Number, msg proto.Message) []byte {
	b, err := proto.Marshal(msg)
	if err != nil {
		panic(err)
	}
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), b)
}

func flowResp(parts ...[]byte) []byte {
	var f []byte
	for _, p := range parts {
		f = append(f, p...)
	}
	return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), f)
}

func marshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

func TestDecodeAgreesWithProtoOnEdgeCases(t *testing.T) {
	t.Parallel()
	base := podFlow(t0, "140.82.112.6", 443)
	world := &flowpb.Endpoint{Identity: 2, Labels: []string{"reserved:world"}}
	pod := base.Source
	var bigLabels []string
	for i := range 40 {
		bigLabels = append(bigLabels, fmt.Sprintf("k8s:io.cilium.k8s.namespace.labels.team-%02d=platform-egress", i))
	}
	big := &flowpb.Endpoint{Identity: 70000, Namespace: "big", PodName: "big-0", Labels: append(bigLabels, "k8s:app=big")}
	tcp := func(port uint32) *flowpb.Layer4 {
		return &flowpb.Layer4{Protocol: &flowpb.Layer4_TCP{TCP: &flowpb.TCP{DestinationPort: port}}}
	}
	dns := func(q string, ips ...string) *flowpb.Layer7 {
		return &flowpb.Layer7{Type: flowpb.L7FlowType_RESPONSE, Record: &flowpb.Layer7_Dns{Dns: &flowpb.DNS{Query: q, Ips: ips, Ttl: 30}}}
	}
	unknowns := protowire.AppendTag(nil, 90, protowire.Fixed32Type)
	unknowns = protowire.AppendFixed32(unknowns, 7)
	unknowns = protowire.AppendTag(unknowns, 91, protowire.Fixed64Type)
	unknowns = protowire.AppendFixed64(unknowns, 7)
	unknowns = protowire.AppendTag(unknowns, 92, protowire.StartGroupType)
	unknowns = protowire.AppendTag(unknowns, 1, protowire.VarintType)
	unknowns = protowire.AppendVarint(unknowns, 300)
	unknowns = protowire.AppendTag(unknowns, 92, protowire.EndGroupType)
	unknowns = protowire.AppendTag(unknowns, 150001, protowire.BytesType)
	unknowns = protowire.AppendBytes(unknowns, make([]byte, 200))
	// Field 8 (source) with its tag, its length and the endpoint's identity
	// in more bytes than they need.
	short := marshal(&flowpb.Endpoint{Namespace: "media", PodName: "p"})
	overlong := append([]byte{0xc2, 0x00, byte(len(short)+5) | 0x80, 0x00, 0x90, 0x00, 0x82, 0x80, 0x00}, short...)

	tests := []struct {
		name string
		msg  []byte
	}{
		{"endpoint twice merges", flowResp(marshal(base), field(8, &flowpb.Endpoint{PodName: "other", Labels: []string{"k8s:app=second", "reserved:host"}}))},
		{"endpoint three times", flowResp(field(8, pod), field(8, world), field(8, &flowpb.Endpoint{Identity: 9, Workloads: []*flowpb.Workload{{Name: "late"}}}))},
		{"same endpoint as source and destination", flowResp(field(8, pod), field(9, pod))},
		{"empty endpoints", flowResp(field(8, &flowpb.Endpoint{}), field(9, &flowpb.Endpoint{}))},
		{"endpoint too long to cache", flowResp(field(8, big), field(9, world))},
		{"endpoint too long to cache, twice", flowResp(field(8, big), field(8, big))},
		{"workload without a name stays first", flowResp(field(8, &flowpb.Endpoint{Workloads: []*flowpb.Workload{{Kind: "Job"}, {Name: "second"}}}))},
		{"labels that almost match", flowResp(field(8, &flowpb.Endpoint{Labels: []string{
			"k8s:apps=x", "k8s:app", "k8s:app=", "k8s:app=first", "k8s:app=second", "k8s:k8s-app=dns", "k8s:k8s-appx=no",
			"reserved:", "reserved:world-ipv4", "reserved:worldly", "reserve", "cidr:", "cidr", "fqdn:", "fqdnx",
			"k8s:io.cilium.k8s.policy.cluster=", "k8s:io.cilium.k8s.policy.clusterx=no", "k8s:", "k8s:=",
		}}))},
		{"l4 oneof replaced", flowResp(field(6, tcp(443)), field(6, &flowpb.Layer4{Protocol: &flowpb.Layer4_ICMPv4{ICMPv4: &flowpb.ICMPv4{Type: 8}}}))},
		{"l4 same member merges", flowResp(field(6, tcp(443)), field(6, &flowpb.Layer4{Protocol: &flowpb.Layer4_TCP{TCP: &flowpb.TCP{SourcePort: 5}}}))},
		{"l4 udp then tcp", flowResp(field(6, &flowpb.Layer4{Protocol: &flowpb.Layer4_UDP{UDP: &flowpb.UDP{DestinationPort: 53}}}), field(6, tcp(80)))},
		{"l7 dns merges", flowResp(field(15, dns("a.example.", "192.0.2.1")), field(15, dns("", "192.0.2.2")))},
		{"l7 dns replaced by http", flowResp(field(15, dns("a.example.", "192.0.2.1")), field(15, &flowpb.Layer7{Record: &flowpb.Layer7_Http{Http: &flowpb.HTTP{Code: 200}}}))},
		{"l7 http replaced by dns", flowResp(field(15, &flowpb.Layer7{Record: &flowpb.Layer7_Http{Http: &flowpb.HTTP{Code: 200}}}), field(15, dns("b.example.")))},
		{"timestamps merge", flowResp(field(1, timestamppb.New(t0)), field(1, &timestamppb.Timestamp{Nanos: 5}))},
		{"is_reply merges", flowResp(field(26, wrapperspb.Bool(true)), field(26, &wrapperspb.BoolValue{}))},
		{"unknown fields of every wire type", flowResp(unknowns, marshal(base), unknowns)},
		{"overlong tag and length", flowResp(overlong)},
		{"response fields around the flow", append(marshal(&observer.GetFlowsResponse{NodeName: "n1", Time: timestamppb.New(t0)}), flowResp(marshal(base))...)},
		{"flow, lost events, flow", append(append(flowResp(marshal(base)), marshal(&observer.GetFlowsResponse{ResponseTypes: &observer.GetFlowsResponse_LostEvents{LostEvents: &flowpb.LostEvent{NumEventsLost: 3}}})...), flowResp(field(9, pod))...)},
		{"lost events, flow, lost events", append(append(marshal(&observer.GetFlowsResponse{ResponseTypes: &observer.GetFlowsResponse_LostEvents{LostEvents: &flowpb.LostEvent{Source: 2, NumEventsLost: 3}}}), flowResp(marshal(base))...), marshal(&observer.GetFlowsResponse{ResponseTypes: &observer.GetFlowsResponse_LostEvents{LostEvents: &flowpb.LostEvent{NumEventsLost: 4}}})...)},
		{"lost events twice merge", append(marshal(&observer.GetFlowsResponse{ResponseTypes: &observer.GetFlowsResponse_LostEvents{LostEvents: &flowpb.LostEvent{Source: 2, NumEventsLost: 3}}}), marshal(&observer.GetFlowsResponse{ResponseTypes: &observer.GetFlowsResponse_LostEvents{LostEvents: &flowpb.LostEvent{NumEventsLost: 4}}})...)},
		{"flow twice merges", append(flowResp(marshal(base)), flowResp(field(9, pod), field(8, world))...)},
		{"lost events then flow", append(marshal(&observer.GetFlowsResponse{ResponseTypes: &observer.GetFlowsResponse_LostEvents{LostEvents: &flowpb.LostEvent{NumEventsLost: 3}}}), flowResp(marshal(base))...)},
	}
	d := collector.NewTestDecoder(testLabelKeys)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r observer.GetFlowsResponse
			require.NoError(t, proto.Unmarshal(tt.msg, &r), "the test's message must be valid")
			want := expectFields(&r, testLabelKeys)
			// Twice: the second time the endpoints come from the cache.
			for range 2 {
				got, err := d.Decode(tt.msg)
				require.NoError(t, err)
				if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("decoder disagrees with proto.Unmarshal (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// TestDecodeDamagedMessages cuts and corrupts a recorded-shape message at
// every byte: the decoder must never panic, and must agree with
// proto.Unmarshal whenever that accepts the result. It is the fuzz target's
// property, checked on every run.
func TestDecodeDamagedMessages(t *testing.T) {
	t.Parallel()
	f := podFlow(t0, "140.82.112.6", 443)
	f.DestinationNames = []string{"api.github.com"}
	f.L7 = &flowpb.Layer7{Type: flowpb.L7FlowType_REQUEST, Record: &flowpb.Layer7_Dns{Dns: &flowpb.DNS{Query: "api.github.com.", Ips: []string{"140.82.112.6"}}}}
	msg := marshal(resp(f))
	d := collector.NewTestDecoder(testLabelKeys)
	check := func(what string, b []byte) {
		got, err := d.Decode(b)
		var r observer.GetFlowsResponse
		if proto.Unmarshal(b, &r) != nil {
			return
		}
		require.NoError(t, err, "%s: proto.Unmarshal accepted what the decoder rejected", what)
		if diff := cmp.Diff(expectFields(&r, testLabelKeys), got); diff != "" {
			t.Fatalf("%s: decoder disagrees with proto.Unmarshal (-want +got):\n%s", what, diff)
		}
	}
	for i := range msg {
		check(fmt.Sprintf("cut at %d", i), msg[:i])
		for _, x := range []byte{0x00, 0x7f, 0x80, 0xff} {
			b := bytes.Clone(msg)
			b[i] = x
			check(fmt.Sprintf("byte %d set to %#x", i, x), b)
		}
	}
}
