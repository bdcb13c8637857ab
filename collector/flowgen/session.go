package flowgen

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
)

// Shorter names for the observation points, directions and reasons used
// below.
const (
	toEndpoint  = flowpb.TraceObservationPoint_TO_ENDPOINT
	toProxy     = flowpb.TraceObservationPoint_TO_PROXY
	toStack     = flowpb.TraceObservationPoint_TO_STACK
	toOverlay   = flowpb.TraceObservationPoint_TO_OVERLAY
	toNetwork   = flowpb.TraceObservationPoint_TO_NETWORK
	fromNetwork = flowpb.TraceObservationPoint_FROM_NETWORK

	egress  = flowpb.TrafficDirection_EGRESS
	ingress = flowpb.TrafficDirection_INGRESS
	noDir   = flowpb.TrafficDirection_TRAFFIC_DIRECTION_UNKNOWN

	reasonNew         = flowpb.TraceReason_NEW
	reasonEstablished = flowpb.TraceReason_ESTABLISHED
	reasonReply       = flowpb.TraceReason_REPLY
	reasonUnknown     = flowpb.TraceReason_TRACE_REASON_UNKNOWN
)

// jitter returns a random duration in [lo, hi).
func (r *run) jitter(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(r.rng.Int64N(int64(hi-lo)))
}

// ephemeral returns a client port from Linux's default range.
func (r *run) ephemeral() uint16 { return uint16(32768 + r.rng.IntN(60999-32768+1)) }

// remoteSide returns the endpoint of a connection that is outside the
// cluster, or nil.
func remoteSide(a, b *endpoint) *endpoint {
	switch {
	case a.node == nil:
		return a
	case b.node == nil:
		return b
	}
	return nil
}

// oneWay returns a one-way network delay between two endpoints, and how long
// the server takes to answer a request: a datagram (DNS, NTP) or an HTTP
// request.
func (r *run) oneWay(a, b *endpoint, udp bool) (delay, serve time.Duration) {
	remote := remoteSide(a, b)
	switch {
	case remote == nil:
		delay, serve = r.jitter(80*time.Microsecond, 400*time.Microsecond), r.jitter(time.Millisecond, 30*time.Millisecond)
	case remote.ip.IsPrivate():
		delay, serve = r.jitter(150*time.Microsecond, 900*time.Microsecond), r.jitter(2*time.Millisecond, 40*time.Millisecond)
	default:
		delay, serve = r.jitter(4*time.Millisecond, 45*time.Millisecond), r.jitter(20*time.Millisecond, 350*time.Millisecond)
	}
	if udp {
		serve = r.jitter(50*time.Microsecond, 3*time.Millisecond)
	}
	return delay, serve
}

// resolution is what the cluster DNS answers for a name.
type resolution struct {
	ips    []netip.Addr
	cnames []string
	ttl    uint32
	nx     bool
	local  bool // answered by CoreDNS itself (cluster domain), never forwarded
}

// answered is what a lookup gave the pod.
type answered struct {
	ips     []netip.Addr
	at      time.Time // when the answer reached the pod
	expires time.Time // at + the answer's TTL
}

// resolve looks a remote's name up as the source pod's resolver does: the
// search path first when configured, then the name, then AAAA for
// dual-stack resolvers. It returns the A answer, ready when all are done.
func (r *run) resolve(t time.Time, rem *Remote) answered {
	spec := r.src.w.spec
	res := resolution{ips: rem.IPs, cnames: rem.CNAMEs, ttl: rem.TTL, nx: rem.NXDomain}
	if spec.SearchDomains && strings.Count(rem.Name, ".") < 5 {
		domain := r.g.s.DNS.Domain
		for _, suffix := range []string{spec.Namespace + ".svc." + domain, "svc." + domain, domain} {
			t = r.lookup(t, rem.Name+"."+suffix, "A", resolution{nx: true, local: true}).at
			t = t.Add(r.jitter(50*time.Microsecond, 2*time.Millisecond))
		}
	}
	a := r.lookup(t, rem.Name, "A", res)
	if spec.DualStack {
		a.at = r.lookup(a.at.Add(r.jitter(20*time.Microsecond, time.Millisecond)), rem.Name, "AAAA", res).at
	}
	return a
}

// lookup renders one query through the DNS proxy on the source pod's node,
// and CoreDNS forwarding it upstream on a cache miss.
func (r *run) lookup(t time.Time, name, qtype string, res resolution) answered {
	g, client := r.g, r.src
	server := g.c.dnsPods[r.rng.IntN(len(g.c.dnsPods))]
	q := dnsQuestion{name: strings.ToLower(name) + ".", qtype: qtype}
	p := pkt{t: t, obs: client.node, src: client, dst: server, sport: r.ephemeral(), dport: 53, udp: true}
	if rules := client.w.policy; rules != nil {
		r.emit(g.policyVerdict(p, flowpb.Verdict_REDIRECTED, egress, rules))
		p.t = p.t.Add(r.jitter(5*time.Microsecond, 30*time.Microsecond))
	}
	r.emit(g.trace(p, toProxy, reasonNew, egress))
	p.t = p.t.Add(r.jitter(40*time.Microsecond, 250*time.Microsecond))
	r.emit(g.dnsRequest(p, q))

	at := p.t.Add(r.jitter(100*time.Microsecond, 600*time.Microsecond))
	forwarded := !res.local && r.rng.Float64() < g.s.DNS.ForwardRate
	if forwarded {
		upstream := g.s.DNS.Upstreams[r.rng.IntN(len(g.s.DNS.Upstreams))]
		at = r.connect(at, conn{
			client: server,
			server: remoteEndpoint(upstream, World()),
			dport:  53,
			udp:    true,
		})
		at = at.Add(r.jitter(50*time.Microsecond, 400*time.Microsecond))
	} else {
		at = at.Add(r.jitter(50*time.Microsecond, time.Millisecond))
	}

	var a dnsAnswer
	var ips []netip.Addr
	switch {
	case res.nx:
		a = dnsAnswer{rcode: 3, ttl: noTTL}
	case qtype != "A":
		a = dnsAnswer{ttl: noTTL} // no records of that type: NOERROR, empty
	default:
		off := r.rng.IntN(len(res.ips)) // round-robin order
		for i := range res.ips {
			ips = append(ips, res.ips[(off+i)%len(res.ips)])
		}
		a.ttl = res.ttl
		if !forwarded && !res.local && res.ttl > 4 {
			a.ttl = res.ttl - uint32(r.rng.IntN(int(res.ttl*3/4))) // cached: counting down
		}
		for _, c := range res.cnames {
			a.cnames = append(a.cnames, strings.ToLower(c)+".")
			a.rrtypes = append(a.rrtypes, "CNAME")
		}
		for _, ip := range ips {
			a.ips = append(a.ips, ip.String())
			a.rrtypes = append(a.rrtypes, "A")
		}
	}
	reply := p.reverse()
	reply.t = at
	r.emit(g.dnsResponse(reply, q, a))
	reply.t = reply.t.Add(r.jitter(15*time.Microsecond, 80*time.Microsecond))
	r.emit(g.trace(reply, toEndpoint, reasonReply, egress))
	return answered{ips: ips, at: reply.t, expires: reply.t.Add(time.Duration(a.ttl) * time.Second)}
}

// conn is a connection to render.
type conn struct {
	client, server *endpoint
	dport          uint16
	udp            bool
	keepAlive      bool
	names          []string // the server's names in the client's DNS cache
}

// exchange is one round trip: the client's packet and the server's answer.
type exchange struct {
	out, back tcpFlags
}

var (
	tcpFull      = []exchange{{flagSYN, flagSYN | flagACK}, {flagACK | flagPSH, flagACK | flagPSH}, {flagACK | flagFIN, flagACK | flagFIN}}
	tcpKeepAlive = []exchange{{flagACK | flagPSH, flagACK | flagPSH}}
	udpExchange  = []exchange{{}}
)

// connect renders a connection as the agents of the client's and the
// server's nodes report it, starting at t, and returns the time of its last
// flow. The client's agent reports the client's packets at the point they
// leave (to-stack, to-overlay or to-network) and the answers as they are
// delivered (to-endpoint, is_reply true); the server's agent, when the
// server is a pod on another node, the reverse.
func (r *run) connect(t time.Time, c conn) time.Time {
	g := r.g
	cObs := c.client.node // nil when the client is outside the cluster
	var sObs *node
	if c.server.isPod() && c.server.node != cObs {
		sObs = c.server.node
	}
	sameNode := c.server.isPod() && c.server.node == cObs

	out := pkt{src: c.client, dst: c.server, sport: r.ephemeral(), dport: c.dport, udp: c.udp}
	delay, serve := r.oneWay(c.client, c.server, c.udp)
	exchanges := tcpFull
	switch {
	case c.udp:
		exchanges = udpExchange
	case c.keepAlive:
		exchanges = tcpKeepAlive
	}

	if !c.keepAlive {
		if cObs != nil && c.client.w != nil && c.client.w.policy != nil {
			p := out
			p.t, p.obs, p.flags, p.dstNames = t, cObs, exchanges[0].out, c.names
			r.emit(g.policyVerdict(p, flowpb.Verdict_FORWARDED, egress, c.client.w.policy))
			t = t.Add(r.jitter(5*time.Microsecond, 30*time.Microsecond))
		}
	}
	for k, x := range exchanges {
		reason := reasonEstablished
		if k == 0 && !c.keepAlive {
			reason = reasonNew
		}
		// The client's packet.
		p := out
		p.t, p.flags = t, x.out
		if cObs != nil {
			p.obs, p.dstNames = cObs, c.names
			switch {
			case sameNode:
				r.emit(g.trace(p, toEndpoint, reason, ingress))
			case c.client.isHost():
				r.emit(g.trace(p, toNetwork, reason, egress))
			case c.server.isPod():
				r.emit(g.trace(p, toOverlay, reasonUnknown, noDir))
			default:
				r.emit(g.trace(p, toStack, reason, egress))
			}
			p.dstNames = nil
		}
		arrive := t.Add(delay)
		if sObs != nil {
			p.t, p.obs = arrive, sObs
			if k == 0 && !c.keepAlive && c.server.w.policy != nil {
				r.emit(g.policyVerdict(p, flowpb.Verdict_FORWARDED, ingress, c.server.w.policy))
				p.t = p.t.Add(r.jitter(5*time.Microsecond, 30*time.Microsecond))
			}
			r.emit(g.trace(p, toEndpoint, reason, ingress))
		}

		// The server's answer.
		back := out.reverse()
		back.flags = x.back
		back.t = arrive.Add(r.jitter(30*time.Microsecond, 300*time.Microsecond))
		if x.out&flagPSH != 0 || c.udp {
			back.t = arrive.Add(serve)
		}
		if sObs != nil {
			back.obs = sObs
			if c.client.isPod() {
				r.emit(g.trace(back, toOverlay, reasonUnknown, noDir))
			} else {
				r.emit(g.trace(back, toStack, reasonReply, ingress))
			}
		}
		back.t = back.t.Add(delay)
		if cObs != nil {
			back.obs, back.srcNames = cObs, c.names
			if c.client.isHost() {
				r.emit(g.trace(back, fromNetwork, reasonReply, egress))
			} else {
				r.emit(g.trace(back, toEndpoint, reasonReply, egress))
			}
		}
		t = back.t.Add(r.jitter(20*time.Microsecond, 2*time.Millisecond))
		if x.out&flagPSH != 0 {
			t = back.t.Add(r.jitter(5*time.Millisecond, 300*time.Millisecond)) // reading the body
		}
	}
	return t
}

// denied renders a connection attempt that the client's policy drops: the
// SYN and two retransmissions, one and three seconds later, each with a
// policy verdict and a drop event.
func (r *run) denied(t time.Time, c conn) time.Time {
	g := r.g
	p := pkt{obs: c.client.node, src: c.client, dst: c.server, sport: r.ephemeral(), dport: c.dport, udp: c.udp, flags: flagSYN, dstNames: c.names}
	for _, after := range []time.Duration{0, time.Second, 3 * time.Second} {
		p.t = t.Add(after + r.jitter(0, 5*time.Millisecond))
		r.emit(g.policyVerdict(p, flowpb.Verdict_DROPPED, egress, nil))
		p.t = p.t.Add(r.jitter(2*time.Microsecond, 20*time.Microsecond))
		r.emit(g.drop(p))
	}
	return p.t
}

// proxiedHTTP renders an HTTP GET through the L7 proxy of the client's
// node, on a kept-alive connection: the to-proxy trace, then the request and
// response access logs whose target shows identity 2 with pod metadata.
func (r *run) proxiedHTTP(t time.Time, target *endpoint, port uint16, path string) time.Time {
	g, client := r.g, r.src
	p := pkt{t: t, obs: client.node, src: client, dst: target, sport: r.ephemeral(), dport: port, flags: flagACK | flagPSH}
	r.emit(g.trace(p, toProxy, reasonEstablished, egress))

	// The quirk: the proxy's view of the target.
	quirk := &endpoint{
		ip:        target.ip,
		identity:  IdentityWorld,
		labels:    []string{labelWorld},
		namespace: target.namespace,
		pod:       target.pod,
	}
	url := fmt.Sprintf("http://%s:%d%s", target.ip, port, path)
	id := formatUUID(r.rng.Uint64(), r.rng.Uint64())
	const agent = "Prometheus/3.5.0"
	p.dst = quirk
	p.t = p.t.Add(r.jitter(60*time.Microsecond, 400*time.Microsecond))
	r.emit(g.httpRequest(p, url, agent, id))
	latency := r.jitter(3*time.Millisecond, 60*time.Millisecond)
	back := p.reverse()
	back.t = p.t.Add(latency)
	r.emit(g.httpResponse(back, 200, latency, url, agent, id))
	return back.t
}
