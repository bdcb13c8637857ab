package hubbletest

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"github.com/cilium/cilium/api/v1/relay"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Cilium monitor message types (pkg/monitor/api/types.go) used as
// flow.event_type.type by the flows Hubble emits.
const (
	// EventTypeDrop is the event type of dropped packets.
	EventTypeDrop int32 = 1
	// EventTypeTrace is the event type of forwarded L3/L4 packets.
	EventTypeTrace int32 = 4
	// EventTypePolicyVerdict is the event type of policy verdicts.
	EventTypePolicyVerdict int32 = 5
	// EventTypeL7 is the event type of L7 proxy records (DNS, HTTP).
	EventTypeL7 int32 = 129
)

// Well-known Cilium security identities (pkg/identity/numericidentity.go).
const (
	// IdentityHost is the identity of the local node.
	IdentityHost uint32 = 1
	// IdentityWorld is the identity of addresses outside the cluster.
	IdentityWorld uint32 = 2
)

// Endpoint describes one side of a flow built by NewFlow.
type Endpoint struct {
	// IP is the endpoint's address; it goes to flow.IP.
	IP string
	// Port is the TCP, UDP or SCTP port.
	Port uint32
	// Namespace and Pod name a Kubernetes pod; empty for world or host.
	Namespace, Pod string
	// Identity is the numeric security identity.
	Identity uint32
	// Labels are Cilium labels such as "k8s:app=foo" or "reserved:world".
	Labels []string
	// ClusterName is the Cilium cluster of the endpoint.
	ClusterName string
	// Workload and WorkloadKind name the owning workload (kind
	// "Deployment" when Workload is set and WorkloadKind empty).
	Workload, WorkloadKind string
	// Names are the DNS names of the endpoint, as Cilium fills
	// source_names and destination_names from its DNS proxy cache.
	Names []string
}

// PodEndpoint describes a pod: namespace, name, IP and Cilium labels. The
// namespace label "k8s:io.kubernetes.pod.namespace=<namespace>" is added,
// as Cilium always carries it.
func PodEndpoint(namespace, pod, ip string, labels ...string) Endpoint {
	ls := append([]string{}, labels...)
	ls = append(ls, "k8s:io.kubernetes.pod.namespace="+namespace)
	return Endpoint{IP: ip, Namespace: namespace, Pod: pod, Labels: ls}
}

// WorldEndpoint describes an address outside the cluster: identity 2 and
// label "reserved:world", with the DNS names Cilium knows for it.
func WorldEndpoint(ip string, port uint32, names ...string) Endpoint {
	return Endpoint{IP: ip, Port: port, Identity: IdentityWorld, Labels: []string{"reserved:world"}, Names: names}
}

// FlowSpec describes a flow for NewFlow. Zero fields take the defaults
// documented on each.
type FlowSpec struct {
	// Time of the flow; zero leaves it unset.
	Time time.Time
	// Node is the node name; Cilium writes "cluster/node" with Relay.
	Node string
	// UUID of the flow; empty leaves it unset.
	UUID string
	// Src and Dst are the two sides.
	Src, Dst Endpoint
	// Protocol is "TCP" (default), "UDP", "SCTP", "ICMPv4" or "ICMPv6".
	Protocol string
	// Direction defaults to EGRESS; set TrafficDirection on the returned
	// flow for TRAFFIC_DIRECTION_UNKNOWN.
	Direction flow.TrafficDirection
	// Verdict defaults to FORWARDED. DROPPED flows get event type
	// EventTypeDrop and drop reason POLICY_DENIED.
	Verdict flow.Verdict
	// Reply marks the flow as a reply (is_reply and the deprecated reply).
	Reply bool
	// ICMPType and ICMPCode are the message of an ICMPv4 or ICMPv6 flow. A
	// zero type makes an echo request (8, or 128 for ICMPv6); build the L4
	// layer by hand for an ICMPv4 echo reply (type 0).
	ICMPType, ICMPCode uint32
	// TraceReason is the conntrack state Cilium reports (trace_reason):
	// NEW, ESTABLISHED, REPLY, or RELATED for the ICMP errors that answer
	// a connection. Unset by default.
	TraceReason flow.TraceReason
	// DNS or HTTP, when set, make an L7 flow (event type EventTypeL7) of
	// type L7Type (default REQUEST).
	DNS    *flow.DNS
	HTTP   *flow.HTTP
	L7Type flow.L7FlowType
}

// NewFlow builds a flow shaped like the ones a current Cilium agent emits.
func NewFlow(s FlowSpec) *flow.Flow {
	f := &flow.Flow{
		Uuid:             s.UUID,
		NodeName:         s.Node,
		Verdict:          s.Verdict,
		TrafficDirection: s.Direction,
		Source:           endpoint(s.Src),
		Destination:      endpoint(s.Dst),
		SourceNames:      s.Src.Names,
		DestinationNames: s.Dst.Names,
		IsReply:          wrapperspb.Bool(s.Reply),
		Reply:            s.Reply,
		TraceReason:      s.TraceReason,
		Type:             flow.FlowType_L3_L4,
		EventType:        &flow.CiliumEventType{Type: EventTypeTrace},
	}
	if !s.Time.IsZero() {
		f.Time = timestamppb.New(s.Time)
	}
	if f.Verdict == flow.Verdict_VERDICT_UNKNOWN {
		f.Verdict = flow.Verdict_FORWARDED
	}
	if f.TrafficDirection == flow.TrafficDirection_TRAFFIC_DIRECTION_UNKNOWN {
		f.TrafficDirection = flow.TrafficDirection_EGRESS
	}
	if s.Src.IP != "" || s.Dst.IP != "" {
		f.IP = &flow.IP{Source: s.Src.IP, Destination: s.Dst.IP, IpVersion: ipVersion(s.Src.IP, s.Dst.IP)}
	}
	switch strings.ToUpper(s.Protocol) {
	case "", "TCP":
		f.L4 = &flow.Layer4{Protocol: &flow.Layer4_TCP{TCP: &flow.TCP{SourcePort: s.Src.Port, DestinationPort: s.Dst.Port}}}
	case "UDP":
		f.L4 = &flow.Layer4{Protocol: &flow.Layer4_UDP{UDP: &flow.UDP{SourcePort: s.Src.Port, DestinationPort: s.Dst.Port}}}
	case "SCTP":
		f.L4 = &flow.Layer4{Protocol: &flow.Layer4_SCTP{SCTP: &flow.SCTP{SourcePort: s.Src.Port, DestinationPort: s.Dst.Port}}}
	case "ICMPV4":
		f.L4 = &flow.Layer4{Protocol: &flow.Layer4_ICMPv4{ICMPv4: &flow.ICMPv4{Type: cmp.Or(s.ICMPType, 8), Code: s.ICMPCode}}}
	case "ICMPV6":
		f.L4 = &flow.Layer4{Protocol: &flow.Layer4_ICMPv6{ICMPv6: &flow.ICMPv6{Type: cmp.Or(s.ICMPType, 128), Code: s.ICMPCode}}}
	}
	if f.Verdict == flow.Verdict_DROPPED {
		f.EventType = &flow.CiliumEventType{Type: EventTypeDrop, SubType: int32(flow.DropReason_POLICY_DENIED)}
		f.DropReasonDesc = flow.DropReason_POLICY_DENIED
	}
	if s.DNS != nil || s.HTTP != nil {
		f.Type = flow.FlowType_L7
		f.EventType = &flow.CiliumEventType{Type: EventTypeL7}
		f.L7 = &flow.Layer7{Type: s.L7Type}
		if f.L7.Type == flow.L7FlowType_UNKNOWN_L7_TYPE {
			f.L7.Type = flow.L7FlowType_REQUEST
		}
		if s.DNS != nil {
			f.L7.Record = &flow.Layer7_Dns{Dns: s.DNS}
		} else {
			f.L7.Record = &flow.Layer7_Http{Http: s.HTTP}
		}
	}
	return f
}

func endpoint(e Endpoint) *flow.Endpoint {
	ep := &flow.Endpoint{
		Identity:    e.Identity,
		ClusterName: e.ClusterName,
		Namespace:   e.Namespace,
		PodName:     e.Pod,
		Labels:      e.Labels,
	}
	if e.Workload != "" {
		kind := e.WorkloadKind
		if kind == "" {
			kind = "Deployment"
		}
		ep.Workloads = []*flow.Workload{{Name: e.Workload, Kind: kind}}
	}
	return ep
}

func ipVersion(addrs ...string) flow.IPVersion {
	for _, a := range addrs {
		if ip, err := netip.ParseAddr(a); err == nil {
			if ip.Is4() || ip.Is4In6() {
				return flow.IPVersion_IPv4
			}
			return flow.IPVersion_IPv6
		}
	}
	return flow.IPVersion_IP_NOT_USED
}

// Response wraps f in a GetFlowsResponse with the node name and time taken
// from the flow, as Hubble builds it.
func Response(f *flow.Flow) *observer.GetFlowsResponse {
	return &observer.GetFlowsResponse{
		Time:          f.GetTime(),
		NodeName:      f.GetNodeName(),
		ResponseTypes: &observer.GetFlowsResponse_Flow{Flow: f},
	}
}

// Responses wraps each flow with Response.
func Responses(fs ...*flow.Flow) []*observer.GetFlowsResponse {
	out := make([]*observer.GetFlowsResponse, len(fs))
	for i, f := range fs {
		out[i] = Response(f)
	}
	return out
}

// LostEventsResponse builds a lost_events response reporting n events lost
// at source (PERF_EVENT_RING_BUFFER for the agent's perf buffer,
// OBSERVER_EVENTS_QUEUE, HUBBLE_RING_BUFFER) by node at time at.
func LostEventsResponse(source flow.LostEventSource, n uint64, node string, at time.Time) *observer.GetFlowsResponse {
	ts := timestamppb.New(at)
	return &observer.GetFlowsResponse{
		Time:     ts,
		NodeName: node,
		ResponseTypes: &observer.GetFlowsResponse_LostEvents{LostEvents: &flow.LostEvent{
			Source: source, NumEventsLost: n, First: ts, Last: ts,
		}},
	}
}

// NodeStatusResponse builds the node_status response Hubble Relay sends when
// nodes connect, become unavailable or fail (state NODE_ERROR, with message).
func NodeStatusResponse(state relay.NodeState, message string, at time.Time, nodes ...string) *observer.GetFlowsResponse {
	return &observer.GetFlowsResponse{
		Time: timestamppb.New(at),
		ResponseTypes: &observer.GetFlowsResponse_NodeStatus{NodeStatus: &relay.NodeStatusEvent{
			StateChange: state, NodeNames: nodes, Message: message,
		}},
	}
}

// maxLineBytes bounds one JSON line; real flows are a few kilobytes.
const maxLineBytes = 16 << 20

// LoadJSONLines reads GetFlowsResponse objects, one per line, in the protobuf
// JSON form that `hubble observe -o jsonpb` and the Hubble exporter write
// ({"flow":{...},"node_name":"...","time":"..."}). Unknown fields are
// ignored, so captures from newer Cilium versions load; blank lines are
// skipped. A line that is not such a response is an error naming its line
// number.
func LoadJSONLines(r io.Reader) ([]*observer.GetFlowsResponse, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLineBytes)
	opts := protojson.UnmarshalOptions{DiscardUnknown: true}
	var out []*observer.GetFlowsResponse
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		resp := &observer.GetFlowsResponse{}
		if err := opts.Unmarshal(b, resp); err != nil {
			return nil, fmt.Errorf("line %d: not a Hubble GetFlowsResponse in JSON: %w", line, err)
		}
		if resp.GetResponseTypes() == nil {
			return nil, fmt.Errorf("line %d: no flow, lost_events or node_status: want lines of `hubble observe -o jsonpb`", line)
		}
		out = append(out, resp)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("line %d: longer than %d bytes", line+1, maxLineBytes)
		}
		return nil, fmt.Errorf("line %d: %w", line+1, err)
	}
	return out, nil
}
