package collector

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of the messages the decoder reads, from
// github.com/cilium/cilium/api/v1/observer/observer.proto and
// api/v1/flow/flow.proto. TestDecodeAgreesWithProto checks them against the
// generated code on every recorded flow.
const (
	respFlow       = 1
	respNodeStatus = 2
	respLostEvents = 3
	respNodeName   = 1000
	respTime       = 1001

	flowTime             = 1
	flowVerdict          = 2
	flowIP               = 5
	flowL4               = 6
	flowSource           = 8
	flowDestination      = 9
	flowType             = 10
	flowNodeName         = 11
	flowDestinationNames = 14
	flowL7               = 15
	flowReply            = 16
	flowEventType        = 19
	flowTrafficDirection = 22
	flowIsReply          = 26
	flowUUID             = 34

	ipSource      = 1
	ipDestination = 2

	l4TCP    = 1
	l4UDP    = 2
	l4ICMPv4 = 3
	l4ICMPv6 = 4
	l4SCTP   = 5

	portDestination = 2

	epIdentity    = 2
	epNamespace   = 3
	epLabels      = 4
	epPodName     = 5
	epWorkloads   = 6
	epClusterName = 7

	workloadName = 1
	workloadKind = 2

	l7Type = 1
	l7DNS  = 100

	dnsQuery = 1
	dnsIPs   = 2
	dnsTTL   = 3
	dnsRcode = 6

	lostSource    = 1
	lostNumEvents = 2

	eventTypeType = 1

	timestampSeconds = 1
	timestampNanos   = 2
)

// Values of Hubble enums the collector compares against.
const (
	directionEgress = 2

	l7Request  = 1
	l7Response = 2

	flowTypeL7 = 2
)

// Bounds on repeated fields kept per flow. Values beyond them are counted and
// ignored: a hostile flow cannot make the decoder allocate.
const (
	maxLabelKeys = 8
	maxDNSIPs    = 32
)

// responseKind says which member of GetFlowsResponse's oneof was set.
type responseKind uint8

const (
	kindNone responseKind = iota
	kindFlow
	kindLostEvents
	kindNodeStatus
)

// Reserved-identity labels of interest, as bits of endpoint.reserved.
const (
	resWorld uint32 = 1 << iota
	resHost
	resOtherReserved // any other reserved: label (kube-apiserver, remote-node, health...)
	resCIDR
	resFQDN
)

// endpoint is the part of a flow.Endpoint that attribution reads. Byte slices
// point into the decoded message and are valid until the next decode.
type endpoint struct {
	identity     uint32
	namespace    []byte
	podName      []byte
	clusterName  []byte
	workloadName []byte // the first workload's name
	workloadKind []byte
	reserved     uint32
	// labelVals[i] is the value of the label named by labelKeys[i]
	// (the first occurrence), nil when absent.
	labelVals [maxLabelKeys][]byte
	nLabels   int
}

// decodedFlow is the part of a flow.Flow that attribution reads.
type decodedFlow struct {
	timeSec, timeNanos int64
	hasTime            bool
	uuid               []byte
	verdict            int32
	ipSource, ipDest   []byte
	l4                 int // l4TCP... or 0
	dstPort            uint32
	source, dest       endpoint // valid after decoder.endpoints
	srcRaw, dstRaw     []byte
	srcN, dstN         int
	flowType           int32
	nodeName           []byte
	destName           []byte // the first destination_names entry
	nDestNames         int
	l7Type             int32
	hasDNS             bool
	dnsQuery           []byte
	dnsIPs             [maxDNSIPs][]byte
	nDNSIPs            int // may exceed maxDNSIPs; only the first maxDNSIPs are kept
	dnsTTL             uint32
	dnsRcode           uint32
	reply              bool
	isReplySet         bool
	isReply            bool
	eventType          int32
	direction          int32
	raw                []byte // the encoded Flow message
}

// decodedResponse is the part of an observer.GetFlowsResponse that the
// collector reads.
type decodedResponse struct {
	kind      responseKind
	nodeName  []byte
	timeSec   int64
	timeNanos int64
	hasTime   bool
	flow      decodedFlow
	lostSrc   int32
	lostNum   uint64
}

// decoder reads GetFlowsResponse messages field by field with protowire,
// skipping everything attribution does not need. It allocates nothing: it is
// reused for every message and its results point into the message bytes.
type decoder struct {
	labelKeys  [][]byte // "k8s:app=" style prefixes whose values are kept
	firstBytes [256]bool
}

func newDecoder(labelKeys []string) *decoder {
	d := &decoder{}
	for i, k := range labelKeys {
		if i == maxLabelKeys {
			break
		}
		d.labelKeys = append(d.labelKeys, []byte("k8s:"+k+"="))
		d.firstBytes[("k8s:" + k + "=")[4]] = true
	}
	return d
}

// decode parses b into r, resetting r first.
func (d *decoder) decode(b []byte, r *decodedResponse) error {
	*r = decodedResponse{}
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return fmt.Errorf("GetFlowsResponse: %w", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == respFlow && typ == protowire.BytesType:
			v, n := consumeBytes(b)
			if n < 0 {
				return fmt.Errorf("GetFlowsResponse.flow: %w", protowire.ParseError(n))
			}
			r.kind = kindFlow
			if err := d.decodeFlow(v, &r.flow); err != nil {
				return fmt.Errorf("GetFlowsResponse.flow: %w", err)
			}
			b = b[n:]
			continue
		case num == respLostEvents && typ == protowire.BytesType:
			v, n := consumeBytes(b)
			if n < 0 {
				return fmt.Errorf("GetFlowsResponse.lost_events: %w", protowire.ParseError(n))
			}
			r.kind = kindLostEvents
			if err := decodeLost(v, r); err != nil {
				return fmt.Errorf("GetFlowsResponse.lost_events: %w", err)
			}
			b = b[n:]
			continue
		case num == respNodeStatus && typ == protowire.BytesType:
			r.kind = kindNodeStatus
		case num == respNodeName && typ == protowire.BytesType:
			v, n := consumeBytes(b)
			if n < 0 {
				return fmt.Errorf("GetFlowsResponse.node_name: %w", protowire.ParseError(n))
			}
			r.nodeName = v
			b = b[n:]
			continue
		case num == respTime && typ == protowire.BytesType:
			v, n := consumeBytes(b)
			if n < 0 {
				return fmt.Errorf("GetFlowsResponse.time: %w", protowire.ParseError(n))
			}
			if err := decodeTimestamp(v, &r.timeSec, &r.timeNanos); err != nil {
				return fmt.Errorf("GetFlowsResponse.time: %w", err)
			}
			r.hasTime = true
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return fmt.Errorf("GetFlowsResponse field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return nil
}

func (d *decoder) decodeFlow(b []byte, f *decodedFlow) error {
	f.raw = b
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var (
			v      []byte
			x      uint64
			isLen  = typ == protowire.BytesType
			isVarN = typ == protowire.VarintType
		)
		switch {
		case isLen:
			v, n = consumeBytes(b)
		case isVarN:
			x, n = consumeVarint(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		var err error
		switch {
		case num == flowTime && isLen:
			err = decodeTimestamp(v, &f.timeSec, &f.timeNanos)
			f.hasTime = true
		case num == flowUUID && isLen:
			f.uuid = v
		case num == flowVerdict && isVarN:
			f.verdict = int32(x)
		case num == flowIP && isLen:
			err = decodeIP(v, f)
		case num == flowL4 && isLen:
			err = decodeL4(v, f)
		case num == flowSource && isLen:
			err = d.deferEndpoint(v, &f.srcRaw, &f.srcN, &f.source)
		case num == flowDestination && isLen:
			err = d.deferEndpoint(v, &f.dstRaw, &f.dstN, &f.dest)
		case num == flowType && isVarN:
			f.flowType = int32(x)
		case num == flowNodeName && isLen:
			f.nodeName = v
		case num == flowDestinationNames && isLen:
			if f.nDestNames == 0 {
				f.destName = v
			}
			f.nDestNames++
		case num == flowL7 && isLen:
			err = decodeL7(v, f)
		case num == flowReply && isVarN:
			f.reply = x != 0
		case num == flowEventType && isLen:
			err = decodeEventType(v, &f.eventType)
		case num == flowTrafficDirection && isVarN:
			f.direction = int32(x)
		case num == flowIsReply && isLen:
			f.isReplySet = true
			err = decodeBoolValue(v, &f.isReply)
		}
		if err != nil {
			return fmt.Errorf("field %d: %w", num, err)
		}
	}
	return nil
}

// deferEndpoint keeps an endpoint's bytes for endpoints, which decodes them
// only for flows that get past the cheap checks. An endpoint that occurs
// twice (which proto merges) is decoded at once, both occurrences in order.
func (d *decoder) deferEndpoint(v []byte, raw *[]byte, n *int, e *endpoint) error {
	*n++
	if *n == 1 {
		*raw = v
		return nil
	}
	if *raw != nil {
		if err := d.decodeEndpoint(*raw, e); err != nil {
			return err
		}
		*raw = nil
	}
	return d.decodeEndpoint(v, e)
}

// endpoints decodes the flow's source and destination endpoints, if that
// has not been done yet.
func (d *decoder) endpoints(f *decodedFlow) error {
	if f.srcRaw != nil {
		if err := d.decodeEndpoint(f.srcRaw, &f.source); err != nil {
			return fmt.Errorf("Flow.source: %w", err)
		}
		f.srcRaw = nil
	}
	if f.dstRaw != nil {
		if err := d.decodeEndpoint(f.dstRaw, &f.dest); err != nil {
			return fmt.Errorf("Flow.destination: %w", err)
		}
		f.dstRaw = nil
	}
	return nil
}

func (d *decoder) decodeEndpoint(b []byte, e *endpoint) error {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.VarintType && num == epIdentity {
			x, n := consumeVarint(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			e.identity = uint32(x)
			b = b[n:]
			continue
		}
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := consumeBytes(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		switch num {
		case epNamespace:
			e.namespace = v
		case epPodName:
			e.podName = v
		case epClusterName:
			e.clusterName = v
		case epLabels:
			e.nLabels++
			d.classifyLabel(v, e)
		case epWorkloads:
			if e.workloadName == nil {
				if err := decodeWorkload(v, e); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

var (
	prefixReserved = []byte("reserved:")
	prefixCIDR     = []byte("cidr:")
	prefixFQDN     = []byte("fqdn:")
)

func (d *decoder) classifyLabel(l []byte, e *endpoint) {
	switch {
	case hasPrefix(l, prefixReserved):
		switch string(l[len(prefixReserved):]) {
		case "world", "world-ipv4", "world-ipv6":
			e.reserved |= resWorld
		case "host":
			e.reserved |= resHost
		default:
			e.reserved |= resOtherReserved
		}
	case hasPrefix(l, prefixCIDR):
		e.reserved |= resCIDR
	case hasPrefix(l, prefixFQDN):
		e.reserved |= resFQDN
	case len(l) > 4 && d.firstBytes[l[4]]:
		// Only "k8s:" labels whose key starts like a wanted key are
		// compared in full.
		for i, k := range d.labelKeys {
			if e.labelVals[i] == nil && hasPrefix(l, k) {
				e.labelVals[i] = l[len(k):len(l):len(l)]
			}
		}
	}
}

func hasPrefix(b, p []byte) bool {
	return len(b) >= len(p) && string(b[:len(p)]) == string(p)
}

func decodeWorkload(b []byte, e *endpoint) error {
	var name, kind []byte
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == workloadName || num == workloadKind) {
			v, n := consumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			if num == workloadName {
				name = v
			} else {
				kind = v
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	// A present but empty name still marks "first workload seen", so a
	// later workload never takes its place, as workloads[0] in Go would not.
	if name == nil {
		name = []byte{}
	}
	e.workloadName, e.workloadKind = name, kind
	return nil
}

func decodeIP(b []byte, f *decodedFlow) error {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == ipSource || num == ipDestination) {
			v, n := consumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			if num == ipSource {
				f.ipSource = v
			} else {
				f.ipDest = v
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil
}

func decodeL4(b []byte, f *decodedFlow) error {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.BytesType && num >= l4TCP && num <= l4SCTP {
			v, n := consumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			// Layer4 is a oneof: another member replaces the last one,
			// the same member occurring again merges into it.
			if f.l4 != int(num) {
				f.dstPort = 0
			}
			f.l4 = int(num)
			if num == l4TCP || num == l4UDP || num == l4SCTP {
				if err := mergeUint32Field(v, portDestination, &f.dstPort); err != nil {
					return err
				}
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil
}

func decodeL7(b []byte, f *decodedFlow) error {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == l7Type && typ == protowire.VarintType:
			x, n := consumeVarint(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			f.l7Type = int32(x)
			b = b[n:]
			continue
		case num == l7DNS && typ == protowire.BytesType:
			v, n := consumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			f.hasDNS = true
			if err := decodeDNS(v, f); err != nil {
				return err
			}
			b = b[n:]
			continue
		case typ == protowire.BytesType && num > l7DNS && num < 200:
			// Another member of the oneof (http, kafka) replaces dns.
			f.hasDNS = false
			f.dnsQuery, f.nDNSIPs, f.dnsTTL, f.dnsRcode = nil, 0, 0, 0
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil
}

func decodeDNS(b []byte, f *decodedFlow) error {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case typ == protowire.BytesType && (num == dnsQuery || num == dnsIPs):
			v, n := consumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			if num == dnsQuery {
				f.dnsQuery = v
			} else {
				if f.nDNSIPs < maxDNSIPs {
					f.dnsIPs[f.nDNSIPs] = v
				}
				f.nDNSIPs++
			}
			b = b[n:]
			continue
		case typ == protowire.VarintType && (num == dnsTTL || num == dnsRcode):
			x, n := consumeVarint(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			if num == dnsTTL {
				f.dnsTTL = uint32(x)
			} else {
				f.dnsRcode = uint32(x)
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil
}

func decodeLost(b []byte, r *decodedResponse) error {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.VarintType && (num == lostSource || num == lostNumEvents) {
			x, n := consumeVarint(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			if num == lostSource {
				r.lostSrc = int32(x)
			} else {
				r.lostNum = x
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil
}

// decodeTimestamp merges a Timestamp into sec and nanos, as proto merges a
// message field that occurs twice.
func decodeTimestamp(b []byte, sec, nanos *int64) error {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.VarintType && (num == timestampSeconds || num == timestampNanos) {
			x, n := consumeVarint(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			if num == timestampSeconds {
				*sec = int64(x)
			} else {
				*nanos = int64(int32(x))
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil
}

func decodeEventType(b []byte, t *int32) error {
	x := uint32(*t)
	err := mergeUint32Field(b, eventTypeType, &x)
	*t = int32(x)
	return err
}

func decodeBoolValue(b []byte, v *bool) error {
	var x uint32
	if *v {
		x = 1
	}
	err := mergeUint32Field(b, 1, &x)
	*v = x != 0
	return err
}

// mergeUint32Field sets *out to the last value of varint field want in b,
// leaving it as it was when b does not carry the field (proto merge).
func mergeUint32Field(b []byte, want protowire.Number, out *uint32) error {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.VarintType && num == want {
			x, n := consumeVarint(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			*out = uint32(x)
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil
}

// consumeTag, consumeBytes and consumeVarint are protowire's functions with a
// fast path for the one-byte case, which covers almost every tag, length and
// enum in a flow; anything longer or malformed takes protowire's own path,
// which also produces its errors.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	if len(b) > 0 && b[0] < 0x80 && b[0] >= 8 {
		return protowire.Number(b[0] >> 3), protowire.Type(b[0] & 7), 1
	}
	return protowire.ConsumeTag(b)
}

func consumeBytes(b []byte) ([]byte, int) {
	if len(b) > 0 && b[0] < 0x80 {
		n := int(b[0]) + 1
		if n > len(b) {
			return nil, -1 // protowire's "unexpected EOF"
		}
		return b[1:n:n], n
	}
	return protowire.ConsumeBytes(b)
}

func consumeVarint(b []byte) (uint64, int) {
	if len(b) > 0 && b[0] < 0x80 {
		return uint64(b[0]), 1
	}
	return protowire.ConsumeVarint(b)
}
