package flowgen

import (
	"fmt"
	"slices"
	"strings"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Cilium monitor event types (pkg/monitor/api/types.go).
const (
	eventDrop          = 1
	eventTrace         = 4
	eventPolicyVerdict = 5
	eventAccessLog     = 129
)

// Values Cilium puts in drop and policy-verdict events.
const (
	dropPolicyDenied = 133 // flow.DropReason_POLICY_DENIED
	matchL3L4        = 2   // policy_match_type: the rule matched identity and port
)

// TCP flags of a packet.
type tcpFlags uint8

const (
	flagSYN tcpFlags = 1 << iota
	flagACK
	flagRST
	flagFIN
	flagPSH
)

func (f tcpFlags) proto() *flowpb.TCPFlags {
	return &flowpb.TCPFlags{
		SYN: f&flagSYN != 0,
		ACK: f&flagACK != 0,
		RST: f&flagRST != 0,
		FIN: f&flagFIN != 0,
		PSH: f&flagPSH != 0,
	}
}

// summary is Hubble's "TCP Flags: ..." text, flags in Hubble's order.
func (f tcpFlags) summary() string {
	var parts []string
	for _, x := range []struct {
		bit  tcpFlags
		name string
	}{{flagSYN, "SYN"}, {flagACK, "ACK"}, {flagRST, "RST"}, {flagFIN, "FIN"}, {flagPSH, "PSH"}} {
		if f&x.bit != 0 {
			parts = append(parts, x.name)
		}
	}
	return "TCP Flags: " + strings.Join(parts, ", ")
}

// pkt is one packet as an agent sees it.
type pkt struct {
	t            time.Time
	obs          *node // the agent reporting it
	src, dst     *endpoint
	sport, dport uint16
	udp          bool
	flags        tcpFlags
	srcNames     []string // source_names: names of src in the DNS cache of dst
	dstNames     []string // destination_names: names of dst in the DNS cache of src
}

// reverse returns the packet going the other way.
func (p pkt) reverse() pkt {
	p.src, p.dst = p.dst, p.src
	p.sport, p.dport = p.dport, p.sport
	p.srcNames, p.dstNames = p.dstNames, p.srcNames
	return p
}

// base fills what every flow of a packet carries.
func (g *generator) base(p pkt, typ flowpb.FlowType) *flowpb.Flow {
	f := &flowpb.Flow{
		Time:    timestamppb.New(p.t),
		Emitter: &flowpb.Emitter{Name: "Hubble", Version: g.s.HubbleVersion},
		Verdict: flowpb.Verdict_FORWARDED,
		IP: &flowpb.IP{
			Source:      p.src.ip.String(),
			Destination: p.dst.ip.String(),
			IpVersion:   flowpb.IPVersion_IPv4,
		},
		Source:           p.src.proto(p.obs),
		Destination:      p.dst.proto(p.obs),
		Type:             typ,
		NodeName:         p.obs.abs,
		NodeLabels:       slices.Clone(p.obs.labels),
		SourceNames:      slices.Clone(p.srcNames),
		DestinationNames: slices.Clone(p.dstNames),
	}
	if p.udp {
		f.L4 = &flowpb.Layer4{Protocol: &flowpb.Layer4_UDP{UDP: &flowpb.UDP{
			SourcePort: uint32(p.sport), DestinationPort: uint32(p.dport),
		}}}
	} else {
		tcp := &flowpb.TCP{SourcePort: uint32(p.sport), DestinationPort: uint32(p.dport)}
		if typ == flowpb.FlowType_L3_L4 {
			tcp.Flags = p.flags.proto()
		}
		f.L4 = &flowpb.Layer4{Protocol: &flowpb.Layer4_TCP{TCP: tcp}}
	}
	if typ == flowpb.FlowType_L3_L4 {
		f.Summary = "UDP"
		if !p.udp {
			f.Summary = p.flags.summary()
		}
	}
	return f
}

// ethernet returns the packet's MAC addresses at an observation point.
func ethernet(p pkt, point flowpb.TraceObservationPoint) *flowpb.Ethernet {
	var src, dst string
	switch {
	case point == flowpb.TraceObservationPoint_TO_NETWORK:
		src, dst = p.obs.mac, p.obs.host.peerMAC
	case point == flowpb.TraceObservationPoint_FROM_NETWORK:
		src, dst = p.obs.host.peerMAC, p.obs.mac
	case point == flowpb.TraceObservationPoint_TO_ENDPOINT || p.src.node != p.obs:
		// Delivered to a local pod: from the host side of its veth.
		src, dst = p.dst.peerMAC, p.dst.mac
	default:
		src, dst = p.src.mac, p.src.peerMAC
	}
	return &flowpb.Ethernet{Source: src, Destination: dst}
}

// trace is a trace event (event type 4) at an observation point. A known
// reason sets is_reply and the direction; at the overlay the datapath
// reports no reason, so Hubble reports neither.
func (g *generator) trace(p pkt, point flowpb.TraceObservationPoint, reason flowpb.TraceReason, dir flowpb.TrafficDirection) *flowpb.Flow {
	f := g.base(p, flowpb.FlowType_L3_L4)
	f.Ethernet = ethernet(p, point)
	sub := int32(point)
	if point == flowpb.TraceObservationPoint_TO_ENDPOINT {
		sub = 0 // TRACE_TO_LXC; Hubble maps the zero sub-type to TO_ENDPOINT
	}
	f.EventType = &flowpb.CiliumEventType{Type: eventTrace, SubType: sub}
	f.TraceObservationPoint = point
	f.TraceReason = reason
	if reason != flowpb.TraceReason_TRACE_REASON_UNKNOWN {
		reply := reason == flowpb.TraceReason_REPLY
		f.IsReply = wrapperspb.Bool(reply)
		f.Reply = reply
		f.TrafficDirection = dir
	}
	switch point {
	case flowpb.TraceObservationPoint_TO_ENDPOINT:
		f.Interface = &flowpb.NetworkInterface{Index: p.dst.ifindex, Name: p.dst.ifname}
	case flowpb.TraceObservationPoint_TO_NETWORK, flowpb.TraceObservationPoint_FROM_NETWORK:
		f.Interface = &flowpb.NetworkInterface{Index: 2, Name: "enp1s0"}
	}
	return f
}

// policyVerdict is a policy-verdict event (event type 5) for the first
// packet of a connection: allowed (FORWARDED, or REDIRECTED to a proxy)
// with the rules that allowed it, or DROPPED by the default deny.
func (g *generator) policyVerdict(p pkt, verdict flowpb.Verdict, dir flowpb.TrafficDirection, rules []*flowpb.Policy) *flowpb.Flow {
	f := g.base(p, flowpb.FlowType_L3_L4)
	point := flowpb.TraceObservationPoint_UNKNOWN_POINT
	if dir == flowpb.TrafficDirection_INGRESS {
		point = flowpb.TraceObservationPoint_TO_ENDPOINT
	}
	f.Ethernet = ethernet(p, point)
	f.Verdict = verdict
	f.EventType = &flowpb.CiliumEventType{Type: eventPolicyVerdict}
	f.TrafficDirection = dir
	f.IsReply = wrapperspb.Bool(false)
	if verdict == flowpb.Verdict_DROPPED {
		f.DropReason = dropPolicyDenied
		f.DropReasonDesc = flowpb.DropReason_POLICY_DENIED
		return f
	}
	f.PolicyMatchType = matchL3L4
	var allowed []*flowpb.Policy
	for _, r := range rules {
		allowed = append(allowed, &flowpb.Policy{
			Name: r.Name, Namespace: r.Namespace, Labels: slices.Clone(r.Labels), Revision: r.Revision, Kind: r.Kind,
		})
	}
	if dir == flowpb.TrafficDirection_INGRESS {
		f.IngressAllowedBy = allowed
	} else {
		f.EgressAllowedBy = allowed
	}
	return f
}

// drop is a drop event (event type 1) for a packet the policy denied. Hubble
// cannot tell whether a dropped packet was a reply: is_reply stays unset.
func (g *generator) drop(p pkt) *flowpb.Flow {
	f := g.base(p, flowpb.FlowType_L3_L4)
	f.Ethernet = ethernet(p, flowpb.TraceObservationPoint_UNKNOWN_POINT)
	f.Verdict = flowpb.Verdict_DROPPED
	f.DropReason = dropPolicyDenied
	f.DropReasonDesc = flowpb.DropReason_POLICY_DENIED
	f.EventType = &flowpb.CiliumEventType{Type: eventDrop, SubType: dropPolicyDenied}
	f.TrafficDirection = flowpb.TrafficDirection_EGRESS
	return f
}

// l7 fills what every proxy access-log flow carries: no Ethernet, no
// observation point, direction from the proxy's point of view.
func (g *generator) l7(p pkt, reply bool) *flowpb.Flow {
	f := g.base(p, flowpb.FlowType_L7)
	f.EventType = &flowpb.CiliumEventType{Type: eventAccessLog}
	f.TrafficDirection = flowpb.TrafficDirection_EGRESS
	f.IsReply = wrapperspb.Bool(reply)
	f.Reply = reply
	return f
}

// dnsQuestion is a DNS question as the proxy logs it.
type dnsQuestion struct {
	name  string // lower-case, with the trailing dot
	qtype string // "A" or "AAAA"
}

// dnsAnswer is a DNS answer as the proxy logs it.
type dnsAnswer struct {
	ips     []string
	cnames  []string // with trailing dots
	ttl     uint32
	rcode   uint32
	rrtypes []string
}

// noTTL is the TTL the proxy logs when the answer has no records
// (NXDOMAIN, or no record of the asked type).
const noTTL = 1<<32 - 1

// dnsRequest is the DNS proxy's access log of a query (L7 REQUEST).
func (g *generator) dnsRequest(p pkt, q dnsQuestion) *flowpb.Flow {
	f := g.l7(p, false)
	f.L7 = &flowpb.Layer7{
		Type: flowpb.L7FlowType_REQUEST,
		Record: &flowpb.Layer7_Dns{Dns: &flowpb.DNS{
			Query: q.name, ObservationSource: "proxy", Qtypes: []string{q.qtype},
		}},
	}
	f.Summary = fmt.Sprintf("DNS Query %s %s", q.name, q.qtype)
	return f
}

// dnsResponse is the DNS proxy's access log of an answer (L7 RESPONSE): from
// the DNS server to the asking pod, reported as EGRESS with is_reply true.
func (g *generator) dnsResponse(p pkt, q dnsQuestion, a dnsAnswer) *flowpb.Flow {
	f := g.l7(p, true)
	f.L7 = &flowpb.Layer7{
		Type: flowpb.L7FlowType_RESPONSE,
		Record: &flowpb.Layer7_Dns{Dns: &flowpb.DNS{
			Query:             q.name,
			Ips:               slices.Clone(a.ips),
			Ttl:               a.ttl,
			Cnames:            slices.Clone(a.cnames),
			ObservationSource: "proxy",
			Rcode:             a.rcode,
			Qtypes:            []string{q.qtype},
			Rrtypes:           slices.Clone(a.rrtypes),
		}},
	}
	var answer string
	if a.rcode != 0 {
		answer = "RCode: " + rcodeName(a.rcode)
	} else {
		var parts []string
		if len(a.ips) > 0 {
			parts = append(parts, fmt.Sprintf("%q", strings.Join(a.ips, ",")))
		}
		if len(a.cnames) > 0 {
			parts = append(parts, fmt.Sprintf("CNAMEs: %q", strings.Join(a.cnames, ",")))
		}
		answer = strings.Join(parts, " ")
	}
	f.Summary = fmt.Sprintf("DNS Answer %s TTL: %d (Proxy %s %s)", answer, a.ttl, q.name, q.qtype)
	return f
}

func rcodeName(rcode uint32) string {
	switch rcode {
	case 2:
		return "Server Failure"
	case 3:
		return "Non-Existent Domain"
	case 5:
		return "Query Refused"
	}
	return fmt.Sprintf("Unknown(%d)", rcode)
}

// httpRequest is the Envoy access log of an HTTP request (L7 REQUEST).
func (g *generator) httpRequest(p pkt, url, userAgent, requestID string) *flowpb.Flow {
	f := g.l7(p, false)
	f.L7 = &flowpb.Layer7{
		Type:   flowpb.L7FlowType_REQUEST,
		Record: &flowpb.Layer7_Http{Http: httpRecord(0, url, userAgent, requestID)},
	}
	f.Summary = "HTTP/1.1 GET " + url
	return f
}

// httpResponse is the Envoy access log of an HTTP response (L7 RESPONSE).
func (g *generator) httpResponse(p pkt, code uint32, latency time.Duration, url, userAgent, requestID string) *flowpb.Flow {
	f := g.l7(p, true)
	f.L7 = &flowpb.Layer7{
		Type:      flowpb.L7FlowType_RESPONSE,
		LatencyNs: uint64(latency),
		Record:    &flowpb.Layer7_Http{Http: httpRecord(code, url, userAgent, requestID)},
	}
	f.Summary = fmt.Sprintf("HTTP/1.1 %d %dms (GET %s)", code, latency/time.Millisecond, url)
	return f
}

func httpRecord(code uint32, url, userAgent, requestID string) *flowpb.HTTP {
	return &flowpb.HTTP{
		Code:     code,
		Method:   "GET",
		Url:      url,
		Protocol: "HTTP/1.1",
		Headers: []*flowpb.HTTPHeader{
			{Key: "Accept", Value: "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"},
			{Key: "Accept-Encoding", Value: "gzip"},
			{Key: "User-Agent", Value: userAgent},
			{Key: "X-Prometheus-Scrape-Timeout-Seconds", Value: "10"},
			{Key: "X-Request-Id", Value: requestID},
		},
	}
}
