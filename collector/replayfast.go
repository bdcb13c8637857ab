package collector

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"
	"unicode/utf8"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"github.com/valyala/fastjson"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The fast JSON path reads a replay line with fastjson instead of protojson,
// and keeps only what the collector reads (a record). It must never accept a
// line that protojson, with DiscardUnknown, would reject or read otherwise,
// so it checks what protojson checks, against the same descriptors: JSON
// syntax and UTF-8, field names (JSON or proto name), duplicate fields, oneofs
// set twice, the type of every known field, enum names and numbers, integer
// ranges, timestamps. Wherever the two could disagree it does not guess: it
// gives the line back, and protojson reads it (fastJSON.read returns false).
// TestFastJSONAgreesWithProtojson and FuzzFastJSONAgreesWithProtojson hold
// it to that.

// maxFastLine bounds the lines the fast path reads. fastjson keeps a parsed
// line as a tree of values that its parser reuses, some 80 bytes per JSON
// value: a 4 MiB line of tiny values would hold hundreds of MiB. Hubble's
// lines are 1-2 KiB; longer ones go to protojson, which streams.
const maxFastLine = 64 << 10

// fieldID names a field the fast path keeps, at the place in the message
// tree where it is kept: an IP's source is kept in a flow's IP, not in a
// tunnel's.
type fieldID uint8

const (
	idNone fieldID = iota
	idRespFlow
	idRespNodeStatus
	idRespLost
	idRespNodeName
	idRespTime
	idFlowTime
	idFlowUUID
	idFlowVerdict
	idFlowIP
	idFlowL4
	idFlowSource
	idFlowDest
	idFlowType
	idFlowNodeName
	idFlowDestNames
	idFlowL7
	idFlowReply
	idFlowEventType
	idFlowDirection
	idFlowIsReply
	idIPSource
	idIPDest
	idL4TCP
	idL4UDP
	idL4ICMPv4
	idL4ICMPv6
	idL4SCTP
	idPortSource
	idPortDest
	idICMPType
	idEpIdentity
	idEpNamespace
	idEpLabels
	idEpPodName
	idEpWorkloads
	idEpCluster
	idWlName
	idWlKind
	idL7Type
	idL7DNS
	idDNSQuery
	idDNSIPs
	idDNSTTL
	idDNSRcode
	idEventTypeType
	idLostSource
	idLostNum
)

// wellKnown is how protojson reads a google.protobuf message field.
type wellKnown uint8

const (
	wktNone      wellKnown = iota
	wktTimestamp           // an RFC 3339 string
	wktBool                // BoolValue: a bare bool
	wktInt32               // Int32Value: a bare int32
	wktOther               // Any, Struct, Duration...: left to protojson
)

// msgSchema is one message at one place in the tree.
type msgSchema struct {
	// fields by JSON name, then by proto name, as protojson looks them up.
	fields map[string]*fieldSchema
	// table holds fields for lookup, which hashes a name from its length
	// and its first and last bytes: quicker than a map for short keys.
	table []schemaSlot
	mask  uint
}

type schemaSlot struct {
	name string
	f    *fieldSchema
}

func nameHash(k []byte) uint {
	return uint(len(k))*0x9e3779b1 ^ uint(k[0])*0x85ebca6b ^ uint(k[len(k)-1])*0xc2b2ae35
}

// index builds s.table from s.fields, with at least four slots per name so
// that probes stay short.
func (s *msgSchema) index() {
	n := 8
	for n < 4*len(s.fields) {
		n *= 2
	}
	s.table, s.mask = make([]schemaSlot, n), uint(n-1)
	for name, f := range s.fields {
		i := nameHash([]byte(name)) & s.mask
		for s.table[i].f != nil {
			i = (i + 1) & s.mask
		}
		s.table[i] = schemaSlot{name: name, f: f}
	}
}

// lookup returns the field named k, or nil.
func (s *msgSchema) lookup(k []byte) *fieldSchema {
	if len(k) == 0 {
		return nil // no field has an empty name
	}
	for i := nameHash(k) & s.mask; ; i = (i + 1) & s.mask {
		e := &s.table[i]
		if e.f == nil || e.name == string(k) {
			return e.f
		}
	}
}

type fieldSchema struct {
	idx   uint // index in the message, for duplicate checks
	kind  protoreflect.Kind
	list  bool
	oneof int // index of the containing oneof, or -1
	wkt   wellKnown
	msg   *msgSchema
	enum  map[string]int32
	id    fieldID
}

// placed says what the fast path keeps of a message's fields: ids by
// proto field name, and the schema of message fields that keep something.
type placed struct {
	ids      map[protoreflect.Name]fieldID
	children map[protoreflect.Name]*msgSchema
}

// schemaBuilder compiles descriptors into msgSchemas; messages that keep
// nothing are compiled once per type.
type schemaBuilder struct {
	plain map[protoreflect.FullName]*msgSchema
	err   error
}

func (b *schemaBuilder) message(md protoreflect.MessageDescriptor, p placed) *msgSchema {
	s := &msgSchema{fields: map[string]*fieldSchema{}}
	if p.ids == nil {
		b.plain[md.FullName()] = s // before the fields: a message may contain itself
	}
	fds := md.Fields()
	for name := range p.ids {
		if fds.ByName(name) == nil {
			b.err = fmt.Errorf("%s has no field %s to keep", md.FullName(), name)
		}
	}
	if fds.Len() > 256 {
		b.err = fmt.Errorf("%s: %d fields, more than the duplicate check holds", md.FullName(), fds.Len())
	}
	for i := range fds.Len() {
		fd := fds.Get(i)
		f := &fieldSchema{idx: uint(i), kind: fd.Kind(), list: fd.IsList(), oneof: -1, id: p.ids[fd.Name()]}
		if od := fd.ContainingOneof(); od != nil {
			f.oneof = od.Index()
			if f.oneof >= 8 {
				b.err = fmt.Errorf("%s: more oneofs than the check holds", md.FullName())
			}
		}
		switch {
		case fd.IsMap():
			f.wkt = wktOther // no map in these messages; were there one, protojson reads it
		case fd.Enum() != nil:
			if fd.Enum().FullName() == "google.protobuf.NullValue" {
				f.wkt = wktOther
			}
			f.enum = map[string]int32{}
			vals := fd.Enum().Values()
			for j := range vals.Len() {
				f.enum[string(vals.Get(j).Name())] = int32(vals.Get(j).Number())
			}
		case fd.Message() != nil:
			mfd := fd.Message()
			switch mfd.FullName() {
			case "google.protobuf.Timestamp":
				f.wkt = wktTimestamp
			case "google.protobuf.BoolValue":
				f.wkt = wktBool
			case "google.protobuf.Int32Value":
				f.wkt = wktInt32
			default:
				if mfd.FullName().Parent() == "google.protobuf" {
					f.wkt = wktOther
					break
				}
				if c := p.children[fd.Name()]; c != nil {
					f.msg = c
				} else if c := b.plain[mfd.FullName()]; c != nil {
					f.msg = c
				} else {
					f.msg = b.message(mfd, placed{})
				}
			}
		}
		if _, ok := s.fields[fd.JSONName()]; !ok {
			s.fields[fd.JSONName()] = f
		}
	}
	// Proto names come second: protojson tries the JSON name first.
	for i := range fds.Len() {
		fd := fds.Get(i)
		if _, ok := s.fields[string(fd.Name())]; !ok {
			s.fields[string(fd.Name())] = s.fields[fd.JSONName()]
		}
	}
	s.index()
	return s
}

// fastSchemas holds the compiled schemas of a GetFlowsResponse line and of
// a legacy line (a bare Flow).
type fastSchemas struct {
	response, flow *msgSchema
}

var compiledSchemas = sync.OnceValues(func() (fastSchemas, error) {
	b := &schemaBuilder{plain: map[protoreflect.FullName]*msgSchema{}}
	desc := func(m interface {
		ProtoReflect() protoreflect.Message
	}) protoreflect.MessageDescriptor {
		return m.ProtoReflect().Descriptor()
	}
	ids := func(kv ...any) map[protoreflect.Name]fieldID {
		m := map[protoreflect.Name]fieldID{}
		for i := 0; i < len(kv); i += 2 {
			m[protoreflect.Name(kv[i].(string))] = kv[i+1].(fieldID)
		}
		return m
	}
	ports := placed{ids: ids("source_port", idPortSource, "destination_port", idPortDest)}
	icmp := placed{ids: ids("type", idICMPType)}
	workload := b.message(desc(&flowpb.Workload{}), placed{ids: ids("name", idWlName, "kind", idWlKind)})
	endpoint := b.message(desc(&flowpb.Endpoint{}), placed{
		ids: ids("identity", idEpIdentity, "namespace", idEpNamespace, "labels", idEpLabels,
			"pod_name", idEpPodName, "workloads", idEpWorkloads, "cluster_name", idEpCluster),
		children: map[protoreflect.Name]*msgSchema{"workloads": workload},
	})
	dns := b.message(desc(&flowpb.DNS{}), placed{ids: ids("query", idDNSQuery, "ips", idDNSIPs, "ttl", idDNSTTL, "rcode", idDNSRcode)})
	flow := b.message(desc(&flowpb.Flow{}), placed{
		ids: ids("time", idFlowTime, "uuid", idFlowUUID, "verdict", idFlowVerdict, "IP", idFlowIP, "l4", idFlowL4,
			"source", idFlowSource, "destination", idFlowDest, "Type", idFlowType, "node_name", idFlowNodeName,
			"destination_names", idFlowDestNames, "l7", idFlowL7, "reply", idFlowReply, "event_type", idFlowEventType,
			"traffic_direction", idFlowDirection, "is_reply", idFlowIsReply),
		children: map[protoreflect.Name]*msgSchema{
			"IP": b.message(desc(&flowpb.IP{}), placed{ids: ids("source", idIPSource, "destination", idIPDest)}),
			"l4": b.message(desc(&flowpb.Layer4{}), placed{
				ids: ids("TCP", idL4TCP, "UDP", idL4UDP, "ICMPv4", idL4ICMPv4, "ICMPv6", idL4ICMPv6, "SCTP", idL4SCTP),
				children: map[protoreflect.Name]*msgSchema{
					"TCP":    b.message(desc(&flowpb.TCP{}), ports),
					"UDP":    b.message(desc(&flowpb.UDP{}), ports),
					"SCTP":   b.message(desc(&flowpb.SCTP{}), ports),
					"ICMPv4": b.message(desc(&flowpb.ICMPv4{}), icmp),
					"ICMPv6": b.message(desc(&flowpb.ICMPv6{}), icmp),
				},
			}),
			"source":      endpoint,
			"destination": endpoint,
			"l7": b.message(desc(&flowpb.Layer7{}), placed{
				ids:      ids("type", idL7Type, "dns", idL7DNS),
				children: map[protoreflect.Name]*msgSchema{"dns": dns},
			}),
			"event_type": b.message(desc(&flowpb.CiliumEventType{}), placed{ids: ids("type", idEventTypeType)}),
		},
	})
	response := b.message(desc(&observer.GetFlowsResponse{}), placed{
		ids: ids("flow", idRespFlow, "node_status", idRespNodeStatus, "lost_events", idRespLost,
			"node_name", idRespNodeName, "time", idRespTime),
		children: map[protoreflect.Name]*msgSchema{
			"flow":        flow,
			"lost_events": b.message(desc(&flowpb.LostEvent{}), placed{ids: ids("source", idLostSource, "num_events_lost", idLostNum)}),
		},
	})
	return fastSchemas{response: response, flow: flow}, b.err
})

// fastJSON reads lines with the fast path. It is not safe for concurrent
// use.
type fastJSON struct {
	schemas fastSchemas
	p       fastjson.Parser
	rec     *record
	ep      *endpointRecord // the endpoint being read
	firstWL bool            // the workload being read is the endpoint's first
	num     []byte
}

func newFastJSON() (*fastJSON, error) {
	s, err := compiledSchemas()
	if err != nil {
		return nil, err
	}
	return &fastJSON{schemas: s}, nil
}

// read fills rec from line, a JSON object, and reports whether it could:
// false leaves the line to protojson, rec then holding anything.
func (w *fastJSON) read(line []byte, rec *record) bool {
	if len(line) > maxFastLine || hasControl(line) || !utf8.Valid(line) {
		return false
	}
	escapes := bytes.IndexByte(line, '\\') >= 0
	if escapes && surrogateEscape(line) {
		return false
	}
	v, err := w.p.ParseBytes(line)
	if err != nil || v.Type() != fastjson.TypeObject {
		return false
	}
	// fastjson's parser checks the structure as strictly as protojson,
	// not what it does not read: escapes, numbers and control characters.
	// The line has none of the last; a number is checked where it is read
	// (w.integer, checkNumbers); escapes, which Hubble hardly ever writes,
	// are left to fastjson's validator. The parse came first, so the
	// validator's recursion is bounded by the parser's depth limit.
	if escapes && fastjson.ValidateBytes(line) != nil {
		return false
	}
	rec.reset()
	w.rec = rec
	if !w.message(v, w.schemas.response) {
		return false
	}
	if rec.kind != kindNone {
		return true
	}
	// A legacy line: protojson reads it again as a bare Flow, which must
	// have a time, an IP or a source. (A bare LostEvent is left to it.)
	rec.reset()
	if !w.message(v, w.schemas.flow) {
		return false
	}
	f := &rec.flow
	if !f.time.set && !f.hasIP && !f.src.set {
		return false
	}
	rec.kind, rec.nodeName, rec.time = kindFlow, f.nodeName, f.time
	return true
}

// hasControl reports whether line holds a byte below 0x20: protojson
// rejects one in a string, and a line of compact JSON has none between
// tokens either. It reads eight bytes at a time.
func hasControl(line []byte) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(line); i += 8 {
		x := binary.LittleEndian.Uint64(line[i:])
		// A byte below 0x20 borrows when 0x20 is taken from it; a byte
		// of 0x80 or more sets its high bit anyway, and is masked out.
		if (x-lo*0x20)&^x&hi != 0 {
			return true
		}
	}
	for ; i < len(line); i++ {
		if line[i] < 0x20 {
			return true
		}
	}
	return false
}

// checkNumbers checks every number in v, a value of a field the fast path
// does not know, against the JSON grammar: fastjson's parser does not.
func checkNumbers(v *fastjson.Value, num []byte) bool {
	switch v.Type() {
	case fastjson.TypeNumber:
		return validNumber(v.MarshalTo(num[:0]))
	case fastjson.TypeArray:
		arr, _ := v.Array()
		for _, e := range arr {
			if !checkNumbers(e, num) {
				return false
			}
		}
	case fastjson.TypeObject:
		o, _ := v.Object()
		ok := true
		o.Visit(func(_ []byte, e *fastjson.Value) {
			ok = ok && checkNumbers(e, num)
		})
		return ok
	}
	return true
}

// validNumber reports whether s is a JSON number:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func validNumber(s []byte) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i == len(s) || s[i] < '0' || s[i] > '9' {
			return false
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i == len(s) || s[i] < '0' || s[i] > '9' {
			return false
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	return i == len(s)
}

// surrogateEscape reports whether line may hold a \u escape of a UTF-16
// surrogate, which fastjson and protojson do not treat alike (an escaped
// backslash followed by "ud8" counts too: such lines only take the slow
// path).
func surrogateEscape(line []byte) bool {
	for {
		i := bytes.Index(line, []byte(`\u`))
		if i < 0 || i+3 > len(line) {
			return false
		}
		if c := line[i+2]; c == 'd' || c == 'D' {
			return true
		}
		line = line[i+2:]
	}
}

// message reads the object v as the message s. It returns false where
// protojson would fail, or might read v otherwise.
func (w *fastJSON) message(v *fastjson.Value, s *msgSchema) bool {
	o, err := v.Object()
	if err != nil {
		return false
	}
	var seen [4]uint64
	var oneofs uint8
	ok := true
	o.Visit(func(k []byte, fv *fastjson.Value) {
		if !ok {
			return
		}
		f := s.lookup(k)
		if f == nil {
			// Unknown: protojson skips it (DiscardUnknown), unless
			// it names an extension.
			ok = !(len(k) >= 2 && k[0] == '[' && k[len(k)-1] == ']') && checkNumbers(fv, w.num)
			return
		}
		word, bit := f.idx>>6, uint64(1)<<(f.idx&63)
		if seen[word]&bit != 0 {
			ok = false // duplicate field
			return
		}
		seen[word] |= bit
		if fv.Type() == fastjson.TypeNull {
			return // a null field is left unset
		}
		if f.oneof >= 0 {
			if oneofs&(1<<f.oneof) != 0 {
				ok = false // oneof already set
				return
			}
			oneofs |= 1 << f.oneof
		}
		if !f.list {
			ok = w.value(f, fv, 0)
			return
		}
		arr, err := fv.Array()
		if err != nil {
			ok = false
			return
		}
		for i, e := range arr {
			if !w.value(f, e, i) {
				ok = false
				return
			}
		}
	})
	return ok
}

// value reads v as field f (the i-th element of a list field).
func (w *fastJSON) value(f *fieldSchema, v *fastjson.Value, i int) bool {
	switch f.kind {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return w.messageValue(f, v, i)
	case protoreflect.StringKind:
		b, err := v.StringBytes()
		if err != nil {
			return false
		}
		w.setString(f.id, b)
		return true
	case protoreflect.BoolKind:
		b, ok := boolValue(v)
		if ok {
			w.setBool(f.id, b)
		}
		return ok
	case protoreflect.EnumKind:
		if v.Type() == fastjson.TypeString {
			b, _ := v.StringBytes()
			if n, ok := f.enum[string(b)]; ok {
				w.setNumber(f.id, uint64(n))
			}
			return true // an unknown name is discarded
		}
	}
	bits, signed, isInt := integerKind(f.kind)
	if !isInt {
		return false // floats, bytes: none in these messages
	}
	n, ok := w.integer(v, bits, signed)
	if ok {
		w.setNumber(f.id, uint64(n))
	}
	return ok
}

// integerKind says how protojson reads a field of kind k as an integer: an
// enum by number as an int32.
func integerKind(k protoreflect.Kind) (bits int, signed, ok bool) {
	switch k {
	case protoreflect.EnumKind, protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return 32, true, true
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return 64, true, true
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return 32, false, true
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return 64, false, true
	}
	return 0, false, false
}

func (w *fastJSON) messageValue(f *fieldSchema, v *fastjson.Value, i int) bool {
	switch f.wkt {
	case wktTimestamp:
		t, ok := parseTimestamp(v)
		if ok {
			w.setTime(f.id, t)
		}
		return ok
	case wktBool:
		b, ok := boolValue(v)
		if ok {
			w.setBool(f.id, b)
		}
		return ok
	case wktInt32:
		_, ok := w.integer(v, 32, true)
		return ok
	case wktOther:
		return false
	}
	if v.Type() != fastjson.TypeObject {
		return false
	}
	r, fl := w.rec, &w.rec.flow
	switch f.id {
	case idRespFlow:
		r.kind = kindFlow
	case idRespNodeStatus:
		r.kind = kindNodeStatus
	case idRespLost:
		r.kind = kindLostEvents
	case idFlowIP:
		fl.hasIP = true
	case idFlowSource:
		w.ep = &fl.src
		w.ep.set = true
	case idFlowDest:
		w.ep = &fl.dst
		w.ep.set = true
	case idFlowL7:
		fl.hasL7 = true
	case idL7DNS:
		fl.hasDNS = true
	case idL4TCP, idL4UDP, idL4ICMPv4, idL4ICMPv6, idL4SCTP:
		// Both run TCP, UDP, ICMPv4, ICMPv6, SCTP.
		fl.l4 = l4TCP + int(f.id-idL4TCP)
	case idFlowL4:
		fl.l4 = 0 // another protocol, or none
	case idEpWorkloads:
		w.firstWL = i == 0
		if w.firstWL {
			w.ep.hasWorkload = true
		}
	}
	return w.message(v, f.msg)
}

func (w *fastJSON) setString(id fieldID, b []byte) {
	r, f := w.rec, &w.rec.flow
	switch id {
	case idRespNodeName:
		r.nodeName = b
	case idFlowUUID:
		f.uuid = b
	case idFlowNodeName:
		f.nodeName = b
	case idFlowDestNames:
		f.destNames = append(f.destNames, b)
	case idIPSource:
		f.ipSrc = b
	case idIPDest:
		f.ipDst = b
	case idEpNamespace:
		w.ep.namespace = b
	case idEpPodName:
		w.ep.podName = b
	case idEpCluster:
		w.ep.clusterName = b
	case idEpLabels:
		w.ep.labels = append(w.ep.labels, b)
	case idWlName:
		if w.firstWL {
			w.ep.workloadName = b
		}
	case idWlKind:
		if w.firstWL {
			w.ep.workloadKind = b
		}
	case idDNSQuery:
		f.dnsQuery = b
	case idDNSIPs:
		f.dnsIPs = append(f.dnsIPs, b)
	}
}

func (w *fastJSON) setBool(id fieldID, b bool) {
	switch id {
	case idFlowReply:
		w.rec.flow.reply = b
	case idFlowIsReply:
		w.rec.flow.isReplySet, w.rec.flow.isReply = true, b
	}
}

// setNumber keeps an integer or enum field: n holds its bits, which a
// 32-bit field truncates (an int32's sign included).
func (w *fastJSON) setNumber(id fieldID, n uint64) {
	r, f := w.rec, &w.rec.flow
	switch id {
	case idFlowVerdict:
		f.verdict = int32(n)
	case idFlowType:
		f.flowType = int32(n)
	case idFlowDirection:
		f.direction = int32(n)
	case idL7Type:
		f.l7Type = int32(n)
	case idEventTypeType:
		f.eventType = int32(n)
	case idLostSource:
		r.lostSrc = int32(n)
	case idEpIdentity:
		w.ep.identity = uint32(n)
	case idPortSource:
		f.srcPort = uint32(n)
	case idPortDest:
		f.dstPort = uint32(n)
	case idICMPType:
		f.icmpType = uint32(n)
	case idDNSTTL:
		f.dnsTTL = uint32(n)
	case idDNSRcode:
		f.dnsRcode = uint32(n)
	case idLostNum:
		r.lostNum = n
	}
}

func (w *fastJSON) setTime(id fieldID, t timestamp) {
	switch id {
	case idRespTime:
		w.rec.time = t
	case idFlowTime:
		w.rec.flow.time = t
	}
}

func boolValue(v *fastjson.Value) (bool, bool) {
	switch v.Type() {
	case fastjson.TypeTrue:
		return true, true
	case fastjson.TypeFalse:
		return false, true
	}
	return false, false
}

// integer reads v, a JSON number or a string holding one, as an integer of
// bits bits. Only plain integers are read (-?digits, no fraction or
// exponent, no space): protojson reads more ("1.0", "1e3"), and leaves
// those to it.
func (w *fastJSON) integer(v *fastjson.Value, bits int, signed bool) (int64, bool) {
	var s []byte
	switch v.Type() {
	case fastjson.TypeNumber:
		w.num = v.MarshalTo(w.num[:0])
		s = w.num
	case fastjson.TypeString:
		s, _ = v.StringBytes()
	default:
		return 0, false
	}
	neg := len(s) > 0 && s[0] == '-'
	if neg {
		if !signed {
			return 0, false
		}
		s = s[1:]
	}
	if len(s) == 0 || len(s) > 20 || (s[0] == '0' && len(s) > 1) {
		return 0, false
	}
	var u uint64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if u > (1<<64-1-d)/10 {
			return 0, false
		}
		u = u*10 + d
	}
	switch {
	case !signed && bits == 32:
		return int64(u), u <= 1<<32-1
	case !signed:
		return int64(u), true // the caller converts back to uint64
	case neg:
		limit := uint64(1) << (bits - 1)
		return -int64(u), u <= limit
	default:
		return int64(u), u < uint64(1)<<(bits-1)
	}
}

// parseTimestamp reads an RFC 3339 time as protojson does (time.Parse,
// then the Timestamp range), in the one form Hubble writes:
// YYYY-MM-DDTHH:MM:SS[.1 to 9 digits]Z. Any other form goes to protojson.
func parseTimestamp(v *fastjson.Value) (timestamp, bool) {
	if v.Type() != fastjson.TypeString {
		return timestamp{}, false
	}
	s, _ := v.StringBytes()
	if len(s) < len("2006-01-02T15:04:05Z") || s[4] != '-' || s[7] != '-' || s[10] != 'T' ||
		s[13] != ':' || s[16] != ':' || s[len(s)-1] != 'Z' {
		return timestamp{}, false
	}
	year, ok1 := digits(s[0:4])
	month, ok2 := digits(s[5:7])
	day, ok3 := digits(s[8:10])
	hour, ok4 := digits(s[11:13])
	minute, ok5 := digits(s[14:16])
	sec, ok6 := digits(s[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || year < 1 || month < 1 || month > 12 ||
		day < 1 || day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 59 {
		return timestamp{}, false
	}
	var nanos int64
	if frac := s[19 : len(s)-1]; len(frac) > 0 {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			return timestamp{}, false
		}
		n, ok := digits(frac[1:])
		if !ok {
			return timestamp{}, false
		}
		for range 10 - len(frac) {
			n *= 10
		}
		nanos = n
	}
	days := daysFromCivil(year, month, day)
	return timestamp{sec: days*86400 + hour*3600 + minute*60 + sec, nanos: int32(nanos), set: true}, true
}

func digits(b []byte) (int64, bool) {
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func daysIn(month, year int64) int64 {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil returns the days from 1970-01-01 to the given date of the
// proleptic Gregorian calendar (Howard Hinnant's algorithm).
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400 // y >= 0 here
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}
