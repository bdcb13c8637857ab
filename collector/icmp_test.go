package collector_test

import (
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/collector/hubbletest"
)

// TestICMPAnswersAreNotDestinations feeds ICMP flows shaped as Cilium emits
// them for a pod: the errors it sends in answer to inbound packets are
// EGRESS flows that are not replies, with trace_reason RELATED, addressed to
// whoever sent the packet. Only the echo requests the pod sends are
// observations.
func TestICMPAnswersAreNotDestinations(t *testing.T) {
	t.Parallel()
	pod := hubbletest.PodEndpoint("media", "recyclarr-7d9f8b6c5d-x2k9p", "10.42.1.17", "k8s:app=recyclarr")
	pod6 := hubbletest.PodEndpoint("media", "recyclarr-7d9f8b6c5d-x2k9p", "fd00:10:42::17", "k8s:app=recyclarr")
	icmp := func(i int, dst hubbletest.Endpoint, src hubbletest.Endpoint, proto string, typ, code uint32, reason flowpb.TraceReason) *flowpb.Flow {
		return hubbletest.NewFlow(hubbletest.FlowSpec{
			Time: t0.Add(time.Duration(i) * time.Second), Node: "k8s-node-1",
			Src: src, Dst: dst, Protocol: proto, ICMPType: typ, ICMPCode: code, TraceReason: reason,
		})
	}
	scanner := hubbletest.WorldEndpoint("198.51.100.7", 0)
	scanner6 := hubbletest.WorldEndpoint("2001:db8::7", 0)
	related := flowpb.TraceReason_RELATED
	flows := []*flowpb.Flow{
		icmp(0, scanner, pod, "ICMPv4", 3, 3, related),                                     // port unreachable
		icmp(1, scanner, pod, "ICMPv4", 3, 13, related),                                    // administratively prohibited
		icmp(2, scanner, pod, "ICMPv4", 11, 0, related),                                    // time exceeded (traceroute through the pod)
		icmp(3, scanner, pod, "ICMPv4", 12, 0, related),                                    // parameter problem
		icmp(4, scanner6, pod6, "ICMPv6", 1, 4, related),                                   // port unreachable
		icmp(5, scanner6, pod6, "ICMPv6", 2, 0, related),                                   // packet too big
		icmp(6, scanner6, pod6, "ICMPv6", 3, 0, related),                                   // time exceeded
		icmp(7, scanner6, pod6, "ICMPv6", 129, 0, flowpb.TraceReason_TRACE_REASON_UNKNOWN), // echo reply, is_reply unknown
		icmp(8, hubbletest.WorldEndpoint("1.1.1.1", 0), pod, "ICMPv4", 8, 0, flowpb.TraceReason_NEW),
		icmp(9, hubbletest.WorldEndpoint("2606:4700:4700::1111", 0), pod6, "ICMPv6", 128, 0, flowpb.TraceReason_NEW),
	}
	// An ICMPv4 echo reply whose reply flag is missing, as drops report it.
	echoReply := icmp(10, scanner, pod, "ICMPv4", 8, 0, flowpb.TraceReason_TRACE_REASON_UNKNOWN)
	echoReply.L4 = &flowpb.Layer4{Protocol: &flowpb.Layer4_ICMPv4{ICMPv4: &flowpb.ICMPv4{Type: 0}}}
	echoReply.IsReply = nil
	flows = append(flows, echoReply)
	for _, f := range flows {
		require.Equal(t, flowpb.TrafficDirection_EGRESS, f.GetTrafficDirection())
		require.False(t, f.GetIsReply().GetValue())
	}

	sink := &captureSink{}
	p, m := newPipeline(t, sink)
	handleAll(t, p, flows...)
	want := []wantObs{
		{"default:media/recyclarr", "recyclarr-7d9f8b6c5d-x2k9p", "1.1.1.1:0/ICMPv4", connect, fromIP, fwd},
		{"default:media/recyclarr", "recyclarr-7d9f8b6c5d-x2k9p", "2606:4700:4700::1111:0/ICMPv6", connect, fromIP, fwd},
	}
	if diff := cmp.Diff(want, summarize(sink.obs)); diff != "" {
		t.Errorf("observations (-want +got):\n%s", diff)
	}
	require.Equal(t, 9.0, testutil.ToFloat64(m.Skipped.WithLabelValues("icmp_answer")))
}
