package collector

import (
	"slices"
	"strings"
	"time"

	"github.com/egressd/egressd"
)

// PodSink is a Sink that also keeps what policy generation needs to know of
// an app's pods (the Aggregator): the label sets they carried and the DNS
// servers they asked.
type PodSink interface {
	ObserveLabelSet(l egressd.AppLabelSet)
	ObserveResolver(r egressd.AppResolver)
}

// perRolloutLabels are labels whose value changes with each rollout, pod or
// run, so that no policy can select an app by them: Kubernetes sets them on
// the pods of Deployments (pod-template-hash), StatefulSets and DaemonSets
// (controller-revision-hash, pod-template-generation, the pod name and
// index) and Jobs (the controller's uid and the job's name, which a CronJob
// changes at every run). Cilium's own labels of the namespace and cluster
// say nothing an endpointSelector in the app's namespace can use.
var perRolloutLabels = []string{
	"pod-template-hash",
	"controller-revision-hash",
	"pod-template-generation",
	"statefulset.kubernetes.io/pod-name",
	"apps.kubernetes.io/pod-index",
	"statefulset.kubernetes.io/pod-index",
	"controller-uid",
	"job-name",
	"batch.kubernetes.io/controller-uid",
	"batch.kubernetes.io/job-name",
	"batch.kubernetes.io/job-completion-index",
	"io.kubernetes.pod.namespace",
	"io.cilium.k8s.policy.cluster",
}

// perRolloutPrefixes are label key prefixes dropped like perRolloutLabels:
// Cilium copies the namespace's labels onto its pods under this prefix.
var perRolloutPrefixes = []string{"io.cilium.k8s.namespace.labels."}

// Bounds of the memory that tracks which pods' labels were sent. When a
// map is full it is cleared: the labels are sent again, which the
// aggregator and the database merge.
const (
	maxLabelPods = 100_000
	maxLabelApps = 100_000
)

// podFactsRefresh is how often, in flow time, a pod's labels and an app's
// resolvers are sent again while they are still seen: their stored
// last_seen then follows a pod that runs for weeks, so the window of an
// export finds it.
const podFactsRefresh = int64(time.Hour)

// podFacts is what the pipeline remembers to send each pod's labels and each
// app's resolvers once, and to bound them per app.
type podFacts struct {
	seenPods  map[[2]string]int64 // namespace, pod -> flow time sent, Unix ns
	appSets   map[egressd.App]map[string]struct{}
	resolvers map[egressd.App][]resolverSent
	dropLog   rateLimited
}

type resolverKey struct {
	kind egressd.ResolverKind
	addr string
}

type resolverSent struct {
	resolverKey
	at int64 // flow time sent, Unix ns
}

func newPodFacts() *podFacts {
	return &podFacts{
		seenPods:  make(map[[2]string]int64),
		appSets:   make(map[egressd.App]map[string]struct{}),
		resolvers: make(map[egressd.App][]resolverSent),
	}
}

// observeLabels sends the labels of the pod of o to the pipeline's pod
// sinks, once per pod and podFactsRefresh of flow time. raw is the encoded
// source endpoint.
func (p *Pipeline) observeLabels(o *egressd.Observation, raw []byte, nameFrom string) {
	if len(p.podSinks) == 0 || o.Pod == "" || o.App.Namespace == egressd.HostNamespace {
		return
	}
	k := [2]string{o.App.Namespace, o.Pod}
	now := o.Time.UnixNano()
	if at, ok := p.facts.seenPods[k]; ok && now-at < podFactsRefresh && now >= at {
		return
	}
	if len(p.facts.seenPods) >= maxLabelPods {
		clear(p.facts.seenPods)
	}
	p.facts.seenPods[k] = now
	labels, dropped := podLabels(raw)
	if dropped > 0 {
		p.metrics.LabelsDropped.Add(float64(dropped))
	}
	key := labelSetKey(labels)
	sets := p.facts.appSets[o.App]
	if _, ok := sets[key]; !ok {
		if sets == nil {
			if len(p.facts.appSets) >= maxLabelApps {
				clear(p.facts.appSets)
			}
			sets = make(map[string]struct{})
			p.facts.appSets[o.App] = sets
		}
		if len(sets) >= egressd.MaxLabelSetsPerApp {
			p.metrics.LabelSetsDropped.Inc()
			if suppressed, ok := p.facts.dropLog.allow(o.Time.UnixNano(), clockLogInterval); ok {
				p.log.Warn("app_label_sets_dropped", "app", o.App.String(), "pod", o.Pod,
					"max_label_sets_per_app", egressd.MaxLabelSetsPerApp, "dropped_since_last_line", suppressed)
			}
			return
		}
		sets[key] = struct{}{}
	}
	l := egressd.AppLabelSet{App: o.App, Labels: labels, NameFrom: nameFrom, FirstSeen: o.Time, LastSeen: o.Time}
	for _, s := range p.podSinks {
		s.ObserveLabelSet(l)
	}
}

// labelSetKey is a set's identity.
func labelSetKey(labels []egressd.Label) string { return egressd.LabelLines(labels) }

// podLabels returns the Kubernetes labels ("k8s:key=value") of the encoded
// endpoint raw that can select an app's pods, sorted by key, the first of a
// repeated key kept, at most egressd.MaxLabelsPerSet of them, and how many
// it dropped for a bound or an invalid key or value. Per-rollout labels are
// left out without being counted.
func podLabels(raw []byte) ([]egressd.Label, int) {
	var (
		out     []egressd.Label
		dropped int
	)
	for pos := 0; pos < len(raw); {
		tag, _, v, n := consumeField(raw[pos:])
		if n < 0 {
			break
		}
		pos += n
		if tag != epLabels<<3|wireBytes {
			continue
		}
		s, ok := strings.CutPrefix(string(v), "k8s:")
		if !ok {
			continue
		}
		key, value, _ := strings.Cut(s, "=")
		if slices.Contains(perRolloutLabels, key) || hasAnyPrefix(key, perRolloutPrefixes) {
			continue
		}
		if !ValidLabel(key, value) {
			dropped++
			continue
		}
		out = append(out, egressd.Label{Key: key, Value: value})
	}
	slices.SortStableFunc(out, func(a, b egressd.Label) int { return strings.Compare(a.Key, b.Key) })
	out = slices.CompactFunc(out, func(a, b egressd.Label) bool { return a.Key == b.Key })
	if len(out) > egressd.MaxLabelsPerSet {
		dropped += len(out) - egressd.MaxLabelsPerSet
		out = out[:egressd.MaxLabelsPerSet:egressd.MaxLabelsPerSet]
	}
	return out, dropped
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// ValidLabel reports whether key and value form a Kubernetes label: a key
// of an optional DNS subdomain prefix and "/" and a name of at most 63
// letters, digits, '-', '_' or '.', starting and ending with a letter or
// digit; a value empty or such a name.
func ValidLabel(key, value string) bool {
	if len(key) > egressd.MaxLabelKeyLen || len(value) > egressd.MaxLabelValueLen {
		return false
	}
	prefix, name, ok := strings.Cut(key, "/")
	if !ok {
		prefix, name = "", key
	} else if len(prefix) > 253 || !egressd.ValidPodName(prefix) {
		return false
	}
	if len(name) > egressd.MaxLabelValueLen || !egressd.ValidAppName(name) {
		return false
	}
	return value == "" || egressd.ValidAppName(value)
}

// observeResolver sends the DNS server that the DNS question f asked to the
// pipeline's pod sinks, once per app, server and podFactsRefresh of flow
// time.
func (p *Pipeline) observeResolver(o *egressd.Observation, f *decodedFlow) {
	if len(p.podSinks) == 0 {
		return
	}
	var k resolverKey
	ip, ok := parseAddr(f.ipDest)
	switch {
	case len(f.dest.namespace) > 0 || len(f.dest.podName) > 0:
		k.kind = egressd.ResolverCluster
	case !ok:
		return
	case ip.IsLinkLocalUnicast() || f.dest.reserved&resHost != 0 || ip.IsLoopback():
		k = resolverKey{kind: egressd.ResolverNodeLocal, addr: ip.Unmap().String()}
	default:
		k = resolverKey{kind: egressd.ResolverExternal, addr: ip.Unmap().String()}
	}
	now := o.Time.UnixNano()
	known := p.facts.resolvers[o.App]
	i := slices.IndexFunc(known, func(r resolverSent) bool { return r.resolverKey == k })
	switch {
	case i >= 0 && now-known[i].at < podFactsRefresh && now >= known[i].at:
		return
	case i >= 0:
		known[i].at = now
	case len(known) >= egressd.MaxResolversPerApp:
		p.metrics.ResolversDropped.Inc()
		return
	default:
		if known == nil && len(p.facts.resolvers) >= maxLabelApps {
			clear(p.facts.resolvers)
		}
		p.facts.resolvers[o.App] = append(known, resolverSent{resolverKey: k, at: now})
	}
	r := egressd.AppResolver{App: o.App, Kind: k.kind, Addr: k.addr, LastSeen: o.Time}
	for _, s := range p.podSinks {
		s.ObserveResolver(r)
	}
}
