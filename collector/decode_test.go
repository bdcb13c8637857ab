package collector_test

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/egressd/egressd/collector"
)

// samplesDir holds real recorded Hubble flows (see its SOURCES.md). CI has
// the folder beside the checkout; it is not part of the repository.
const samplesDir = "../../shared/hubble-samples/cilium-hubble-otel"

var testLabelKeys = []string{"app.kubernetes.io/name", "app", "k8s-app", "io.cilium.k8s.policy.cluster"}

// loadSamples returns every recorded sample line as an encoded
// GetFlowsResponse. It is the one helper allowed to skip, when the samples
// folder is absent.
func loadSamples(t testing.TB) [][]byte {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(samplesDir, "*.json"))
	if len(files) == 0 {
		t.Skipf("real Hubble samples not found at %s (they live in shared/hubble-samples beside the checkout); skipping the comparison with recorded flows", samplesDir)
	}
	var out [][]byte
	for _, name := range files {
		f, err := os.Open(name)
		require.NoError(t, err)
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 8<<20)
		for line := 1; sc.Scan(); line++ {
			var r observer.GetFlowsResponse
			require.NoError(t, protojson.Unmarshal(sc.Bytes(), &r), "%s:%d", name, line)
			b, err := proto.Marshal(&r)
			require.NoError(t, err)
			out = append(out, b)
		}
		require.NoError(t, sc.Err())
		f.Close()
	}
	return out
}

// expectFields computes from a fully unmarshalled message what the
// selective decoder must report.
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
			out.L4 = 3
		case *flowpb.Layer4_ICMPv6:
			out.L4 = 4
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
