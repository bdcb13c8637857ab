package collector

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"

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

	icmpType = 1

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

// decodedFlow is the part of a flow.Flow that attribution reads. Only its
// flowFields are cleared for each message: the endpoints are cleared when
// they are decoded, and dnsIPs beyond nDNSIPs are never read. That spares
// clearing some 1.5 KB per message, most of it for flows that never get as
// far as their endpoints, let alone DNS answers.
type decodedFlow struct {
	flowFields
	source, dest endpoint // valid after decoder.endpoints
	dnsIPs       [maxDNSIPs][]byte
}

type flowFields struct {
	timeSec, timeNanos int64
	hasTime            bool
	uuid               []byte
	verdict            int32
	ipSource, ipDest   []byte
	l4                 int // l4TCP... or 0
	dstPort            uint32
	icmpType           uint32 // the ICMPv4 or ICMPv6 message type
	srcRaw, dstRaw     []byte // the first occurrence of each endpoint
	srcN, dstN         int    // occurrences of each endpoint
	endpointsDone      bool
	flowType           int32
	nodeName           []byte
	destName           []byte // the first destination_names entry
	nDestNames         int
	l7Type             int32
	hasDNS             bool
	dnsQuery           []byte
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
	responseFields
	flow decodedFlow
}

type responseFields struct {
	kind      responseKind
	nodeName  []byte
	timeSec   int64
	timeNanos int64
	hasTime   bool
	lostSrc   int32
	lostNum   uint64
}

// decoder reads GetFlowsResponse messages field by field with protowire,
// skipping everything attribution does not need. It allocates nothing per
// message: it is reused for every message, its results point into the
// message bytes, and its endpoint cache only grows to a bound.
type decoder struct {
	labelKeys [][]byte // "k8s:app=" style prefixes whose values are kept
	// keysByFirst[c] has bit i set when the key of labelKeys[i] starts
	// with c: most labels are then compared with no key at all.
	keysByFirst [256]uint8
	cache       endpointCache
	scratch     endpointFields
}

func newDecoder(labelKeys []string) *decoder {
	d := &decoder{cache: newEndpointCache()}
	for i, k := range labelKeys {
		if i == maxLabelKeys {
			break
		}
		p := "k8s:" + k + "="
		d.labelKeys = append(d.labelKeys, []byte(p))
		d.keysByFirst[p[4]] |= 1 << i
	}
	return d
}

// Wire types, as the low three bits of a tag. The decoders switch on whole
// tags (field number << 3 | wire type): a field that arrives with another
// wire type than the schema's is unknown to proto, and skipped here too.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

// decode parses b into r, resetting r first.
func (d *decoder) decode(b []byte, r *decodedResponse) error {
	r.responseFields = responseFields{}
	r.flow.flowFields = flowFields{}
	for len(b) > 0 {
		tag, _, v, n := consumeField(b)
		if n < 0 {
			return fmt.Errorf("GetFlowsResponse: %w", fieldError(tag, n))
		}
		b = b[n:]
		// The flow, lost events and node status are a oneof: a member
		// replaces another, and merges into an earlier occurrence of
		// itself.
		switch tag {
		case respFlow<<3 | wireBytes:
			if r.kind != kindFlow && r.kind != kindNone {
				r.flow.flowFields = flowFields{}
			}
			r.kind = kindFlow
			if err := d.decodeFlow(v, &r.flow); err != nil {
				return fmt.Errorf("GetFlowsResponse.flow: %w", err)
			}
		case respLostEvents<<3 | wireBytes:
			if r.kind != kindLostEvents {
				r.lostSrc, r.lostNum = 0, 0
			}
			r.kind = kindLostEvents
			if err := decodeLost(v, r); err != nil {
				return fmt.Errorf("GetFlowsResponse.lost_events: %w", err)
			}
		case respNodeStatus<<3 | wireBytes:
			r.kind = kindNodeStatus
		case respNodeName<<3 | wireBytes:
			r.nodeName = v
		case respTime<<3 | wireBytes:
			if err := decodeTimestamp(v, &r.timeSec, &r.timeNanos); err != nil {
				return fmt.Errorf("GetFlowsResponse.time: %w", err)
			}
			r.hasTime = true
		}
	}
	return nil
}

func (d *decoder) decodeFlow(b []byte, f *decodedFlow) error {
	f.raw = b
	for len(b) > 0 {
		tag, x, v, n := consumeField(b)
		if n < 0 {
			return fieldError(tag, n)
		}
		b = b[n:]
		num := tag >> 3
		if num >= uint64(len(flowWire)) || flowWire[num] != uint8(tag&7)+1 {
			continue
		}
		var err error
		switch num {
		case flowTime:
			err = decodeTimestamp(v, &f.timeSec, &f.timeNanos)
			f.hasTime = true
		case flowUUID:
			f.uuid = v
		case flowVerdict:
			f.verdict = int32(x)
		case flowIP:
			err = decodeIP(v, f)
		case flowL4:
			err = decodeL4(v, f)
		case flowSource:
			err = d.deferEndpoint(v, &f.srcRaw, &f.srcN, &f.source)
		case flowDestination:
			err = d.deferEndpoint(v, &f.dstRaw, &f.dstN, &f.dest)
		case flowType:
			f.flowType = int32(x)
		case flowNodeName:
			f.nodeName = v
		case flowDestinationNames:
			if f.nDestNames == 0 {
				f.destName = v
			}
			f.nDestNames++
		case flowL7:
			err = decodeL7(v, f)
		case flowReply:
			f.reply = x != 0
		case flowEventType:
			err = decodeEventType(v, &f.eventType)
		case flowTrafficDirection:
			f.direction = int32(x)
		case flowIsReply:
			f.isReplySet = true
			err = decodeBoolValue(v, &f.isReply)
		}
		if err != nil {
			return fmt.Errorf("field %d: %w", num, err)
		}
	}
	return nil
}

// flowWire[n] is 1 + the wire type of Flow field n when decodeFlow reads it,
// 0 otherwise. Looking fields up here and switching on the field number,
// a dense switch that compiles to a jump table, is quicker than switching
// on whole tags, a chain of comparisons that most fields (which decodeFlow
// skips) go all the way through.
var flowWire = [flowUUID + 1]uint8{
	flowTime: 1 + wireBytes, flowUUID: 1 + wireBytes, flowVerdict: 1 + wireVarint,
	flowIP: 1 + wireBytes, flowL4: 1 + wireBytes, flowSource: 1 + wireBytes,
	flowDestination: 1 + wireBytes, flowType: 1 + wireVarint, flowNodeName: 1 + wireBytes,
	flowDestinationNames: 1 + wireBytes, flowL7: 1 + wireBytes, flowReply: 1 + wireVarint,
	flowEventType: 1 + wireBytes, flowTrafficDirection: 1 + wireVarint, flowIsReply: 1 + wireBytes,
}

// deferEndpoint keeps an endpoint's bytes for endpoints, which decodes them
// only for flows that get past the cheap checks. An endpoint that occurs
// twice (which proto merges) is decoded at once, both occurrences in order.
func (d *decoder) deferEndpoint(v []byte, raw *[]byte, n *int, e *endpoint) error {
	*n++
	switch *n {
	case 1:
		*raw = v
		return nil
	case 2:
		*e = endpoint{}
		if err := d.mergeEndpoint(*raw, e); err != nil {
			return err
		}
	}
	return d.mergeEndpoint(v, e)
}

// endpoints decodes the flow's source and destination endpoints, if that
// has not been done yet.
func (d *decoder) endpoints(f *decodedFlow) error {
	if f.endpointsDone {
		return nil
	}
	if f.srcN < 2 {
		if err := d.endpoint(f.srcRaw, &f.source); err != nil {
			return fmt.Errorf("Flow.source: %w", err)
		}
	}
	if f.dstN < 2 {
		if err := d.endpoint(f.dstRaw, &f.dest); err != nil {
			return fmt.Errorf("Flow.destination: %w", err)
		}
	}
	f.endpointsDone = true
	return nil
}

// endpoint sets e to the endpoint encoded in b, from the cache when b was
// decoded before.
func (d *decoder) endpoint(b []byte, e *endpoint) error {
	*e = endpoint{}
	if len(b) == 0 {
		return nil
	}
	slot, hit := d.cache.lookup(b)
	if hit {
		slot.ef.mergeInto(e, b, len(d.labelKeys))
		return nil
	}
	ef := &d.scratch
	if slot != nil {
		ef = &slot.ef // decoded in place, sparing a copy
	}
	*ef = endpointFields{}
	if err := d.decodeEndpoint(b, ef); err != nil {
		return err
	}
	if slot != nil {
		slot.fill(b)
	}
	ef.mergeInto(e, b, len(d.labelKeys))
	return nil
}

// mergeEndpoint merges the endpoint encoded in b into e, as proto does
// with a message field that occurs twice.
func (d *decoder) mergeEndpoint(b []byte, e *endpoint) error {
	ef := &d.scratch
	*ef = endpointFields{}
	if err := d.decodeEndpoint(b, ef); err != nil {
		return err
	}
	ef.mergeInto(e, b, len(d.labelKeys))
	return nil
}

// span locates a part of an encoded endpoint: n1 is its length plus one,
// and 0 when the part is absent (a nil slice). Offsets are 32-bit, which
// keeps endpointFields, and so the cache, small; decodeEndpoint refuses
// longer endpoints.
type span struct{ off, n1 uint32 }

func spanOf(off int, v []byte) span { return span{uint32(off), uint32(len(v)) + 1} }

const maxEndpointLen = math.MaxUint32 - 1

// in returns the part of b that s locates, or old when s is absent.
func (s span) in(b, old []byte) []byte {
	if s.n1 == 0 {
		return old
	}
	off := int(s.off)
	end := off + int(s.n1) - 1
	return b[off:end:end]
}

// endpointFields is what one encoded Endpoint says, with its byte fields
// as spans of the encoding: it does not depend on where the bytes are, so
// endpointCache can keep it.
type endpointFields struct {
	identity     uint32
	reserved     uint32
	nLabels      uint32
	hasIdentity  bool
	namespace    span
	podName      span
	clusterName  span
	workloadName span // the first workload's
	workloadKind span
	labelVals    [maxLabelKeys]span
}

// mergeInto applies ef, read from b, to e: scalars and strings present in
// ef replace e's, labels and workloads add to e's (of which the first
// occurrence counts).
func (ef *endpointFields) mergeInto(e *endpoint, b []byte, nKeys int) {
	if ef.hasIdentity {
		e.identity = ef.identity
	}
	e.namespace = ef.namespace.in(b, e.namespace)
	e.podName = ef.podName.in(b, e.podName)
	e.clusterName = ef.clusterName.in(b, e.clusterName)
	if e.workloadName == nil && ef.workloadName.n1 != 0 {
		e.workloadName = ef.workloadName.in(b, nil)
		e.workloadKind = ef.workloadKind.in(b, nil)
	}
	e.reserved |= ef.reserved
	e.nLabels += int(ef.nLabels)
	for i := range nKeys {
		if e.labelVals[i] == nil {
			e.labelVals[i] = ef.labelVals[i].in(b, nil)
		}
	}
}

func (d *decoder) decodeEndpoint(b []byte, ef *endpointFields) error {
	if uint64(len(b)) > maxEndpointLen {
		return fmt.Errorf("endpoint of %d bytes: too long", len(b))
	}
	for pos := 0; pos < len(b); {
		tag, x, v, n := consumeField(b[pos:])
		if n < 0 {
			return fieldError(tag, n)
		}
		off := pos + n - len(v) // where v starts in b
		pos += n
		switch tag {
		case epIdentity<<3 | wireVarint:
			ef.identity, ef.hasIdentity = uint32(x), true
		case epNamespace<<3 | wireBytes:
			ef.namespace = spanOf(off, v)
		case epPodName<<3 | wireBytes:
			ef.podName = spanOf(off, v)
		case epClusterName<<3 | wireBytes:
			ef.clusterName = spanOf(off, v)
		case epLabels<<3 | wireBytes:
			ef.nLabels++
			d.classifyLabel(v, off, ef)
		case epWorkloads<<3 | wireBytes:
			if ef.workloadName.n1 == 0 {
				if err := decodeWorkload(v, off, ef); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// The first four bytes of the label prefixes classifyLabel looks for, read
// as a little-endian uint32.
const (
	word4K8s  = 'k' | '8'<<8 | 's'<<16 | ':'<<24
	word4Rese = 'r' | 'e'<<8 | 's'<<16 | 'e'<<24
	word4CIDR = 'c' | 'i'<<8 | 'd'<<16 | 'r'<<24
	word4FQDN = 'f' | 'q'<<8 | 'd'<<16 | 'n'<<24
)

const prefixReserved = "reserved:"

// classifyLabel records what attribution needs of label l, which starts
// at off in the endpoint's encoding. Every prefix it looks for is at least
// five bytes long ("cidr:", "k8s:" and a key byte), and the first four
// bytes tell them apart, so one comparison of a word sorts most labels.
func (d *decoder) classifyLabel(l []byte, off int, ef *endpointFields) {
	if len(l) < 5 {
		return
	}
	switch binary.LittleEndian.Uint32(l) {
	case word4K8s:
		// Only keys that start like the label's key, and whose '=' the
		// label has where it should be, are compared in full.
		for m := d.keysByFirst[l[4]]; m != 0; m &= m - 1 {
			i := bits.TrailingZeros8(m)
			k := d.labelKeys[i]
			if ef.labelVals[i].n1 == 0 && len(l) >= len(k) && l[len(k)-1] == '=' && string(l[:len(k)]) == string(k) {
				ef.labelVals[i] = spanOf(off+len(k), l[len(k):])
			}
		}
	case word4Rese:
		if len(l) < len(prefixReserved) || string(l[:len(prefixReserved)]) != prefixReserved {
			return
		}
		switch string(l[len(prefixReserved):]) {
		case "world", "world-ipv4", "world-ipv6":
			ef.reserved |= resWorld
		case "host":
			ef.reserved |= resHost
		default:
			ef.reserved |= resOtherReserved
		}
	case word4CIDR:
		if l[4] == ':' {
			ef.reserved |= resCIDR
		}
	case word4FQDN:
		if l[4] == ':' {
			ef.reserved |= resFQDN
		}
	}
}

// decodeWorkload reads the workload encoded in b, which starts at off in
// the endpoint's encoding.
func decodeWorkload(b []byte, off int, ef *endpointFields) error {
	// A present but empty name still marks "first workload seen", so a
	// later workload never takes its place, as workloads[0] in Go would not.
	name, kind := span{uint32(off), 1}, span{}
	for pos := 0; pos < len(b); {
		tag, _, v, n := consumeField(b[pos:])
		if n < 0 {
			return fieldError(tag, n)
		}
		at := off + pos + n - len(v)
		pos += n
		switch tag {
		case workloadName<<3 | wireBytes:
			name = spanOf(at, v)
		case workloadKind<<3 | wireBytes:
			kind = spanOf(at, v)
		}
	}
	ef.workloadName, ef.workloadKind = name, kind
	return nil
}

// endpointCache remembers decoded endpoints by their encoding. A flow
// stream names the same few endpoints over and over (the recorded samples:
// 2 to 17 distinct ones in a few hundred flows; the home lab: 40 in a day),
// and comparing an endpoint's bytes costs a fraction of decoding them. A
// stream whose endpoints never repeat pays for it instead, some 15% more
// decoding time (BenchmarkDecode/ratio-uncached). It is direct-mapped: an
// endpoint that lands on a slot in use replaces what was there. Keys are
// copies kept in each slot's own buffer, so the cache allocates only while
// its slots grow to the endpoints they hold, and holds at most
// epCacheSlots*epCacheMaxKey bytes of them.
type endpointCache struct {
	slots []epCacheSlot
}

const (
	epCacheBits   = 8
	epCacheSlots  = 1 << epCacheBits
	epCacheMaxKey = 2048
)

type epCacheSlot struct {
	key  []byte
	full bool // key and ef hold an endpoint
	ef   endpointFields
}

func newEndpointCache() endpointCache {
	return endpointCache{slots: make([]epCacheSlot, epCacheSlots)}
}

// slot picks b's slot from its length and three of its words, not a hash
// of all of it: the words cover the endpoint ID and identity at its start,
// the pod or label names about its middle, and the workload and cluster at
// its end. Endpoints that share a slot only cost a decode each; the key
// comparison keeps the result exact.
func (c *endpointCache) slot(b []byte) *epCacheSlot {
	h := uint64(len(b))
	if n := len(b); n >= 8 {
		h ^= binary.LittleEndian.Uint64(b)
		h ^= bits.RotateLeft64(binary.LittleEndian.Uint64(b[n/2-4:]), 21)
		h ^= bits.RotateLeft64(binary.LittleEndian.Uint64(b[n-8:]), 42)
	}
	h *= 0x9e3779b97f4a7c15 // Fibonacci hashing: the top bits mix every input bit
	return &c.slots[h>>(64-epCacheBits)]
}

// lookup returns b's slot, and whether it holds b's fields. The slot of a
// miss is emptied, for the caller to decode b's fields into and then fill:
// a decoding error leaves it empty. An endpoint too long to cache has no
// slot.
func (c *endpointCache) lookup(b []byte) (*epCacheSlot, bool) {
	if len(b) > epCacheMaxKey {
		return nil, false
	}
	s := c.slot(b)
	if s.full && string(s.key) == string(b) {
		return s, true
	}
	s.full = false
	return s, false
}

// fill records that s holds the fields of b.
func (s *epCacheSlot) fill(b []byte) {
	s.key = append(s.key[:0], b...)
	s.full = true
}

func decodeIP(b []byte, f *decodedFlow) error {
	for len(b) > 0 {
		tag, _, v, n := consumeField(b)
		if n < 0 {
			return fieldError(tag, n)
		}
		b = b[n:]
		switch tag {
		case ipSource<<3 | wireBytes:
			f.ipSource = v
		case ipDestination<<3 | wireBytes:
			f.ipDest = v
		}
	}
	return nil
}

func decodeL4(b []byte, f *decodedFlow) error {
	for len(b) > 0 {
		tag, _, v, n := consumeField(b)
		if n < 0 {
			return fieldError(tag, n)
		}
		b = b[n:]
		num := int(tag >> 3)
		if tag&7 != wireBytes || num < l4TCP || num > l4SCTP {
			continue
		}
		// Layer4 is a oneof: another member replaces the last one, the
		// same member occurring again merges into it.
		if f.l4 != num {
			f.dstPort, f.icmpType = 0, 0
		}
		f.l4 = num
		var err error
		switch num {
		case l4TCP, l4UDP, l4SCTP:
			err = mergeUint32Field(v, portDestination, &f.dstPort)
		case l4ICMPv4, l4ICMPv6:
			err = mergeUint32Field(v, icmpType, &f.icmpType)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func decodeL7(b []byte, f *decodedFlow) error {
	for len(b) > 0 {
		tag, x, v, n := consumeField(b)
		if n < 0 {
			return fieldError(tag, n)
		}
		b = b[n:]
		switch {
		case tag == l7Type<<3|wireVarint:
			f.l7Type = int32(x)
		case tag == l7DNS<<3|wireBytes:
			f.hasDNS = true
			if err := decodeDNS(v, f); err != nil {
				return err
			}
		case tag&7 == wireBytes && tag>>3 > l7DNS && tag>>3 < 200:
			// Another member of the oneof (http, kafka) replaces dns.
			f.hasDNS = false
			f.dnsQuery, f.nDNSIPs, f.dnsTTL, f.dnsRcode = nil, 0, 0, 0
		}
	}
	return nil
}

func decodeDNS(b []byte, f *decodedFlow) error {
	for len(b) > 0 {
		tag, x, v, n := consumeField(b)
		if n < 0 {
			return fieldError(tag, n)
		}
		b = b[n:]
		switch tag {
		case dnsQuery<<3 | wireBytes:
			f.dnsQuery = v
		case dnsIPs<<3 | wireBytes:
			if f.nDNSIPs < maxDNSIPs {
				f.dnsIPs[f.nDNSIPs] = v
			}
			f.nDNSIPs++
		case dnsTTL<<3 | wireVarint:
			f.dnsTTL = uint32(x)
		case dnsRcode<<3 | wireVarint:
			f.dnsRcode = uint32(x)
		}
	}
	return nil
}

func decodeLost(b []byte, r *decodedResponse) error {
	for len(b) > 0 {
		tag, x, _, n := consumeField(b)
		if n < 0 {
			return fieldError(tag, n)
		}
		b = b[n:]
		switch tag {
		case lostSource<<3 | wireVarint:
			r.lostSrc = int32(x)
		case lostNumEvents<<3 | wireVarint:
			r.lostNum = x
		}
	}
	return nil
}

// decodeTimestamp merges a Timestamp into sec and nanos, as proto merges a
// message field that occurs twice.
func decodeTimestamp(b []byte, sec, nanos *int64) error {
	for len(b) > 0 {
		tag, x, _, n := consumeField(b)
		if n < 0 {
			return fieldError(tag, n)
		}
		b = b[n:]
		switch tag {
		case timestampSeconds<<3 | wireVarint:
			*sec = int64(x)
		case timestampNanos<<3 | wireVarint:
			*nanos = int64(int32(x))
		}
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
func mergeUint32Field(b []byte, want uint64, out *uint32) error {
	for len(b) > 0 {
		tag, x, _, n := consumeField(b)
		if n < 0 {
			return fieldError(tag, n)
		}
		b = b[n:]
		if tag == want<<3|wireVarint {
			*out = uint32(x)
		}
	}
	return nil
}

// consumeField reads the field at the front of b. tag is its field number
// and wire type as encoded (number << 3 | type); a varint or fixed-size value
// is returned in x, a length-delimited one in v, which points into b. n is
// the length of the whole field, or a protowire error code (see
// protowire.ParseError), tag then being what was read of it.
//
// One- and two-byte tags, lengths and varints, which cover almost everything
// in a flow, take a fast path. Anything else, malformed input included, goes
// through protowire, which also produces its errors.
func consumeField(b []byte) (tag, x uint64, v []byte, n int) {
	switch {
	case len(b) > 0 && b[0]-8 < 0x80-8: // a one-byte tag, field number > 0
		tag, n = uint64(b[0]), 1
	case len(b) > 1 && b[0] >= 0x80 && b[1] < 0x80 && b[1] > 0:
		tag, n = uint64(b[0]&0x7f)|uint64(b[1])<<7, 2
	default:
		num, typ, m := protowire.ConsumeTag(b)
		if m < 0 {
			return 0, 0, nil, m
		}
		tag, n = uint64(num)<<3|uint64(typ), m
	}
	b = b[n:]
	var m int
	switch tag & 7 {
	case wireBytes:
		var l uint64
		switch {
		case len(b) > 0 && b[0] < 0x80:
			l, m = uint64(b[0]), 1
		case len(b) > 1 && b[1] < 0x80:
			l, m = uint64(b[0]&0x7f)|uint64(b[1])<<7, 2
		default:
			v, m = protowire.ConsumeBytes(b)
			if m < 0 {
				return tag, 0, nil, m
			}
			return tag, 0, v, n + m
		}
		if l > uint64(len(b)-m) {
			_, m = protowire.ConsumeBytes(b) // truncated
			return tag, 0, nil, m
		}
		end := m + int(l)
		return tag, 0, b[m:end:end], n + end
	case wireVarint:
		switch {
		case len(b) > 0 && b[0] < 0x80:
			return tag, uint64(b[0]), nil, n + 1
		case len(b) > 1 && b[1] < 0x80:
			return tag, uint64(b[0]&0x7f) | uint64(b[1])<<7, nil, n + 2
		}
		x, m = protowire.ConsumeVarint(b)
	case wireFixed32:
		var y uint32
		y, m = protowire.ConsumeFixed32(b)
		x = uint64(y)
	case wireFixed64:
		x, m = protowire.ConsumeFixed64(b)
	default:
		m = protowire.ConsumeFieldValue(protowire.Number(tag>>3), protowire.Type(tag&7), b)
	}
	if m < 0 {
		return tag, 0, nil, m
	}
	return tag, x, nil, n + m
}

// fieldError turns consumeField's error code into an error naming the field
// when its tag could be read.
func fieldError(tag uint64, n int) error {
	if tag == 0 {
		return protowire.ParseError(n)
	}
	return fmt.Errorf("field %d: %w", tag>>3, protowire.ParseError(n))
}
