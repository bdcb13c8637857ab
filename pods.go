package egressd

import (
	"strings"
	"time"
)

// Bounds on the pod labels kept per app. Anyone who can create a pod sets
// its labels, so what is stored of them is bounded like everything else read
// from a flow: the labels beyond a bound are counted and logged, never
// stored.
const (
	// MaxLabelsPerSet is how many labels of one pod are kept (the first,
	// in key order).
	MaxLabelsPerSet = 32
	// MaxLabelSetsPerApp is how many distinct label sets are kept per app.
	MaxLabelSetsPerApp = 16
	// MaxLabelKeyLen and MaxLabelValueLen are Kubernetes' limits: a
	// prefix of at most 253 characters, '/', a name of at most 63; a value
	// of at most 63. Longer labels cannot exist on a real pod and are
	// dropped.
	MaxLabelKeyLen   = 253 + 1 + 63
	MaxLabelValueLen = 63
	// MaxResolversPerApp is how many DNS resolvers are kept per app.
	MaxResolversPerApp = 8
)

// Label is one pod label as Cilium reports it, without its "k8s:" source.
type Label struct {
	Key, Value string
}

// String returns "key=value".
func (l Label) String() string { return l.Key + "=" + l.Value }

// LabelLines writes a label set as "key=value" lines, each ending with a
// newline (labels never hold one): a set's identity, and how it is stored.
func LabelLines(labels []Label) string {
	n := 0
	for _, l := range labels {
		n += len(l.Key) + len(l.Value) + 2
	}
	b := make([]byte, 0, n)
	for _, l := range labels {
		b = append(b, l.Key...)
		b = append(b, '=')
		b = append(b, l.Value...)
		b = append(b, '\n')
	}
	return string(b)
}

// ParseLabelLines reads what LabelLines writes.
func ParseLabelLines(s string) []Label {
	var out []Label
	for line := range strings.SplitSeq(s, "\n") {
		if line == "" {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		out = append(out, Label{Key: k, Value: v})
	}
	return out
}

// AppLabelSet is the set of labels one or more of an app's pods carried,
// without the labels each rollout or pod changes (pod-template-hash and
// the like), sorted by key. NameFrom says where the app's name came from:
// "workload", "label:KEY" or "pod".
type AppLabelSet struct {
	App       App
	Labels    []Label
	NameFrom  string
	FirstSeen time.Time
	LastSeen  time.Time
}

// ResolverKind says what kind of DNS server an app asked.
type ResolverKind string

// Kinds of DNS resolvers.
const (
	// ResolverCluster is a DNS server running as a pod: CoreDNS, kube-dns.
	ResolverCluster ResolverKind = "cluster"
	// ResolverNodeLocal is a cache on the node at a link-local address:
	// NodeLocal DNSCache (169.254.20.10 by default).
	ResolverNodeLocal ResolverKind = "node-local"
	// ResolverExternal is a server outside the cluster, by address.
	ResolverExternal ResolverKind = "external"
)

// AppResolver is a DNS server an app's pods asked. Addr is the server's
// address for node-local and external resolvers, empty for cluster ones
// (their pods' addresses change).
type AppResolver struct {
	App      App
	Kind     ResolverKind
	Addr     string
	LastSeen time.Time
}
