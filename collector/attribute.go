package collector

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"math"
	"net/netip"
	"strings"
	"time"
	"unsafe"

	"github.com/egressd/egressd"
)

// Sink receives what the pipeline produces. Implementations must not block:
// the Hubble stream waits on them. The observation is only valid during the
// call; a sink that keeps it copies it (its strings may be kept).
type Sink interface {
	// Observe receives one attributed observation.
	Observe(o *egressd.Observation)
	// Advance reports that every flow of source up to t has been handed
	// over, so t may become the source's stored cursor.
	Advance(source string, t time.Time)
}

// AnswerSink is a Sink that also keeps the DNS answers pods receive (the
// Aggregator), so that a restart can load them back (LoadDNSAnswers).
type AnswerSink interface {
	ObserveAnswer(a egressd.DNSAnswer)
}

// Pipeline turns encoded GetFlowsResponse messages of one flow source into
// observations: selective decoding, duplicate filtering, DNS answer tracking
// and attribution. It is not safe for concurrent use: run one per stream.
type Pipeline struct {
	opts      Options
	metrics   *Metrics
	sinks     []Sink
	dec       *decoder
	resp      decodedResponse
	prec      []precedence
	clusterIx int
	dns       *dnsCache
	dedup     *dedup
	domains   []string
	intern    interner
	sources   map[string]*sourceState
	cur       *sourceState // the state of curName, the source of the last message
	curName   string
	internal4 []v4Net        // the IPv4 InternalCIDRs
	internal6 []netip.Prefix // the others
	obs       egressd.Observation
	keyBuf    []byte
	delivered int64
	// answerSinks are the sinks that keep DNS answers, podSinks those
	// that keep pods' labels and resolvers, which facts sends once.
	answerSinks []AnswerSink
	podSinks    []PodSink
	lostSinks   []LostSink // those that store lost_events records
	facts       *podFacts
	nameFrom    string // where the last attributed app's name came from
	// bound is a recent Now()+MaxClockSkew in Unix ns. It only lags the
	// real bound, so a flow at or before it is in time without reading
	// the clock; one after it reads the clock again.
	bound    int64
	clockLog rateLimited
	apps     appLimit
	log      *slog.Logger
	// cov, in a replay, replaces the per-source cursor: see ReplayFrom.
	cov    *coverage
	newest int64 // the newest valid flow time handled, Unix ns
	// In a replay, replayRef is the newest flow time accepted, and held a
	// copy of a flow more than MaxClockSkew after it, held back until the
	// next flow says whether time really moved on (see replayOrder).
	// heldAt is its time, heldNode its node; heldBuf keeps the storage.
	replayRef  int64
	held       []byte
	heldBuf    []byte
	heldAt     int64
	heldNode   []byte
	heldSource string
}

// Bounds of a believable flow time, in Unix seconds. Hubble has no flows
// from before 2000; past maxFlowSec (2262), a time no longer fits int64
// nanoseconds, and a year-9999 time would wrap into 1816.
const (
	minFlowSec = 946_684_800 // 2000-01-01T00:00:00Z
	maxFlowSec = math.MaxInt64/1_000_000_000 - 1
)

// rateLimited lets one log line through per interval and counts the
// others, which the next line reports.
type rateLimited struct {
	last       int64 // Unix ns of the last line
	suppressed int64
}

// clockLogInterval is the least time between two rejected-flow lines.
const clockLogInterval = 10 * time.Second

func (r *rateLimited) allow(now int64, interval time.Duration) (suppressed int64, ok bool) {
	if r.last != 0 && now-r.last < int64(interval) && now >= r.last {
		r.suppressed++
		return 0, false
	}
	suppressed, r.suppressed, r.last = r.suppressed, 0, now
	return suppressed, true
}

// sourceState is what the pipeline keeps per flow source.
type sourceState struct {
	skipUntil int64 // with hasSkip: flows at or before it are dropped
	hasSkip   bool
	last      int64 // the newest flow handled
}

// v4Net is an IPv4 network as integers: checking an address against the
// InternalCIDRs is then an AND and a compare per network.
type v4Net struct{ addr, mask uint32 }

type precedence struct {
	kind     byte // 'w' workload, 'l' label, 'p' pod
	labelIdx int
	from     string // as AppLabelSet.NameFrom says it
}

// NewPipeline returns a pipeline delivering to sinks.
func NewPipeline(opts Options, m *Metrics, sinks ...Sink) (*Pipeline, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	var keys []string
	p := &Pipeline{opts: opts, metrics: m, sinks: sinks, sources: map[string]*sourceState{}}
	for _, s := range sinks {
		if a, ok := s.(AnswerSink); ok {
			p.answerSinks = append(p.answerSinks, a)
		}
		if ps, ok := s.(PodSink); ok {
			p.podSinks = append(p.podSinks, ps)
		}
		if ls, ok := s.(LostSink); ok {
			p.lostSinks = append(p.lostSinks, ls)
		}
	}
	for _, c := range opts.InternalCIDRs {
		c = c.Masked()
		switch {
		case c.Addr().Is4():
			a := c.Addr().As4()
			mask := uint32(0)
			if c.Bits() > 0 {
				mask = ^uint32(0) << (32 - c.Bits())
			}
			p.internal4 = append(p.internal4, v4Net{addr: binary.BigEndian.Uint32(a[:]), mask: mask})
		case c.IsValid():
			p.internal6 = append(p.internal6, c)
		}
	}
	for _, s := range opts.AppPrecedence {
		switch {
		case s == "workload":
			p.prec = append(p.prec, precedence{kind: 'w', from: s})
		case s == "pod":
			p.prec = append(p.prec, precedence{kind: 'p', from: s})
		default:
			p.prec = append(p.prec, precedence{kind: 'l', labelIdx: len(keys), from: "label:" + strings.TrimPrefix(s, "label:")})
			keys = append(keys, strings.TrimPrefix(s, "label:"))
		}
	}
	p.clusterIx = len(keys)
	keys = append(keys, "io.cilium.k8s.policy.cluster")
	p.dec = newDecoder(keys)
	for _, d := range opts.ClusterDomains {
		d, _ = normalizeDomain(d)
		p.domains = append(p.domains, d)
	}
	p.log = opts.Log
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.dns = newDNSCache(opts.DNSMaxEntries, opts.DNSMaxEntriesPerPod, m)
	p.dedup = newDedup(opts.DedupWindow, opts.DedupMaxEntries, m)
	p.intern.max = 100_000
	p.apps = newAppLimit(opts.MaxApps)
	m.AppsMax.Set(float64(opts.MaxApps))
	p.facts = newPodFacts()
	return p, nil
}

// LoadDNSAnswers gives the pipeline the DNS answers stored before a
// restart, so that a connection that follows an answer received by the
// previous process is named as that process would have named it. Expired
// answers are harmless: an answer names connections only until it expires,
// in flow time.
func (p *Pipeline) LoadDNSAnswers(as []egressd.DNSAnswer) {
	for _, a := range as {
		if !a.Addr.IsValid() || a.Namespace == "" || a.Pod == "" {
			continue
		}
		exp := a.Expires.UnixNano()
		p.dns.add(p.dnsKey([]byte(a.Namespace), []byte(a.Pod), a.Addr), a.Name, exp, exp)
	}
}

// SkipUntil makes the pipeline ignore flows of source at or before t: they
// were stored before a restart (the resume cursor), and Hubble's `since` is
// inclusive.
func (p *Pipeline) SkipUntil(source string, t time.Time) {
	st := p.source(source)
	st.skipUntil, st.hasSkip = t.UnixNano(), true
}

// source returns the state of a flow source, created when first needed.
// Messages come in runs from one source, so the last one is kept at hand:
// the string comparison is one of pointers when the caller passes the same
// string each time, as a stream's handler does.
func (p *Pipeline) source(name string) *sourceState {
	if p.cur != nil && name == p.curName {
		return p.cur
	}
	st := p.sources[name]
	if st == nil {
		st = &sourceState{}
		p.sources[name] = st
	}
	p.cur, p.curName = st, name
	return st
}

// Newest returns the time of the newest flow handled whose time was valid,
// stored or not; zero before any.
func (p *Pipeline) Newest() time.Time {
	if p.newest == 0 {
		return time.Time{}
	}
	return time.Unix(0, p.newest).UTC()
}

// Delivered returns how many observations the pipeline handed its sinks.
func (p *Pipeline) Delivered() int64 { return p.delivered }

// Resume returns where a new stream of source should start: the newest of
// the stored cursor (SkipUntil) and the newest flow handled since. Zero means
// nothing is known: start from now.
func (p *Pipeline) Resume(source string) time.Time {
	var t int64
	if st := p.sources[source]; st != nil {
		t = max(st.skipUntil, st.last)
	}
	if t == 0 {
		return time.Time{}
	}
	return time.Unix(0, t).UTC()
}

// Handle processes one encoded GetFlowsResponse from source. A message that
// cannot be decoded is counted and reported; it never stops the stream.
func (p *Pipeline) Handle(source string, msg []byte) error {
	p.metrics.Messages.Inc()
	return p.handle(source, msg, false)
}

// handle is Handle without the message count; confirmed says the message
// is a replayed flow held back by replayOrder and since confirmed.
func (p *Pipeline) handle(source string, msg []byte, confirmed bool) error {
	r := &p.resp
	if err := p.dec.decode(msg, r); err != nil {
		p.metrics.DecodeErrors.Inc()
		return err
	}
	switch r.kind {
	case kindFlow:
	case kindLostEvents:
		p.metrics.lost(r.lostSrc, r.lostNum)
		p.metrics.skip(skipLostEvents)
		p.observeLost(r)
		return nil
	default:
		p.metrics.skip(skipNotFlow)
		return nil
	}
	f := &r.flow
	sec, nanos := f.timeSec, f.timeNanos
	if !f.hasTime {
		sec, nanos = r.timeSec, r.timeNanos
		if !r.hasTime {
			p.metrics.unattr(unattrNoTime)
			return nil
		}
	}
	if nanos < 0 || nanos >= 1e9 {
		p.metrics.unattr(unattrNoTime)
		return nil
	}
	if len(f.nodeName) == 0 {
		f.nodeName = r.nodeName
	}
	// Time is validated before anything else reads it: a flow from the
	// future would otherwise become the cursor, and a restarted collector
	// would skip every real flow until then.
	if sec < minFlowSec || sec > maxFlowSec {
		p.rejectClock(f.nodeName, sec, nanos)
		return nil
	}
	ts := sec*1e9 + nanos
	if ts > p.bound {
		p.bound = p.opts.Now().Add(p.opts.MaxClockSkew).UnixNano()
		if ts > p.bound {
			p.rejectClock(f.nodeName, sec, nanos)
			return nil
		}
	}
	if p.cov != nil {
		if !confirmed {
			switch p.replayOrder(source, f.nodeName, ts, msg) {
			case orderHold:
				return nil
			case orderReleaseHeld:
				// The held flow goes first, then this one, decoded
				// again (decoding the held one overwrote it) and
				// judged against the held one's time.
				held := p.held
				p.held = p.held[:0]
				p.heldAt = 0
				herr := p.handle(p.heldSource, held, true)
				p.heldBuf = held
				return errors.Join(herr, p.handle(source, msg, false))
			}
		}
		p.newest = max(p.newest, ts)
		p.replayRef = max(p.replayRef, ts)
		return p.handleReplayed(source, f, ts, sec, nanos)
	}
	p.newest = max(p.newest, ts)
	st := p.source(source)
	if st.hasSkip && ts <= st.skipUntil {
		p.metrics.skip(skipAlreadyStored)
		return nil
	}
	if ts > st.last {
		st.last = ts
	}
	t := time.Unix(sec, nanos).UTC()
	err := p.process(source, f, ts, t)
	for _, s := range p.sinks {
		s.Advance(source, t)
	}
	return err
}

// ReplayFrom makes the pipeline a replay's: instead of one cursor per
// source, each node's flows advance the cursor of their span of flow time
// (ReplaySource), and a flow inside a span of the stored cursors (those
// named with ReplaySourcePrefix) was stored by an earlier replay, whatever
// file or pipe it came from: it is skipped as already_stored. Flow times
// are also bounded by the capture's own flows (see replayOrder), so the
// replay ends with FinishReplay. Call ReplayFrom before the first Handle.
func (p *Pipeline) ReplayFrom(stored []egressd.Cursor) {
	p.cov = newCoverage(stored)
}

// What replayOrder decides for a replayed flow.
const (
	orderHandle      = iota // handle it now
	orderHold               // it is held back; nothing else to do
	orderReleaseHeld        // handle the held flow, then this one
)

// replayOrder bounds a replayed flow's time by the capture's own flows: a
// capture is recorded before it is replayed, so the receiving clock bounds
// it only loosely. A flow more than MaxClockSkew after the newest flow
// accepted so far (or the first flow of the replay) is held back. The next
// flow decides: if it is not more than MaxClockSkew before the held one,
// time really moved on (a quiet period, a later file) and both are
// handled; otherwise the held flow was a stray stamp (a misbehaving node
// clock, a crafted line) and is rejected like a flow from the future. A
// stray that stood would cover itself in the replay's cursors, and move
// the newest stored flow that retention counts from.
func (p *Pipeline) replayOrder(source string, node []byte, ts int64, msg []byte) int {
	skew := int64(p.opts.MaxClockSkew)
	if p.heldAt != 0 {
		if ts >= p.heldAt-skew {
			return orderReleaseHeld
		}
		sec, nanos := p.heldAt/1e9, p.heldAt%1e9
		p.rejectClock(p.heldNode, sec, nanos)
		p.held, p.heldAt = p.held[:0], 0
	}
	if p.replayRef != 0 && ts <= p.replayRef+skew {
		return orderHandle
	}
	p.held = append(p.heldBuf[:0], msg...)
	p.heldBuf = p.held
	p.heldNode = append(p.heldNode[:0], node...)
	p.heldAt, p.heldSource = ts, source
	return orderHold
}

// FinishReplay ends a replay's input, whose last flow may still be held
// back (see replayOrder) with nothing after it to confirm its time. It is
// handled when it is the replay's only flow, and rejected otherwise: a
// last flow after more than MaxClockSkew of silence cannot be told from a
// stray stamp, and a stray would stretch its node's span over time whose
// flows were never read.
func (p *Pipeline) FinishReplay() error {
	if p.heldAt == 0 {
		return nil
	}
	held, at := p.held, p.heldAt
	p.held, p.heldAt = p.held[:0], 0
	if p.replayRef != 0 {
		p.rejectClock(p.heldNode, at/1e9, at%1e9)
		return nil
	}
	err := p.handle(p.heldSource, held, true)
	p.heldBuf = held
	return err
}

// handleReplayed is Handle for a replay's flow, whose time is valid.
func (p *Pipeline) handleReplayed(source string, f *decodedFlow, ts, sec, nanos int64) error {
	cursor, covered := p.cov.place(p.cov.nodeKey(f.nodeName), ts)
	t := time.Unix(sec, nanos).UTC()
	if covered {
		if f.hasDNS && f.l7Type == l7Response {
			// Stored or not, an answer names the addresses that flows
			// after the stored span (an overlapping capture) connect to.
			if err := p.dec.endpoints(f); err != nil {
				p.metrics.DecodeErrors.Inc()
				return err
			}
			p.processDNS(source, f, ts, t)
			return nil
		}
		p.metrics.skip(skipAlreadyStored)
		return nil
	}
	err := p.process(source, f, ts, t)
	for _, s := range p.sinks {
		s.Advance(cursor, t)
	}
	return err
}

// rejectClock counts a flow whose time is not believable and logs it, at
// most once per clockLogInterval, with its node.
func (p *Pipeline) rejectClock(node []byte, sec, nanos int64) {
	p.metrics.rejectedClock.Inc()
	now := p.opts.Now()
	suppressed, ok := p.clockLog.allow(now.UnixNano(), clockLogInterval)
	if !ok {
		return
	}
	if len(node) > egressd.MaxNameLen {
		node = node[:egressd.MaxNameLen]
	}
	// The time is printed as numbers: time.Unix of them may not be a
	// time Go can format faithfully, and they are what the flow said.
	p.log.Warn("flow_rejected_clock", "node", string(node), "flow_time_sec", sec, "flow_time_nanos", nanos,
		"now", now.UTC(), "max_clock_skew", p.opts.MaxClockSkew, "rejected_since_last_line", suppressed)
}

func (p *Pipeline) process(source string, f *decodedFlow, ts int64, t time.Time) error {
	if !f.hasDNS {
		// The cheap checks first: most flows end here, and their
		// endpoints are never decoded.
		if f.direction != directionEgress {
			p.metrics.skip(skipNotEgress)
			return nil
		}
		if p.isReply(f) {
			p.metrics.skip(skipReply)
			return nil
		}
		if icmpAnswer(f) {
			p.metrics.skip(skipICMPAnswer)
			return nil
		}
	}
	if err := p.dec.endpoints(f); err != nil {
		p.metrics.DecodeErrors.Inc()
		return err
	}
	if f.hasDNS {
		p.processDNS(source, f, ts, t)
		return nil
	}
	if !outsideCluster(&f.dest) {
		p.metrics.skip(skipInCluster)
		return nil
	}
	ip, ok := parseAddr(f.ipDest)
	if !ok {
		p.metrics.unattr(unattrBadIP)
		return nil
	}
	if p.internal(ip) {
		p.metrics.skip(skipInternalCIDR)
		return nil
	}
	o := &p.obs
	*o = egressd.Observation{Time: t, Kind: egressd.KindConnect, Source: source, Verdict: egressd.Verdict(f.verdict)}
	if !p.attributeSource(f, o) {
		return nil
	}
	// The destination: Cilium's own name for it, else the name the pod's
	// DNS answer gave the address, else the address itself.
	switch {
	case f.nDestNames > 0 && p.setName(o, f.destName):
		o.NameSource = egressd.NameFromFlow
	default:
		if f.nDestNames > 0 {
			p.metrics.unattr(unattrBadName)
		}
		if name, ok := p.dns.lookup(p.dnsKey(f.source.namespace, f.source.podName, ip), ts); ok {
			o.Destination.Name = name
			o.NameSource = egressd.NameFromDNS
		} else {
			o.Destination.Name = p.intern.addr(ip)
			o.NameSource = egressd.NameIsIP
		}
	}
	o.Destination.Port, o.Destination.Protocol = l4Port(f)
	if p.dedup.seen(f.raw, ts) {
		p.metrics.skip(skipDuplicate)
		return nil
	}
	p.metrics.obsConnect.Inc()
	if p.deliver(o) {
		p.observeLabels(o, f.srcRaw, p.nameFrom)
	}
	return nil
}

// processDNS learns a DNS answer (query -> addresses for the asking pod) or
// records a DNS question as a dns_query observation.
func (p *Pipeline) processDNS(source string, f *decodedFlow, ts int64, t time.Time) {
	switch f.l7Type {
	case l7Response:
		// The answer travels from the DNS server to the pod that asked:
		// that pod is the destination of a reply, else the source.
		asker := &f.dest
		if !p.isReply(f) && len(f.dest.podName) == 0 {
			asker = &f.source
		}
		if len(asker.podName) == 0 || len(asker.namespace) == 0 {
			p.metrics.unattr(unattrDNSNoAskerPod)
			return
		}
		// An answer is never an observation itself, whatever it teaches.
		p.metrics.skip(skipDNSAnswer)
		if f.dnsRcode != 0 || f.nDNSIPs == 0 {
			return
		}
		name, ok := p.normalizeName(f.dnsQuery)
		if !ok {
			p.metrics.unattr(unattrBadDNSAnswer)
			return
		}
		if p.clusterLocal(name) {
			return
		}
		ttl := time.Duration(f.dnsTTL) * time.Second
		if ttl < p.opts.DNSMinTTL {
			ttl = p.opts.DNSMinTTL
		}
		exp := ts + int64(ttl)
		// The asker is the same for every address of the answer: it is
		// named and checked once. Stored answers carry only valid names,
		// as everything stored does.
		var ns, pod string
		store := len(p.answerSinks) > 0
		if store {
			ns, pod = p.intern.bytes(asker.namespace), p.intern.bytes(asker.podName)
			store = egressd.ValidNamespace(ns) && egressd.ValidPodName(pod)
		}
		n := min(f.nDNSIPs, maxDNSIPs)
		for i := 0; i < n; i++ {
			ip, ok := parseAddr(f.dnsIPs[i])
			if !ok {
				p.metrics.unattr(unattrBadDNSAnswer)
				continue
			}
			p.dns.add(p.dnsKey(asker.namespace, asker.podName, ip), name, exp, ts)
			if !store {
				continue
			}
			for _, s := range p.answerSinks {
				s.ObserveAnswer(egressd.DNSAnswer{Namespace: ns, Pod: pod, Addr: ip, Name: name, Expires: time.Unix(0, exp).UTC()})
			}
		}
	case l7Request:
		if p.isReply(f) {
			p.metrics.skip(skipReply)
			return
		}
		o := &p.obs
		*o = egressd.Observation{Time: t, Kind: egressd.KindDNSQuery, Source: source, Verdict: egressd.Verdict(f.verdict)}
		if !p.attributeSource(f, o) {
			return
		}
		name, ok := p.normalizeName(f.dnsQuery)
		if !ok {
			p.metrics.unattr(unattrBadName)
			return
		}
		if p.clusterLocal(name) {
			p.metrics.skip(skipInCluster)
			return
		}
		o.Destination.Name = name
		o.NameSource = egressd.NameFromFlow
		o.Destination.Port, o.Destination.Protocol = l4Port(f)
		if o.Destination.Protocol == egressd.ProtoAny {
			o.Destination.Port, o.Destination.Protocol = 53, egressd.ProtoUDP
		}
		if p.dedup.seen(f.raw, ts) {
			p.metrics.skip(skipDuplicate)
			return
		}
		p.metrics.obsDNS.Inc()
		if p.deliver(o) {
			p.observeLabels(o, f.srcRaw, p.nameFrom)
			p.observeResolver(o, f)
		}
	default:
		p.metrics.skip(skipDNSOther)
	}
}

// internal reports whether ip is in one of the InternalCIDRs.
func (p *Pipeline) internal(ip netip.Addr) bool {
	if ip.Is4() {
		a := ip.As4()
		u := binary.BigEndian.Uint32(a[:])
		for _, n := range p.internal4 {
			if u&n.mask == n.addr {
				return true
			}
		}
		return false
	}
	for _, c := range p.internal6 {
		if c.Contains(ip) {
			return true
		}
	}
	return false
}

// deliver hands o to the sinks when its app is kept (Options.MaxApps), and
// reports whether it was; only a kept app's pod facts are sent on.
func (p *Pipeline) deliver(o *egressd.Observation) bool {
	if !p.admitApp(o) {
		return false
	}
	p.delivered++
	for _, s := range p.sinks {
		s.Observe(o)
	}
	return true
}

// icmpAnswer reports whether f carries an ICMP message that answers
// traffic rather than starts it: an error (destination unreachable, time
// exceeded, packet too big, parameter problem, redirect, source quench) or
// an echo, timestamp, information or address-mask reply. A pod sends
// errors in answer to inbound packets (a closed port, a TTL that ran out);
// Cilium's conntrack finds them RELATED to that connection, which is
// neither new nor a reply, so Hubble reports them as EGRESS flows with
// is_reply false, to the address that sent the packet. They are not the
// workload reaching out. Echo requests (ping) and other ICMP messages that
// start an exchange still count.
func icmpAnswer(f *decodedFlow) bool {
	switch f.l4 {
	case l4ICMPv4:
		switch f.icmpType {
		case 0, 3, 4, 5, 11, 12, 14, 16, 18:
			return true
		}
	case l4ICMPv6:
		// Types below 128 are errors (RFC 4443); 129 is an echo reply.
		return f.icmpType >= 1 && f.icmpType < 128 || f.icmpType == 129
	}
	return false
}

func (p *Pipeline) isReply(f *decodedFlow) bool {
	if f.isReplySet {
		return f.isReply
	}
	return f.reply
}

// outsideCluster reports whether a destination endpoint is outside the
// cluster. Identity numbers alone are not enough: the labels decide, and an
// endpoint that names a pod is in the cluster whatever its identity (the
// L7-proxy quirk in real flows: identity 2 with a pod name).
func outsideCluster(e *endpoint) bool {
	if len(e.podName) > 0 || len(e.namespace) > 0 {
		return false
	}
	if e.reserved&(resHost|resOtherReserved) != 0 {
		// e.g. reserved:kube-apiserver + reserved:world on one identity.
		return false
	}
	if e.reserved&(resWorld|resCIDR|resFQDN) != 0 {
		return true
	}
	// Flows without labels: only the reserved world identities
	// (2, and 9/10 for world-ipv4/-ipv6) qualify.
	return e.nLabels == 0 && (e.identity == 2 || e.identity == 9 || e.identity == 10)
}

// attributeSource fills o.App, o.Pod and o.Node from the flow's source.
func (p *Pipeline) attributeSource(f *decodedFlow, o *egressd.Observation) bool {
	s := &f.source
	o.Node = p.intern.nodeName(f.nodeName)
	if s.reserved&resHost != 0 && len(s.podName) == 0 {
		if o.Node == "" {
			p.metrics.unattr(unattrNoApp)
			return false
		}
		cluster := p.cluster(s)
		if i := bytesLastIndex(f.nodeName, '/'); i > 0 {
			if c := p.intern.bytes(f.nodeName[:i]); egressd.ValidAppName(c) && len(c) <= egressd.MaxClusterLen {
				cluster = c
			}
		}
		o.App = egressd.App{Cluster: cluster, Namespace: egressd.HostNamespace, Name: o.Node}
		return true
	}
	if s.reserved&resWorld != 0 || s.reserved&resOtherReserved != 0 && len(s.namespace) == 0 {
		p.metrics.unattr(unattrSourceNotPod)
		return false
	}
	if len(s.namespace) == 0 {
		p.metrics.unattr(unattrNoNamespace)
		return false
	}
	ns := p.intern.bytes(s.namespace)
	if !egressd.ValidNamespace(ns) {
		p.metrics.unattr(unattrBadNamespace)
		return false
	}
	pod := ""
	if len(s.podName) > 0 {
		pod = p.intern.bytes(s.podName)
		if !egressd.ValidPodName(pod) {
			pod = ""
		}
	}
	name := ""
	p.nameFrom = ""
	for _, pr := range p.prec {
		var cand string
		switch pr.kind {
		case 'w':
			cand = p.intern.bytes(s.workloadName)
		case 'l':
			cand = p.intern.bytes(s.labelVals[pr.labelIdx])
		case 'p':
			if pod != "" {
				cand = p.intern.app(pod)
			}
		}
		if cand != "" && egressd.ValidAppName(cand) {
			name, p.nameFrom = cand, pr.from
			break
		}
	}
	if name == "" {
		p.metrics.unattr(unattrNoApp)
		return false
	}
	o.App = egressd.App{Cluster: p.cluster(s), Namespace: ns, Name: name}
	o.Pod = pod
	return true
}

func (p *Pipeline) cluster(s *endpoint) string {
	c := s.clusterName
	if len(c) == 0 {
		c = s.labelVals[p.clusterIx]
	}
	if len(c) == 0 || len(c) > egressd.MaxClusterLen {
		return p.opts.Cluster
	}
	name := p.intern.bytes(c)
	if !egressd.ValidAppName(name) {
		return p.opts.Cluster
	}
	return name
}

func (p *Pipeline) setName(o *egressd.Observation, b []byte) bool {
	name, ok := p.normalizeName(b)
	if !ok || p.clusterLocal(name) {
		return false
	}
	o.Destination.Name = name
	return true
}

func (p *Pipeline) normalizeName(b []byte) (string, bool) {
	if len(b) > 0 && b[len(b)-1] == '.' {
		b = b[:len(b)-1]
	}
	if len(b) == 0 || len(b) > egressd.MaxNameLen {
		return "", false
	}
	if s, ok := p.intern.lookup(b); ok {
		return s, true
	}
	name, ok := egressd.NormalizeName(string(b))
	if !ok {
		return "", false
	}
	p.intern.store(b, name)
	return name, true
}

func (p *Pipeline) clusterLocal(name string) bool {
	for _, d := range p.domains {
		if name == d || strings.HasSuffix(name, d) && name[len(name)-len(d)-1] == '.' {
			return true
		}
	}
	return false
}

// dnsKey builds the cache key of a pod's address in a reused buffer.
func (p *Pipeline) dnsKey(ns, pod []byte, ip netip.Addr) []byte {
	k := p.keyBuf[:0]
	k = append(k, ns...)
	k = append(k, '/')
	k = append(k, pod...)
	k = append(k, '/')
	a := ip.As16()
	k = append(k, a[:]...)
	p.keyBuf = k
	return k
}

func l4Port(f *decodedFlow) (uint16, string) {
	if f.dstPort > 0xffff {
		// The proto field is a uint32: a port beyond 65535 is corrupt, and
		// uint16() would turn it into another, real port (70000 into 4464).
		// The destination is kept, as one whose port is unknown.
		return 0, egressd.ProtoAny
	}
	switch f.l4 {
	case l4TCP:
		return uint16(f.dstPort), egressd.ProtoTCP
	case l4UDP:
		return uint16(f.dstPort), egressd.ProtoUDP
	case l4SCTP:
		return uint16(f.dstPort), egressd.ProtoSCTP
	case l4ICMPv4:
		return 0, egressd.ProtoICMPv4
	case l4ICMPv6:
		return 0, egressd.ProtoICMPv6
	}
	return 0, egressd.ProtoAny
}

// parseAddr parses an IP address without copying b. Zoned addresses are
// rejected: their zone would alias the message buffer.
func parseAddr(b []byte) (netip.Addr, bool) {
	if len(b) == 0 || len(b) > 45 {
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(unsafe.String(&b[0], len(b)))
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}

// stripPodSuffix returns a pod's controller name: the pod name without the
// suffixes Kubernetes controllers add (ReplicaSet "-<hash>-<5>", DaemonSet
// and Job "-<5>", CronJob "-<schedule>-<5>", StatefulSet "-<ordinal>").
func stripPodSuffix(pod string) string {
	rest, last, ok := cutLast(pod)
	if !ok {
		return pod
	}
	if len(last) == 5 && safeEncoded(last) {
		if r2, mid, ok := cutLast(rest); ok && (len(mid) >= 6 && len(mid) <= 10 && safeEncoded(mid) || len(mid) >= 6 && allDigits(mid)) {
			return r2
		}
		return rest
	}
	if allDigits(last) {
		return rest
	}
	return pod
}

func bytesLastIndex(b []byte, c byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == c {
			return i
		}
	}
	return -1
}

func cutLast(s string) (string, string, bool) {
	i := strings.LastIndexByte(s, '-')
	if i <= 0 || i == len(s)-1 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}

// safeEncoded reports whether s uses only the alphabet Kubernetes draws
// generated name suffixes from (k8s.io/apimachinery/pkg/util/rand: no vowels,
// no 0, 1 or 3), which keeps words like "proxy" or "v1" from being stripped.
func safeEncoded(s string) bool {
	for i := 0; i < len(s); i++ {
		if !strings.ContainsRune("bcdfghjklmnpqrstvwxz2456789", rune(s[i])) {
			return false
		}
	}
	return true
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// interner keeps one copy of each string the pipeline sees repeatedly
// (namespaces, apps, pods, names, addresses), so attributing a flow allocates
// nothing once its names are known. Raw strings, normalised names, pod-derived
// apps and addresses live in separate maps so that a value cached for one use
// is never returned for another. Each map is bounded: when full it starts over.
type interner struct {
	raw   map[string]string
	names map[string]string
	apps  map[string]string
	addrs map[netip.Addr]string
	max   int
}

func (in *interner) lookup(b []byte) (string, bool) {
	s, ok := in.names[string(b)]
	return s, ok
}

func (in *interner) store(b []byte, s string) {
	if in.names == nil || len(in.names) >= in.max {
		in.names = make(map[string]string)
	}
	in.names[string(b)] = s
}

func (in *interner) bytes(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if s, ok := in.raw[string(b)]; ok {
		return s
	}
	if in.raw == nil || len(in.raw) >= in.max {
		in.raw = make(map[string]string)
	}
	s := string(b)
	in.raw[s] = s
	return s
}

// nodeName returns the node's name. Cilium writes "<cluster>/<node>" when
// the cluster is not named "default"; the cluster prefix is dropped.
func (in *interner) nodeName(b []byte) string {
	if i := bytesLastIndex(b, '/'); i >= 0 {
		b = b[i+1:]
	}
	s := in.bytes(b)
	if s != "" && !egressd.ValidAppName(s) {
		return ""
	}
	return s
}

// app returns the pod's controller name, cached per pod.
func (in *interner) app(pod string) string {
	if s, ok := in.apps[pod]; ok {
		return s
	}
	if in.apps == nil || len(in.apps) >= in.max {
		in.apps = make(map[string]string)
	}
	s := stripPodSuffix(pod)
	in.apps[pod] = s
	return s
}

// addr returns the string form of an address, cached.
func (in *interner) addr(ip netip.Addr) string {
	if s, ok := in.addrs[ip]; ok {
		return s
	}
	if in.addrs == nil || len(in.addrs) >= in.max {
		in.addrs = make(map[netip.Addr]string)
	}
	s := ip.String()
	in.addrs[ip] = s
	return s
}
