package flowgen

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Scenario describes a cluster and the traffic of its workloads over a time
// window. It is plain data: build one with HomeLab and adjust its fields, or
// write one from scratch. The zero value of an optional field means "none".
type Scenario struct {
	// Start is the beginning of the window; every flow's time is in
	// [Start, Start+Duration).
	Start    time.Time
	Duration time.Duration
	// Seed selects addresses, identities, ports, jitter, answers and UUIDs.
	// The same scenario with the same seed always generates the same flows.
	Seed int64
	// Cluster is the Cilium cluster name: the io.cilium.k8s.policy.cluster
	// label, Endpoint.cluster_name and the prefix of node_name.
	Cluster string
	// HubbleVersion is what every flow carries in emitter.version.
	HubbleVersion string
	// PodCIDR holds the pod addresses; each node gets the /24 at its index.
	PodCIDR netip.Prefix
	Nodes   []Node
	// DNS is the cluster DNS service that pods query through the DNS proxy.
	DNS       DNS
	Workloads []Workload
	// Extra is traffic planted on top of the routines: anomalies for
	// detection tests. Adding events changes no other flow.
	Extra []Event
	// DuplicateRate is the share of flows that Relay delivers twice, within
	// a few seconds, with identical content (Relay replays on reconnect, and
	// since is inclusive).
	DuplicateRate float64
	// LostEvents is how many lost_events responses the agents report.
	LostEvents int
	// NodeReconnects is how many times Relay reports a node unavailable and
	// then connected again (node_status responses).
	NodeReconnects int
}

// Node is a Kubernetes node running a Cilium agent.
type Node struct {
	// Name is the Kubernetes node name, without the cluster prefix.
	Name string
	IP   netip.Addr
	// Labels are the node's Kubernetes labels, as flows carry them in
	// node_labels ("kubernetes.io/hostname=k8s-node-1").
	Labels []string
	// Routines are the node's own host-network traffic (source identity 1,
	// reserved:host). Host processes resolve names outside Cilium's DNS
	// proxy, so their traffic has no DNS flows and no destination names.
	Routines []Routine
}

// DNS is the cluster DNS service.
type DNS struct {
	// ServiceIP is the kube-dns service address (pods see it in
	// resolv.conf; socket load-balancing shows the server pod in flows).
	ServiceIP netip.Addr
	// Server is the "namespace/name" of the workload answering, CoreDNS.
	Server string
	// Upstreams are the resolvers CoreDNS forwards to.
	Upstreams []netip.Addr
	// ForwardRate is the share of lookups of external names that miss the
	// CoreDNS cache and are forwarded upstream.
	ForwardRate float64
	// Domain is the cluster domain, "cluster.local".
	Domain string
	// TTL is the TTL of answers for cluster-local names.
	TTL uint32
}

// Workload is a set of pods with one owner (a Deployment, StatefulSet,
// DaemonSet, CronJob or Job) and what they do.
type Workload struct {
	Namespace string
	// Name is the owner's name; Hubble reports it in workloads[0].name.
	Name string
	// Kind is the owner's kind: Deployment, StatefulSet, DaemonSet, CronJob
	// or Job. A CronJob's pods are created per run of its first routine.
	Kind string
	// Labels are the pod's identity-relevant labels as "key=value", without
	// the "k8s:" source prefix. The namespace, cluster, service account and
	// namespace-name labels are added by the generator.
	Labels         []string
	ServiceAccount string
	// Pods are the running pods. Leave it empty for a CronJob.
	Pods []Pod
	// HideWorkloads leaves the workloads field out of every flow, as agents
	// do when they cannot resolve the pod's owner.
	HideWorkloads bool
	// Policy names the CiliumNetworkPolicy that selects the pods. Pods with
	// a policy get policy-verdict flows; pods without one get none. (Their
	// lookups still go through the DNS proxy, which in a real cluster takes
	// a policy with a DNS rule.)
	Policy string
	// Service is the ClusterIP service in front of the pods, if any.
	Service *Service
	// SearchDomains makes the pods' resolver walk the search path first
	// (ndots:5): each external name is preceded by NXDOMAIN lookups of
	// name.<ns>.svc.<domain>, name.svc.<domain> and name.<domain>.
	SearchDomains bool
	// DualStack makes the pods' resolver ask for AAAA after A, as
	// getaddrinfo does; the answers have no AAAA records.
	DualStack bool
	Routines  []Routine
}

// Pod is a running pod of a workload.
type Pod struct {
	Name string
	// Node is the name of the node the pod runs on.
	Node string
}

// Service is a ClusterIP service.
type Service struct {
	Name string
	IP   netip.Addr
	Port uint16
	// TargetPort is the container port; 0 means Port.
	TargetPort uint16
}

// Routine is something a workload or node does on a schedule: at At after
// midnight UTC and every Every after that, delayed by up to Jitter.
type Routine struct {
	Every  time.Duration
	At     time.Duration
	Jitter time.Duration
	// Do is done in order, a fraction of a second apart.
	Do []Action
}

// Event is traffic planted at one moment, on top of the routines.
type Event struct {
	At time.Time
	// Source is the "namespace/name" of a workload (one of its pods acts;
	// a CronJob gets a new Job pod, as when triggered by hand) or
	// "host/<node>" for a node's host-network traffic.
	Source string
	Do     []Action
}

// Kinds of workload owners, as Hubble reports them in workloads[0].kind.
const (
	KindDeployment  = "Deployment"
	KindStatefulSet = "StatefulSet"
	KindDaemonSet   = "DaemonSet"
	KindCronJob     = "CronJob"
	KindJob         = "Job"
)

// hostSourcePrefix is how an Event names a node's host-network traffic.
const hostSourcePrefix = "host/"

// ref returns "namespace/name".
func (w *Workload) ref() string { return w.Namespace + "/" + w.Name }

// Validate reports the first problem that would keep Generate from rendering
// the scenario, naming the field.
func (s Scenario) Validate() error {
	switch {
	case s.Start.IsZero():
		return errors.New("flowgen: Scenario.Start must be set")
	case s.Duration <= 0:
		return errors.New("flowgen: Scenario.Duration must be > 0")
	case s.Cluster == "":
		return errors.New("flowgen: Scenario.Cluster must be set")
	case !s.PodCIDR.IsValid() || !s.PodCIDR.Addr().Is4() || s.PodCIDR.Bits() > 16:
		return errors.New("flowgen: Scenario.PodCIDR must be an IPv4 prefix of /16 or larger")
	case len(s.Nodes) == 0:
		return errors.New("flowgen: Scenario.Nodes must not be empty")
	case len(s.Nodes) > 256:
		return errors.New("flowgen: Scenario.Nodes must have at most 256 nodes")
	case s.DuplicateRate < 0 || s.DuplicateRate > 0.5:
		return errors.New("flowgen: Scenario.DuplicateRate must be in [0, 0.5]")
	case s.LostEvents < 0:
		return errors.New("flowgen: Scenario.LostEvents must be >= 0")
	case s.NodeReconnects < 0:
		return errors.New("flowgen: Scenario.NodeReconnects must be >= 0")
	}
	nodes := make(map[string]bool, len(s.Nodes))
	for i, n := range s.Nodes {
		if n.Name == "" || strings.Contains(n.Name, "/") {
			return fmt.Errorf("flowgen: Scenario.Nodes[%d].Name %q must be a node name", i, n.Name)
		}
		if nodes[n.Name] {
			return fmt.Errorf("flowgen: Scenario.Nodes[%d].Name %q is not unique", i, n.Name)
		}
		nodes[n.Name] = true
		if !n.IP.Is4() {
			return fmt.Errorf("flowgen: Scenario.Nodes[%d].IP must be an IPv4 address", i)
		}
		for j, r := range n.Routines {
			if err := r.validate(); err != nil {
				return fmt.Errorf("flowgen: Scenario.Nodes[%d].Routines[%d]: %w", i, j, err)
			}
			for k, a := range r.Do {
				if err := validateHostAction(a); err != nil {
					return fmt.Errorf("flowgen: Scenario.Nodes[%d].Routines[%d].Do[%d]: %w", i, j, k, err)
				}
			}
		}
	}
	workloads := make(map[string]*Workload, len(s.Workloads))
	pods := make(map[string]bool)
	for i := range s.Workloads {
		w := &s.Workloads[i]
		if err := w.validate(nodes); err != nil {
			return fmt.Errorf("flowgen: Scenario.Workloads[%d] (%s): %w", i, w.ref(), err)
		}
		if workloads[w.ref()] != nil {
			return fmt.Errorf("flowgen: Scenario.Workloads[%d]: %s is not unique", i, w.ref())
		}
		workloads[w.ref()] = w
		for _, p := range w.Pods {
			if pods[w.Namespace+"/"+p.Name] {
				return fmt.Errorf("flowgen: Scenario.Workloads[%d]: pod %s/%s is not unique", i, w.Namespace, p.Name)
			}
			pods[w.Namespace+"/"+p.Name] = true
		}
	}
	if s.DNS.Domain == "" {
		return errors.New("flowgen: Scenario.DNS.Domain must be set")
	}
	if !s.DNS.ServiceIP.Is4() {
		return errors.New("flowgen: Scenario.DNS.ServiceIP must be an IPv4 address")
	}
	if s.DNS.ForwardRate < 0 || s.DNS.ForwardRate > 1 {
		return errors.New("flowgen: Scenario.DNS.ForwardRate must be in [0, 1]")
	}
	server := workloads[s.DNS.Server]
	if server == nil || len(server.Pods) == 0 {
		return fmt.Errorf("flowgen: Scenario.DNS.Server %q must name a workload with pods", s.DNS.Server)
	}
	if len(s.DNS.Upstreams) == 0 {
		return errors.New("flowgen: Scenario.DNS.Upstreams must not be empty")
	}
	check := func(where string, acts []Action) error {
		for k, a := range acts {
			if a == nil {
				return fmt.Errorf("%s.Do[%d] must not be nil", where, k)
			}
			if err := a.validate(workloads); err != nil {
				return fmt.Errorf("%s.Do[%d]: %w", where, k, err)
			}
		}
		return nil
	}
	for i := range s.Workloads {
		w := &s.Workloads[i]
		for j, r := range w.Routines {
			if err := check(fmt.Sprintf("flowgen: Scenario.Workloads[%d].Routines[%d]", i, j), r.Do); err != nil {
				return err
			}
		}
	}
	for i, e := range s.Extra {
		where := fmt.Sprintf("flowgen: Scenario.Extra[%d]", i)
		if e.At.IsZero() {
			return fmt.Errorf("%s.At must be set", where)
		}
		if node, ok := strings.CutPrefix(e.Source, hostSourcePrefix); ok && nodes[node] {
			for k, a := range e.Do {
				if err := validateHostAction(a); err != nil {
					return fmt.Errorf("%s.Do[%d]: %w", where, k, err)
				}
			}
			continue
		}
		w := workloads[e.Source]
		if w == nil {
			return fmt.Errorf("%s.Source %q must be namespace/name of a workload or host/<node>", where, e.Source)
		}
		if err := check(where, e.Do); err != nil {
			return err
		}
	}
	return nil
}

func (w *Workload) validate(nodes map[string]bool) error {
	switch {
	case w.Namespace == "" || w.Name == "":
		return errors.New("Namespace and Name must be set")
	case w.Namespace == "host":
		return errors.New(`Namespace "host" is reserved for node traffic`)
	case w.ServiceAccount == "":
		return errors.New("ServiceAccount must be set")
	}
	switch w.Kind {
	case KindDeployment, KindStatefulSet, KindDaemonSet, KindJob:
		if len(w.Pods) == 0 {
			return errors.New("Pods must not be empty")
		}
	case KindCronJob:
		if len(w.Pods) != 0 {
			return errors.New("Pods must be empty for a CronJob: each run creates its pod")
		}
		if len(w.Routines) != 1 {
			return errors.New("a CronJob must have exactly one routine, its schedule")
		}
	default:
		return fmt.Errorf("Kind %q must be Deployment, StatefulSet, DaemonSet, CronJob or Job", w.Kind)
	}
	for _, p := range w.Pods {
		if p.Name == "" {
			return errors.New("pod names must be set")
		}
		if !nodes[p.Node] {
			return fmt.Errorf("pod %s: Node %q is not a scenario node", p.Name, p.Node)
		}
	}
	for _, l := range w.Labels {
		if !strings.Contains(l, "=") {
			return fmt.Errorf("label %q must be key=value", l)
		}
	}
	if w.Service != nil && (w.Service.Name == "" || !w.Service.IP.Is4() || w.Service.Port == 0) {
		return errors.New("Service needs a Name, an IPv4 IP and a Port")
	}
	for j, r := range w.Routines {
		if err := r.validate(); err != nil {
			return fmt.Errorf("Routines[%d]: %w", j, err)
		}
	}
	return nil
}

func (r *Routine) validate() error {
	switch {
	case r.Every <= 0:
		return errors.New("Every must be > 0")
	case r.At < 0 || r.Jitter < 0:
		return errors.New("At and Jitter must be >= 0")
	case len(r.Do) == 0:
		return errors.New("Do must not be empty")
	}
	return nil
}
