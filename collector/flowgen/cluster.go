package flowgen

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"

	flowpb "github.com/cilium/cilium/api/v1/flow"
)

// Cluster-wide identities are drawn from [clusterIdentityFirst,
// clusterIdentityFirst+clusterIdentityLength), where real clusters' look.
const (
	clusterIdentityFirst  = 1000
	clusterIdentityLength = 64000
)

// cluster is a scenario resolved into addresses, identities, endpoint IDs
// and interfaces. Everything is allocated from one random source in the
// order of the scenario's nodes and workloads, so it depends only on the
// scenario and its seed.
type cluster struct {
	name      string
	nodes     []*node
	nodeByKey map[string]*node
	workloads []*workload
	byRef     map[string]*workload
	dnsPods   []*endpoint
	gwMAC     string

	alloc      *rand.Rand
	usedIP     map[netip.Addr]bool
	usedID     map[uint32]bool
	identities map[string]uint32 // label set -> identity
	podCIDR    netip.Prefix
}

// node is a resolved Node.
type node struct {
	spec   *Node
	index  int
	abs    string // node_name as Hubble reports it: "<cluster>/<node>"
	labels []string
	mac    string
	host   *endpoint
	usedEP map[uint32]bool
	usedIf map[uint32]bool
}

// workload is a resolved Workload.
type workload struct {
	spec   *Workload
	pods   []*endpoint
	policy []*flowpb.Policy // rules that allow its traffic; nil without a policy
}

// endpoint is one side of a flow: a pod, a node's host network or a remote
// address.
type endpoint struct {
	ip        netip.Addr
	node      *node // node the pod or host runs on; nil for remote addresses
	epID      uint32
	identity  uint32
	labels    []string
	namespace string
	pod       string
	workloads []*flowpb.Workload
	cluster   string
	mac       string // the pod's eth0
	peerMAC   string // the host side of the pod's veth pair
	ifindex   uint32
	ifname    string
	w         *workload
}

// isPod reports whether the endpoint is a pod of the cluster.
func (e *endpoint) isPod() bool { return e.pod != "" && e.node != nil }

// isHost reports whether the endpoint is a node's host network.
func (e *endpoint) isHost() bool { return e.node != nil && e.pod == "" }

// proto returns the endpoint as Hubble on node obs reports it: endpoint ID
// and workloads are known only for endpoints local to the observing agent.
func (e *endpoint) proto(obs *node) *flowpb.Endpoint {
	pe := &flowpb.Endpoint{
		Identity:    e.identity,
		ClusterName: e.cluster,
		Namespace:   e.namespace,
		Labels:      slices.Clone(e.labels),
		PodName:     e.pod,
	}
	if e.node == obs && e.epID != 0 {
		pe.ID = e.epID
		for _, w := range e.workloads {
			pe.Workloads = append(pe.Workloads, &flowpb.Workload{Name: w.Name, Kind: w.Kind})
		}
	}
	return pe
}

// remoteEndpoint returns an address outside the cluster's pods.
func remoteEndpoint(ip netip.Addr, id Identity) *endpoint {
	return &endpoint{ip: ip, identity: id.ID, labels: slices.Clone(id.Labels)}
}

func newCluster(s *Scenario) *cluster {
	c := &cluster{
		name:       s.Cluster,
		nodeByKey:  make(map[string]*node, len(s.Nodes)),
		byRef:      make(map[string]*workload, len(s.Workloads)),
		alloc:      newRand(s.Seed, "cluster"),
		usedIP:     make(map[netip.Addr]bool),
		usedID:     make(map[uint32]bool),
		identities: make(map[string]uint32),
		podCIDR:    s.PodCIDR,
	}
	c.gwMAC = c.newMAC()
	for i := range s.Nodes {
		spec := &s.Nodes[i]
		n := &node{
			spec:   spec,
			index:  i,
			abs:    absoluteNodeName(s.Cluster, spec.Name),
			labels: sortedLabels(spec.Labels),
			mac:    c.newMAC(),
			usedEP: make(map[uint32]bool),
			usedIf: make(map[uint32]bool),
		}
		n.host = &endpoint{
			ip:       spec.IP,
			node:     n,
			identity: IdentityHost,
			labels:   []string{labelHost},
			mac:      n.mac,
			peerMAC:  c.gwMAC,
		}
		c.usedIP[spec.IP] = true
		c.nodes = append(c.nodes, n)
		c.nodeByKey[spec.Name] = n
	}
	for i := range s.Workloads {
		spec := &s.Workloads[i]
		w := &workload{spec: spec}
		if spec.Policy != "" {
			w.policy = []*flowpb.Policy{c.newPolicy(spec.Namespace, spec.Policy)}
		}
		for _, p := range spec.Pods {
			w.pods = append(w.pods, c.newPod(w, p.Name, c.nodeByKey[p.Node], nil))
		}
		c.workloads = append(c.workloads, w)
		c.byRef[spec.ref()] = w
	}
	c.dnsPods = c.byRef[s.DNS.Server].pods
	return c
}

// absoluteNodeName is node_name as Cilium writes it: prefixed with the
// cluster name unless the cluster is called "default".
func absoluteNodeName(cluster, name string) string {
	if cluster == "" || cluster == "default" {
		return name
	}
	return cluster + "/" + name
}

// newPod allocates a pod of w on n; extra are labels of this pod only (a
// Job's job-name).
func (c *cluster) newPod(w *workload, name string, n *node, extra []string) *endpoint {
	spec := w.spec
	raw := make([]string, 0, len(spec.Labels)+len(extra)+4)
	for _, l := range slices.Concat(spec.Labels, extra) {
		raw = append(raw, "k8s:"+l)
	}
	raw = append(raw,
		"k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name="+spec.Namespace,
		"k8s:io.cilium.k8s.policy.cluster="+c.name,
		"k8s:io.cilium.k8s.policy.serviceaccount="+spec.ServiceAccount,
		"k8s:io.kubernetes.pod.namespace="+spec.Namespace,
	)
	labels := sortedLabels(raw)
	key := strings.Join(labels, "\n")
	id, ok := c.identities[key]
	if !ok {
		id = c.newIdentity()
		c.identities[key] = id
	}
	e := &endpoint{
		ip:        c.newPodIP(n),
		node:      n,
		epID:      c.newEndpointID(n),
		identity:  id,
		labels:    labels,
		namespace: spec.Namespace,
		pod:       name,
		cluster:   c.name,
		mac:       c.newMAC(),
		peerMAC:   c.newMAC(),
		ifindex:   c.newIfindex(n),
		ifname:    fmt.Sprintf("lxc%012x", c.alloc.Uint64()&(1<<48-1)),
		w:         w,
	}
	if !spec.HideWorkloads {
		e.workloads = []*flowpb.Workload{{Name: spec.Name, Kind: spec.Kind}}
	}
	return e
}

func (c *cluster) newPodIP(n *node) netip.Addr {
	base := c.podCIDR.Addr().As4()
	for {
		ip := netip.AddrFrom4([4]byte{base[0], base[1], byte(n.index), byte(2 + c.alloc.IntN(252))})
		if !c.usedIP[ip] {
			c.usedIP[ip] = true
			return ip
		}
	}
}

func (c *cluster) newIdentity() uint32 {
	for {
		id := uint32(clusterIdentityFirst + c.alloc.IntN(clusterIdentityLength))
		if !c.usedID[id] {
			c.usedID[id] = true
			return id
		}
	}
}

func (c *cluster) newEndpointID(n *node) uint32 {
	for {
		id := uint32(1 + c.alloc.IntN(4095))
		if !n.usedEP[id] {
			n.usedEP[id] = true
			return id
		}
	}
}

func (c *cluster) newIfindex(n *node) uint32 {
	for {
		i := uint32(8 + c.alloc.IntN(400))
		if !n.usedIf[i] {
			n.usedIf[i] = true
			return i
		}
	}
}

// newMAC returns a locally administered unicast MAC address.
func (c *cluster) newMAC() string {
	var b [6]byte
	v := c.alloc.Uint64()
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	b[0] = b[0]&^1 | 2
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5])
}

// newPolicy returns the rule a policy verdict names in egress_allowed_by.
func (c *cluster) newPolicy(namespace, name string) *flowpb.Policy {
	return &flowpb.Policy{
		Name:      name,
		Namespace: namespace,
		Kind:      "CiliumNetworkPolicy",
		Revision:  uint64(2 + c.alloc.IntN(60)),
		Labels: []string{
			"k8s:io.cilium.k8s.policy.derived-from=CiliumNetworkPolicy",
			"k8s:io.cilium.k8s.policy.name=" + name,
			"k8s:io.cilium.k8s.policy.namespace=" + namespace,
			"k8s:io.cilium.k8s.policy.uid=" + formatUUID(c.alloc.Uint64(), c.alloc.Uint64()),
		},
	}
}

func sortedLabels(in []string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out)
}
