package collector

import (
	"github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/protobuf/proto"
)

// Hooks for the black-box tests in collector_test.

// EndpointFields is what the decoder read of a flow.Endpoint.
type EndpointFields struct {
	Identity     uint32
	Namespace    string
	PodName      string
	ClusterName  string
	WorkloadName string
	WorkloadKind string
	World        bool
	Host         bool
	OtherReserve bool
	CIDR         bool
	FQDN         bool
	LabelVals    []string
	NLabels      int
}

// DecodedFields is what the decoder read of a GetFlowsResponse.
type DecodedFields struct {
	Kind          string
	NodeName      string
	TimeSec       int64
	TimeNanos     int64
	HasTime       bool
	FlowTimeSec   int64
	FlowTimeNanos int64
	HasFlowTime   bool
	UUID          string
	Verdict       int32
	IPSource      string
	IPDest        string
	L4            int
	DstPort       uint32
	ICMPType      uint32
	Source        EndpointFields
	Dest          EndpointFields
	FlowType      int32
	FlowNodeName  string
	DestName      string
	NDestNames    int
	L7Type        int32
	HasDNS        bool
	DNSQuery      string
	DNSIPs        []string
	DNSTTL        uint32
	DNSRcode      uint32
	Reply         bool
	IsReplySet    bool
	IsReply       bool
	EventType     int32
	Direction     int32
	LostSource    int32
	LostNum       uint64
}

// Decoder exposes the selective decoder to tests with the label keys they
// choose (FlowDecoder takes them from Options).
type Decoder struct {
	fd   FlowDecoder
	keys int
}

// NewTestDecoder returns a decoder keeping the values of labelKeys.
func NewTestDecoder(labelKeys []string) *Decoder {
	return &Decoder{fd: FlowDecoder{d: newDecoder(labelKeys)}, keys: len(labelKeys)}
}

// DecodeRaw decodes every field attribution may read, endpoints included,
// without converting them: for benchmarks.
func (d *Decoder) DecodeRaw(b []byte) error { return d.fd.Decode(b) }

// Decode decodes b and returns the fields as plain values.
func (d *Decoder) Decode(b []byte) (DecodedFields, error) {
	if err := d.DecodeRaw(b); err != nil {
		return DecodedFields{}, err
	}
	r := &d.fd.r
	f := &r.flow
	out := DecodedFields{
		Kind: [...]string{"none", "flow", "lost_events", "node_status"}[r.kind], NodeName: string(r.nodeName),
		TimeSec: r.timeSec, TimeNanos: r.timeNanos, HasTime: r.hasTime,
	}
	switch r.kind {
	case kindLostEvents:
		out.LostSource, out.LostNum = r.lostSrc, r.lostNum
	case kindFlow:
		out.FlowTimeSec, out.FlowTimeNanos, out.HasFlowTime = f.timeSec, f.timeNanos, f.hasTime
		out.UUID, out.Verdict = string(f.uuid), f.verdict
		out.IPSource, out.IPDest = string(f.ipSource), string(f.ipDest)
		out.L4, out.DstPort, out.ICMPType = f.l4, f.dstPort, f.icmpType
		out.Source, out.Dest = d.endpoint(&f.source), d.endpoint(&f.dest)
		out.FlowType, out.FlowNodeName = f.flowType, string(f.nodeName)
		out.DestName, out.NDestNames = string(f.destName), f.nDestNames
		out.L7Type, out.HasDNS = f.l7Type, f.hasDNS
		if f.hasDNS {
			out.DNSQuery, out.DNSTTL, out.DNSRcode = string(f.dnsQuery), f.dnsTTL, f.dnsRcode
			for i := 0; i < min(f.nDNSIPs, maxDNSIPs); i++ {
				out.DNSIPs = append(out.DNSIPs, string(f.dnsIPs[i]))
			}
		}
		out.Reply, out.IsReplySet, out.IsReply = f.reply, f.isReplySet, f.isReply
		out.EventType, out.Direction = f.eventType, f.direction
	}
	return out, nil
}

func (d *Decoder) endpoint(e *endpoint) EndpointFields {
	out := EndpointFields{
		Identity: e.identity, Namespace: string(e.namespace), PodName: string(e.podName),
		ClusterName: string(e.clusterName), WorkloadName: string(e.workloadName), WorkloadKind: string(e.workloadKind),
		World: e.reserved&resWorld != 0, Host: e.reserved&resHost != 0, OtherReserve: e.reserved&resOtherReserved != 0,
		CIDR: e.reserved&resCIDR != 0, FQDN: e.reserved&resFQDN != 0, NLabels: e.nLabels,
	}
	for i := 0; i < d.keys; i++ {
		if e.labelVals[i] != nil {
			out.LabelVals = append(out.LabelVals, string(e.labelVals[i]))
		} else {
			out.LabelVals = append(out.LabelVals, "<none>")
		}
	}
	return out
}

// StripPodSuffix exposes the pod-name rule.
var StripPodSuffix = stripPodSuffix

// FastJSONLine reads one replay line with the fast JSON path alone and
// returns the message it makes; ok is false when it leaves the line to
// protojson.
func FastJSONLine(line []byte) (msg []byte, ok bool) {
	rp := NewReplayer()
	if rp.fast == nil || !rp.fast.read(line, &rp.rec) {
		return nil, false
	}
	return appendRecord(nil, &rp.rec), true
}

// ProtojsonLine reads one replay line with protojson alone, as the
// Replayer does the lines the fast path leaves to it.
func ProtojsonLine(line []byte) ([]byte, error) {
	msg, err := NewReplayer().parseProtojson(line)
	return append([]byte(nil), msg...), err
}

// ProtojsonResponse reads one replay line with protojson alone and returns
// the whole message, before the collector's fields are picked from it.
func ProtojsonResponse(line []byte) (*observer.GetFlowsResponse, error) {
	rp := NewReplayer()
	if _, err := rp.parseProtojson(line); err != nil {
		return nil, err
	}
	return proto.Clone(&rp.resp).(*observer.GetFlowsResponse), nil
}

// ProtojsonLineAndResponse is ProtojsonLine and ProtojsonResponse of one
// protojson read of line, for tests that check both on many lines.
func ProtojsonLineAndResponse(line []byte) ([]byte, *observer.GetFlowsResponse, error) {
	rp := NewReplayer()
	msg, err := rp.parseProtojson(line)
	if err != nil {
		return nil, nil, err
	}
	// rp is not used again: its response is the caller's.
	return append([]byte(nil), msg...), &rp.resp, nil
}

// FastReader is the fast JSON path on its own, reused from line to line,
// for benchmarks.
type FastReader struct{ rp *Replayer }

// NewFastReader returns a FastReader.
func NewFastReader() *FastReader { return &FastReader{rp: NewReplayer()} }

// Read reads line as the Replayer's fast path does, and encodes it.
func (r *FastReader) Read(line []byte) bool {
	if !r.rp.fast.read(line, &r.rp.rec) {
		return false
	}
	r.rp.buf = appendRecord(r.rp.buf[:0], &r.rp.rec)
	return true
}
