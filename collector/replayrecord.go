package collector

import (
	"unsafe"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/protobuf/encoding/protowire"
)

// record is what the collector reads of one replayed line: the fields of a
// GetFlowsResponse that the decoder uses (decode.go), plus a flow's source
// port, so that a flow's identity for deduplication (its encoded bytes)
// still tells connections apart when the flow has no uuid. Both ways of
// reading a line, the fast JSON path and protojson, fill a record, and
// appendRecord encodes it as a GetFlowsResponse holding only those fields:
// whatever path a line took, the same flow gives the same bytes. Byte
// slices point into the line or the message they were read from.
type record struct {
	kind     responseKind
	nodeName []byte
	time     timestamp
	lostSrc  int32
	lostNum  uint64
	flow     flowRecord
}

type timestamp struct {
	sec   int64
	nanos int32
	set   bool
}

type flowRecord struct {
	time         timestamp
	uuid         []byte
	verdict      int32
	hasIP        bool
	ipSrc, ipDst []byte
	l4           int // l4TCP...l4SCTP, 0 for another or no protocol
	srcPort      uint32
	dstPort      uint32
	icmpType     uint32 // ICMPv4 or ICMPv6 message type
	src, dst     endpointRecord
	flowType     int32
	nodeName     []byte
	destNames    [][]byte
	hasL7        bool
	l7Type       int32
	hasDNS       bool
	dnsQuery     []byte
	dnsIPs       [][]byte
	dnsTTL       uint32
	dnsRcode     uint32
	reply        bool
	eventType    int32
	direction    int32
	isReplySet   bool
	isReply      bool
}

type endpointRecord struct {
	set          bool
	identity     uint32
	namespace    []byte
	podName      []byte
	clusterName  []byte
	labels       [][]byte
	hasWorkload  bool // the first workload's name and kind
	workloadName []byte
	workloadKind []byte
}

// reset empties r, keeping the storage of its lists unless a hostile line
// made one long: a line may hold up to MaxLineBytes of labels.
func (r *record) reset() {
	f := &r.flow
	destNames, dnsIPs := keep(f.destNames), keep(f.dnsIPs)
	srcLabels, dstLabels := keep(f.src.labels), keep(f.dst.labels)
	*r = record{}
	f.destNames, f.dnsIPs = destNames, dnsIPs
	f.src.labels, f.dst.labels = srcLabels, dstLabels
}

// maxKeptList is the most entries of a record's list whose storage reset
// keeps for the next line; real flows have a few dozen labels at most.
const maxKeptList = 256

func keep(l [][]byte) [][]byte {
	if cap(l) > maxKeptList {
		return nil
	}
	return l[:0]
}

// Field numbers written by appendRecord that decode.go has no constant for.
const (
	portSource   = 1
	wrapperValue = 1
)

// appendRecord appends r encoded as a GetFlowsResponse.
func appendRecord(b []byte, r *record) []byte {
	var start int
	switch r.kind {
	case kindFlow:
		b, start = openMessage(b, respFlow)
		b = appendFlow(b, &r.flow)
		b = closeMessage(b, start)
	case kindNodeStatus:
		b, start = openMessage(b, respNodeStatus)
		b = closeMessage(b, start)
	case kindLostEvents:
		b, start = openMessage(b, respLostEvents)
		b = appendVarintField(b, lostSource, uint64(r.lostSrc))
		b = appendVarintField(b, lostNumEvents, r.lostNum)
		b = closeMessage(b, start)
	}
	b = appendBytesField(b, respNodeName, r.nodeName)
	return appendTimestamp(b, respTime, r.time)
}

func appendFlow(b []byte, f *flowRecord) []byte {
	b = appendTimestamp(b, flowTime, f.time)
	b = appendVarintField(b, flowVerdict, uint64(f.verdict))
	if f.hasIP {
		b = appendStringPair(b, flowIP, ipSource, f.ipSrc, ipDestination, f.ipDst)
	}
	if f.l4 != 0 {
		var l4, proto int
		b, l4 = openMessage(b, flowL4)
		b, proto = openMessage(b, protowire.Number(f.l4))
		if f.l4 == l4ICMPv4 || f.l4 == l4ICMPv6 {
			b = appendVarintField(b, icmpType, uint64(f.icmpType))
		} else {
			b = appendVarintField(b, portSource, uint64(f.srcPort))
			b = appendVarintField(b, portDestination, uint64(f.dstPort))
		}
		b = closeMessage(b, proto)
		b = closeMessage(b, l4)
	}
	b = appendEndpoint(b, flowSource, &f.src)
	b = appendEndpoint(b, flowDestination, &f.dst)
	b = appendVarintField(b, flowType, uint64(f.flowType))
	b = appendBytesField(b, flowNodeName, f.nodeName)
	for _, n := range f.destNames {
		b = appendElement(b, flowDestinationNames, n)
	}
	if f.hasL7 {
		var l7 int
		b, l7 = openMessage(b, flowL7)
		b = appendVarintField(b, l7Type, uint64(f.l7Type))
		if f.hasDNS {
			var dns int
			b, dns = openMessage(b, l7DNS)
			b = appendBytesField(b, dnsQuery, f.dnsQuery)
			for _, ip := range f.dnsIPs {
				b = appendElement(b, dnsIPs, ip)
			}
			b = appendVarintField(b, dnsTTL, uint64(f.dnsTTL))
			b = appendVarintField(b, dnsRcode, uint64(f.dnsRcode))
			b = closeMessage(b, dns)
		}
		b = closeMessage(b, l7)
	}
	if f.reply {
		b = appendVarintField(b, flowReply, 1)
	}
	if f.eventType != 0 {
		var et int
		b, et = openMessage(b, flowEventType)
		b = appendVarintField(b, eventTypeType, uint64(f.eventType))
		b = closeMessage(b, et)
	}
	b = appendVarintField(b, flowTrafficDirection, uint64(f.direction))
	if f.isReplySet {
		var w int
		b, w = openMessage(b, flowIsReply)
		if f.isReply {
			b = appendVarintField(b, wrapperValue, 1)
		}
		b = closeMessage(b, w)
	}
	return appendBytesField(b, flowUUID, f.uuid)
}

func appendEndpoint(b []byte, num protowire.Number, e *endpointRecord) []byte {
	if !e.set {
		return b
	}
	b, start := openMessage(b, num)
	b = appendVarintField(b, epIdentity, uint64(e.identity))
	b = appendBytesField(b, epNamespace, e.namespace)
	for _, l := range e.labels {
		b = appendElement(b, epLabels, l)
	}
	b = appendBytesField(b, epPodName, e.podName)
	if e.hasWorkload {
		b = appendStringPair(b, epWorkloads, workloadName, e.workloadName, workloadKind, e.workloadKind)
	}
	b = appendBytesField(b, epClusterName, e.clusterName)
	return closeMessage(b, start)
}

// appendStringPair appends a message field num holding two string fields.
func appendStringPair(b []byte, num, n1 protowire.Number, v1 []byte, n2 protowire.Number, v2 []byte) []byte {
	b, start := openMessage(b, num)
	b = appendBytesField(b, n1, v1)
	b = appendBytesField(b, n2, v2)
	return closeMessage(b, start)
}

// appendTimestamp appends a Timestamp field when it is set, zero or not:
// the decoder tells a present zero time from an absent one.
func appendTimestamp(b []byte, num protowire.Number, t timestamp) []byte {
	if !t.set {
		return b
	}
	b, start := openMessage(b, num)
	b = appendVarintField(b, timestampSeconds, uint64(t.sec))
	b = appendVarintField(b, timestampNanos, uint64(int64(t.nanos)))
	return closeMessage(b, start)
}

// appendVarintField appends a varint field unless it is zero, as proto3
// does.
func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = appendTag(b, num, protowire.VarintType)
	return appendVarint(b, v)
}

// appendBytesField appends a string field unless it is empty, as proto3
// does.
func appendBytesField(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	return appendElement(b, num, v)
}

// appendElement appends an element of a repeated string field, empty or
// not: the decoder counts them.
func appendElement(b []byte, num protowire.Number, v []byte) []byte {
	b = appendTag(b, num, protowire.BytesType)
	b = appendVarint(b, uint64(len(v)))
	return append(b, v...)
}

// appendTag is protowire.AppendTag, inlined for the one-byte tags of
// fields 1 to 15.
func appendTag(b []byte, num protowire.Number, typ protowire.Type) []byte {
	if num < 16 {
		return append(b, byte(num)<<3|byte(typ))
	}
	return protowire.AppendTag(b, num, typ)
}

// appendVarint is protowire.AppendVarint, inlined for one-byte values.
func appendVarint(b []byte, v uint64) []byte {
	if v < 0x80 {
		return append(b, byte(v))
	}
	return protowire.AppendVarint(b, v)
}

// openMessage appends the tag of a message field and one byte for its
// length, and returns where its content starts; closeMessage writes the
// length once the content is appended.
func openMessage(b []byte, num protowire.Number) ([]byte, int) {
	b = appendTag(b, num, protowire.BytesType)
	b = append(b, 0)
	return b, len(b)
}

// closeMessage writes the length of the message whose content starts at
// start, moving the content when the length takes more than one byte.
func closeMessage(b []byte, start int) []byte {
	n := len(b) - start
	if n < 0x80 {
		b[start-1] = byte(n)
		return b
	}
	extra := protowire.SizeVarint(uint64(n)) - 1
	for range extra {
		b = append(b, 0)
	}
	copy(b[start+extra:], b[start:start+n])
	protowire.AppendVarint(b[:start-1], uint64(n))
	return b
}

// fromResponse fills r from a message protojson decoded: the slow path,
// for lines the fast path does not take.
func (r *record) fromResponse(resp *observer.GetFlowsResponse) {
	r.reset()
	r.nodeName = bytesOf(resp.GetNodeName())
	if t := resp.GetTime(); t != nil {
		r.time = timestamp{sec: t.GetSeconds(), nanos: t.GetNanos(), set: true}
	}
	switch x := resp.GetResponseTypes().(type) {
	case *observer.GetFlowsResponse_NodeStatus:
		r.kind = kindNodeStatus
	case *observer.GetFlowsResponse_LostEvents:
		r.kind = kindLostEvents
		r.lostSrc, r.lostNum = int32(x.LostEvents.GetSource()), x.LostEvents.GetNumEventsLost()
	case *observer.GetFlowsResponse_Flow:
		r.kind = kindFlow
		r.flow.fromFlow(x.Flow)
	}
}

func (f *flowRecord) fromFlow(fl *flowpb.Flow) {
	if t := fl.GetTime(); t != nil {
		f.time = timestamp{sec: t.GetSeconds(), nanos: t.GetNanos(), set: true}
	}
	f.uuid = bytesOf(fl.GetUuid())
	f.verdict = int32(fl.GetVerdict())
	if ip := fl.GetIP(); ip != nil {
		f.hasIP, f.ipSrc, f.ipDst = true, bytesOf(ip.GetSource()), bytesOf(ip.GetDestination())
	}
	switch p := fl.GetL4().GetProtocol().(type) {
	case *flowpb.Layer4_TCP:
		f.l4, f.srcPort, f.dstPort = l4TCP, p.TCP.GetSourcePort(), p.TCP.GetDestinationPort()
	case *flowpb.Layer4_UDP:
		f.l4, f.srcPort, f.dstPort = l4UDP, p.UDP.GetSourcePort(), p.UDP.GetDestinationPort()
	case *flowpb.Layer4_SCTP:
		f.l4, f.srcPort, f.dstPort = l4SCTP, p.SCTP.GetSourcePort(), p.SCTP.GetDestinationPort()
	case *flowpb.Layer4_ICMPv4:
		f.l4, f.icmpType = l4ICMPv4, p.ICMPv4.GetType()
	case *flowpb.Layer4_ICMPv6:
		f.l4, f.icmpType = l4ICMPv6, p.ICMPv6.GetType()
	}
	f.src.fromEndpoint(fl.GetSource())
	f.dst.fromEndpoint(fl.GetDestination())
	f.flowType = int32(fl.GetType())
	f.nodeName = bytesOf(fl.GetNodeName())
	for _, n := range fl.GetDestinationNames() {
		f.destNames = append(f.destNames, bytesOf(n))
	}
	if l7 := fl.GetL7(); l7 != nil {
		f.hasL7, f.l7Type = true, int32(l7.GetType())
		if dns := l7.GetDns(); dns != nil {
			f.hasDNS = true
			f.dnsQuery, f.dnsTTL, f.dnsRcode = bytesOf(dns.GetQuery()), dns.GetTtl(), dns.GetRcode()
			for _, ip := range dns.GetIps() {
				f.dnsIPs = append(f.dnsIPs, bytesOf(ip))
			}
		}
	}
	f.reply = fl.GetReply()
	f.eventType = fl.GetEventType().GetType()
	f.direction = int32(fl.GetTrafficDirection())
	if fl.GetIsReply() != nil {
		f.isReplySet, f.isReply = true, fl.GetIsReply().GetValue()
	}
}

func (e *endpointRecord) fromEndpoint(ep *flowpb.Endpoint) {
	if ep == nil {
		return
	}
	e.set = true
	e.identity = ep.GetIdentity()
	e.namespace, e.podName, e.clusterName = bytesOf(ep.GetNamespace()), bytesOf(ep.GetPodName()), bytesOf(ep.GetClusterName())
	for _, l := range ep.GetLabels() {
		e.labels = append(e.labels, bytesOf(l))
	}
	if w := ep.GetWorkloads(); len(w) > 0 {
		e.hasWorkload = true
		e.workloadName, e.workloadKind = bytesOf(w[0].GetName()), bytesOf(w[0].GetKind())
	}
}

// bytesOf returns s's bytes without copying them: records are only read,
// and only while the message they come from is.
func bytesOf(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
