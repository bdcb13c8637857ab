package baseline

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/egressd/egressd"
)

// ServiceAccountLabel is the label Cilium gives every pod naming its
// service account: the selector of last resort.
const ServiceAccountLabel = "io.cilium.k8s.policy.serviceaccount"

// preferredKeys are the label keys tried first, after the one the app's
// name came from: the keys Kubernetes recommends and charts use to name an
// application, most specific first.
var preferredKeys = []string{
	"app.kubernetes.io/name", "app", "k8s-app", "name",
	"app.kubernetes.io/instance", "app.kubernetes.io/component", "component",
}

// AttachPods returns bs with each app's Pods filled from what its pods
// carried and asked (sets and resolvers, as the store keeps them): the
// selector (see selectPods) and the DNS servers. Apps without any label
// set keep Pods nil unless they asked a resolver, and host apps are left
// alone. Apps are matched by namespace and name, whatever their cluster,
// as Build groups them; bs is not modified.
func AttachPods(bs []egressd.Baseline, sets []egressd.AppLabelSet, resolvers []egressd.AppResolver) []egressd.Baseline {
	p := NewPodFacts(sets, resolvers)
	out := slices.Clone(bs)
	for i, b := range out {
		out[i] = p.Attach(b)
	}
	return out
}

// PodFacts is AttachPods one baseline at a time (Attach), for baselines
// that stream to an Exporter.
type PodFacts struct {
	byApp       map[podKey][][]egressd.Label
	nameLabel   map[podKey]string
	byNamespace map[string][]podKey
	resolvers   map[podKey][]egressd.BaselineResolver
}

type podKey struct{ namespace, app string }

// NewPodFacts indexes the label sets and resolvers of every app.
func NewPodFacts(sets []egressd.AppLabelSet, resolvers []egressd.AppResolver) *PodFacts {
	p := &PodFacts{byApp: map[podKey][][]egressd.Label{}, nameLabel: map[podKey]string{},
		byNamespace: map[string][]podKey{}, resolvers: map[podKey][]egressd.BaselineResolver{}}
	for _, s := range sets {
		k := podKey{s.App.Namespace, s.App.Name}
		if _, ok := p.byApp[k]; !ok {
			p.byNamespace[k.namespace] = append(p.byNamespace[k.namespace], k)
		}
		p.byApp[k] = append(p.byApp[k], s.Labels)
		if from, ok := strings.CutPrefix(s.NameFrom, "label:"); ok {
			p.nameLabel[k] = from
		}
	}
	for _, r := range resolvers {
		k := podKey{r.App.Namespace, r.App.Name}
		p.resolvers[k] = append(p.resolvers[k], egressd.BaselineResolver{Kind: r.Kind, Addr: r.Addr})
	}
	return p
}

// Attach returns b with its Pods filled as AttachPods fills them.
func (p *PodFacts) Attach(b egressd.Baseline) egressd.Baseline {
	k := podKey{b.Namespace, b.App}
	if b.Namespace == egressd.HostNamespace {
		return b
	}
	own, hasSets := p.byApp[k]
	if !hasSets && len(p.resolvers[k]) == 0 {
		return b
	}
	pods := &egressd.BaselinePods{Resolvers: sortResolvers(p.resolvers[k])}
	if hasSets {
		others := map[string][][]egressd.Label{}
		for _, o := range p.byNamespace[k.namespace] {
			if o != k {
				others[o.app] = p.byApp[o]
			}
		}
		pods.Selector, pods.Unselectable = selectPods(b.App, p.nameLabel[k], own, others)
	}
	b.Pods = pods
	return b
}

// sortResolvers sorts resolvers by kind then address and drops repeats.
func sortResolvers(rs []egressd.BaselineResolver) []egressd.BaselineResolver {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b egressd.BaselineResolver) int {
		return cmp.Or(strings.Compare(string(a.Kind), string(b.Kind)), strings.Compare(a.Addr, b.Addr))
	})
	return slices.Compact(rs)
}

// selectPods chooses labels that every set of own carries and that no set of
// others carries all of, or says why there are none. Candidates are the
// labels own's sets share, tried in this order: the label the app's name
// came from (nameKey=app), the preferred keys, the others by key, and the
// service account last. One label that selects only the app is taken
// first; else candidates are added in that order until no other app's pod
// carries them all.
func selectPods(app, nameKey string, own [][]egressd.Label, others map[string][][]egressd.Label) (map[string]string, string) {
	shared := map[string]string{}
	for _, l := range own[0] {
		shared[l.Key] = l.Value
	}
	for _, set := range own[1:] {
		has := map[string]string{}
		for _, l := range set {
			has[l.Key] = l.Value
		}
		for k, v := range shared {
			if w, ok := has[k]; !ok || w != v {
				delete(shared, k)
			}
		}
	}
	if len(shared) == 0 {
		return nil, "its pods share no label (besides per-rollout ones): give them a common label such as app.kubernetes.io/name=" + app
	}
	rank := func(k string) int {
		switch i := slices.Index(preferredKeys, k); {
		case k == nameKey && shared[k] == app:
			return 0
		case k == ServiceAccountLabel:
			return len(preferredKeys) + 2
		case i >= 0:
			return 1 + i
		}
		return len(preferredKeys) + 1
	}
	keys := slices.SortedFunc(maps.Keys(shared), func(a, b string) int {
		return cmp.Or(cmp.Compare(rank(a), rank(b)), strings.Compare(a, b))
	})
	carries := func(set []egressd.Label, sel map[string]string) bool {
		n := 0
		for _, l := range set {
			if v, ok := sel[l.Key]; ok && v == l.Value {
				n++
			}
		}
		return n == len(sel)
	}
	matchesOther := func(sel map[string]string) bool {
		for _, sets := range others {
			for _, set := range sets {
				if carries(set, sel) {
					return true
				}
			}
		}
		return false
	}
	for _, k := range keys {
		if sel := map[string]string{k: shared[k]}; !matchesOther(sel) {
			return sel, ""
		}
	}
	sel := map[string]string{}
	for _, k := range keys {
		sel[k] = shared[k]
		if !matchesOther(sel) {
			return sel, ""
		}
	}
	var otherApps []string
	for name, sets := range others {
		if slices.ContainsFunc(sets, func(set []egressd.Label) bool { return carries(set, shared) }) {
			otherApps = append(otherApps, name)
		}
	}
	slices.Sort(otherApps)
	return nil, fmt.Sprintf("every label its pods share (%s) is also carried by a pod of another app of the namespace (%s): give its pods a label of their own",
		formatLabels(shared), strings.Join(boundList(otherApps, 5), ", "))
}

// formatLabels writes labels as "k=v, ...", sorted.
func formatLabels(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ", ")
}

// boundList returns at most n items of s, and "..." after them when there
// are more.
func boundList(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	return append(slices.Clone(s[:n]), "...")
}

// resolversOf returns p's resolvers; p may be nil.
func resolversOf(p *egressd.BaselinePods) []egressd.BaselineResolver {
	if p == nil {
		return nil
	}
	return p.Resolvers
}

// normalizePods checks and copies a baseline's Pods: selector labels valid
// Kubernetes labels, at most egressd.MaxLabelsPerSet of them, resolvers of a
// known kind with an IP address (none for cluster resolvers), sorted and
// unique.
func normalizePods(p *egressd.BaselinePods) (*egressd.BaselinePods, error) {
	if p == nil {
		return nil, nil
	}
	out := &egressd.BaselinePods{Unselectable: validUTF8(p.Unselectable)}
	if len(p.Selector) > egressd.MaxLabelsPerSet {
		return nil, egressd.Errorf(egressd.EINVALID, "pods.selector has %d labels: at most %d", len(p.Selector), egressd.MaxLabelsPerSet)
	}
	if len(p.Selector) > 0 {
		out.Selector = make(map[string]string, len(p.Selector))
		for k, v := range p.Selector {
			if err := checkSelectorLabel(k, v); err != nil {
				return nil, err
			}
			out.Selector[k] = v
		}
	}
	for _, r := range p.Resolvers {
		nr, err := normalizeResolver(r)
		if err != nil {
			return nil, err
		}
		out.Resolvers = append(out.Resolvers, nr)
	}
	out.Resolvers = sortResolvers(out.Resolvers)
	if len(out.Selector) == 0 && out.Unselectable == "" && len(out.Resolvers) == 0 {
		return nil, nil
	}
	return out, nil
}

// checkSelectorLabel reports whether k=v can be a matchLabels entry.
func checkSelectorLabel(k, v string) error {
	if !validSelectorKey(k) || strings.Contains(k, ":") {
		return egressd.Errorf(egressd.EINVALID, "pods.selector key %s is not a label key: want [prefix/]name such as app.kubernetes.io/name", quote(k))
	}
	if !validLabelValue(v) {
		return egressd.Errorf(egressd.EINVALID, "pods.selector value %s of %s is not a label value: want at most %d letters, digits, '-', '_' or '.', starting and ending with a letter or digit", quote(v), k, maxLabelValueLen)
	}
	return nil
}

// normalizeResolver checks a resolver and writes its address canonically.
func normalizeResolver(r egressd.BaselineResolver) (egressd.BaselineResolver, error) {
	switch r.Kind {
	case egressd.ResolverCluster:
		if r.Addr != "" {
			return r, egressd.Errorf(egressd.EINVALID, "pods.dns: a cluster resolver has no address (got %s): its pods are selected by --dns-selector", quote(r.Addr))
		}
		return r, nil
	case egressd.ResolverNodeLocal, egressd.ResolverExternal:
		addr, err := netip.ParseAddr(r.Addr)
		if err != nil || addr.Zone() != "" {
			return r, egressd.Errorf(egressd.EINVALID, "pods.dns: %s resolver address %s is not an IP address", r.Kind, quote(r.Addr))
		}
		return egressd.BaselineResolver{Kind: r.Kind, Addr: addr.Unmap().String()}, nil
	}
	return r, egressd.Errorf(egressd.EINVALID, "pods.dns: resolver kind %s: want cluster, node-local or external", quote(string(r.Kind)))
}

// podSelector returns the endpointSelector's matchLabels of a policy: the
// baseline's selector, else AppLabel=<app name>.
func podSelector(b egressd.Baseline, opts PolicyOptions) yamlMap {
	if b.Pods == nil || len(b.Pods.Selector) == 0 {
		return yamlMap{{opts.AppLabel, str(b.App)}}
	}
	m := yamlMap{}
	for _, k := range sortedKeys(b.Pods.Selector) {
		m = append(m, yamlKV{k, str(b.Pods.Selector[k])})
	}
	return m
}

// dnsRules returns the rules that allow the app's DNS on port 53 through
// Cilium's DNS proxy (rules.dns matchPattern "*", which toFQDNs needs), to
// the resolvers its pods asked: cluster DNS pods by opts.DNSSelector,
// node-local and external resolvers by address (toCIDR /32 or /128; Cilium
// rejects toEndpoints and toCIDR in one rule). Without known resolvers the
// rule allows the cluster DNS pods, as before egressd recorded them.
func dnsRules(p *egressd.BaselinePods, opts PolicyOptions) yamlList {
	toPorts := yamlKV{"toPorts", yamlList{yamlMap{
		{"ports", portList([]egressd.Port{{Number: 53, Protocol: egressd.ProtoTCP}, {Number: 53, Protocol: egressd.ProtoUDP}})},
		{"rules", yamlMap{{"dns", yamlList{yamlMap{{"matchPattern", str("*")}}}}}},
	}}}
	cluster := len(resolversOf(p)) == 0
	var cidrs yamlList
	for _, r := range resolversOf(p) {
		if r.Kind == egressd.ResolverCluster {
			cluster = true
			continue
		}
		if addr, err := netip.ParseAddr(r.Addr); err == nil {
			cidrs = append(cidrs, str(netip.PrefixFrom(addr, addr.BitLen()).String()))
		}
	}
	var rules yamlList
	if cluster {
		dnsLabels := yamlMap{}
		for _, k := range sortedKeys(opts.DNSSelector) {
			dnsLabels = append(dnsLabels, yamlKV{k, str(opts.DNSSelector[k])})
		}
		rules = append(rules, yamlMap{{"toEndpoints", yamlList{yamlMap{{"matchLabels", dnsLabels}}}}, toPorts})
	}
	if len(cidrs) > 0 {
		rules = append(rules, yamlMap{{"toCIDR", cidrs}, toPorts})
	}
	return rules
}
