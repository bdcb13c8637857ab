package flowgen

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Action is one step of a routine or event: a Connect, a Lookup, a
// CallService, a ProxiedHTTP request or Inbound connections. Each renders
// into the flows Cilium reports for it.
type Action interface {
	validate(workloads map[string]*Workload) error
	do(r *run)
}

// NameSource is how the name of a connection's destination reaches Hubble.
type NameSource int

const (
	// NamesInFlow: the pod looks the name up through the DNS proxy, and the
	// connection's flows carry it in destination_names (source_names on
	// replies), as Hubble reports addresses in the pod's DNS cache.
	NamesInFlow NameSource = iota
	// NamesInDNSOnly: the pod looks the name up through the DNS proxy, but
	// the connection's flows carry only the address: the name is known
	// from the DNS answer the pod received just before.
	NamesInDNSOnly
	// NoNames: no lookup; the address is hard-coded (or, for host-network
	// sources, resolved outside Cilium). Flows carry only the address.
	NoNames
)

// Connect makes connections from the source to a remote host.
type Connect struct {
	To   *Remote
	Port uint16
	// Proto is "TCP" (the default) or "UDP".
	Proto string
	Names NameSource
	// KeepAlive sends a request on an already open connection: a data
	// exchange only, no policy verdict, SYN or FIN.
	KeepAlive bool
	// Denied makes the policy drop the attempt: a policy verdict and a drop
	// event for the SYN and each of its two retransmissions.
	Denied bool
	// Count is the number of connections, spread over Over (a volume
	// burst); 0 means 1. The name is looked up again when its TTL expires.
	Count int
	Over  time.Duration
}

// Lookup resolves a name through the DNS proxy without connecting anywhere.
type Lookup struct {
	Of *Remote
}

// CallService connects to a ClusterIP service of another workload; socket
// load-balancing shows the backend pod as the destination.
type CallService struct {
	// To is the "namespace/name" of a workload with a Service.
	To string
	// Lookup resolves <service>.<namespace>.svc.<domain> first.
	Lookup bool
}

// ProxiedHTTP is an HTTP GET on a kept-alive connection to a pod of another
// workload, through Cilium's L7 proxy. Its L7 flows show the destination pod
// with identity 2 (reserved:world) while still naming its namespace and pod:
// a quirk seen in real Hubble output, in-cluster traffic all the same.
type ProxiedHTTP struct {
	// To is the "namespace/name" of the workload scraped.
	To   string
	Port uint16
	Path string
}

// Inbound is connections from a remote host to the source pod (a webhook
// arriving through a load balancer). Their replies leave the pod towards the
// world with is_reply true.
type Inbound struct {
	From  *Remote
	Port  uint16
	Count int // 0 means 1
}

func (c Connect) validate(map[string]*Workload) error {
	if err := c.To.validate(); err != nil {
		return err
	}
	switch {
	case c.To.NXDomain:
		return fmt.Errorf("cannot connect to %q: it does not resolve", c.To.Name)
	case c.Port == 0:
		return errors.New("Connect.Port must be set")
	case c.Proto != "" && c.Proto != "TCP" && c.Proto != "UDP":
		return fmt.Errorf("Connect.Proto %q must be TCP or UDP", c.Proto)
	case c.Count < 0 || c.Over < 0:
		return errors.New("Connect.Count and Connect.Over must be >= 0")
	case c.Names != NoNames && c.To.Name == "":
		return errors.New("Connect.Names needs a remote with a Name; use NoNames for an address")
	case c.KeepAlive && c.Denied:
		return errors.New("a kept-alive connection cannot be denied")
	}
	return nil
}

func (l Lookup) validate(map[string]*Workload) error {
	if err := l.Of.validate(); err != nil {
		return err
	}
	if l.Of.Name == "" {
		return errors.New("Lookup.Of needs a Name")
	}
	return nil
}

func (c CallService) validate(workloads map[string]*Workload) error {
	w := workloads[c.To]
	if w == nil || w.Service == nil || len(w.Pods) == 0 {
		return fmt.Errorf("CallService.To %q must name a workload with a Service and pods", c.To)
	}
	return nil
}

func (h ProxiedHTTP) validate(workloads map[string]*Workload) error {
	if w := workloads[h.To]; w == nil || len(w.Pods) == 0 {
		return fmt.Errorf("ProxiedHTTP.To %q must name a workload with pods", h.To)
	}
	if h.Port == 0 || !strings.HasPrefix(h.Path, "/") {
		return errors.New("ProxiedHTTP needs a Port and a Path starting with /")
	}
	return nil
}

func (in Inbound) validate(map[string]*Workload) error {
	if err := in.From.validate(); err != nil {
		return err
	}
	if in.From.NXDomain || in.Port == 0 || in.Count < 0 {
		return errors.New("Inbound needs a From with IPs, a Port and Count >= 0")
	}
	return nil
}

// validateHostAction reports whether a node's host network can do a: only
// Connect, since host processes resolve names outside Cilium's DNS proxy.
func validateHostAction(a Action) error {
	c, ok := a.(Connect)
	if !ok {
		return fmt.Errorf("host-network traffic can only be Connect, not %T", a)
	}
	return c.validate(nil)
}

func (c Connect) do(r *run) {
	names := c.Names
	if r.src.isHost() {
		names = NoNames
	}
	n := max(c.Count, 1)
	start, end := r.t, r.t
	var answer answered
	var ready time.Time
	for i := range n {
		t := start
		if n > 1 {
			t = t.Add(c.Over*time.Duration(i)/time.Duration(n) + r.jitter(time.Millisecond, 50*time.Millisecond))
		}
		var ip netip.Addr
		if names == NoNames {
			ip = c.To.IPs[r.rng.IntN(len(c.To.IPs))]
		} else {
			// Resolve again when the answer is about to expire; never
			// connect before the answer is there.
			if answer.ips == nil || !t.Add(time.Second).Before(answer.expires) {
				answer = r.resolve(later(t, ready), c.To)
				ready = answer.at.Add(r.jitter(200*time.Microsecond, 20*time.Millisecond))
			}
			t = later(t, ready)
			ip = answer.ips[r.rng.IntN(len(answer.ips))]
		}
		cn := conn{
			client:    r.src,
			server:    remoteEndpoint(ip, c.To.Identity),
			dport:     c.Port,
			udp:       c.Proto == "UDP",
			keepAlive: c.KeepAlive,
		}
		if names == NamesInFlow {
			cn.names = []string{c.To.spelling(r.rng.IntN)}
		}
		var done time.Time
		if c.Denied {
			done = r.denied(t, cn)
		} else {
			done = r.connect(t, cn)
		}
		end = later(end, done)
	}
	r.t = end
}

func (l Lookup) do(r *run) {
	r.t = r.resolve(r.t, l.Of).at
}

func (c CallService) do(r *run) {
	w := r.g.c.byRef[c.To]
	svc := w.spec.Service
	if c.Lookup {
		name := fmt.Sprintf("%s.%s.svc.%s", svc.Name, w.spec.Namespace, r.g.s.DNS.Domain)
		r.t = r.lookup(r.t, name, "A", resolution{ips: []netip.Addr{svc.IP}, ttl: r.g.s.DNS.TTL, local: true}).at
		r.t = r.t.Add(r.jitter(100*time.Microsecond, 5*time.Millisecond))
	}
	port := svc.TargetPort
	if port == 0 {
		port = svc.Port
	}
	r.t = r.connect(r.t, conn{
		client: r.src,
		server: w.pods[r.rng.IntN(len(w.pods))],
		dport:  port,
	})
}

func (h ProxiedHTTP) do(r *run) {
	target := r.g.c.byRef[h.To].pods[r.rng.IntN(len(r.g.c.byRef[h.To].pods))]
	r.t = r.proxiedHTTP(r.t, target, h.Port, h.Path)
}

func (in Inbound) do(r *run) {
	end := r.t
	for range max(in.Count, 1) {
		t := r.t.Add(r.jitter(0, 2*time.Second))
		client := remoteEndpoint(in.From.IPs[r.rng.IntN(len(in.From.IPs))], in.From.Identity)
		end = later(end, r.connect(t, conn{client: client, server: r.src, dport: in.Port}))
	}
	r.t = end
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
