package baseline_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	slimv1 "github.com/cilium/cilium/pkg/k8s/slim/k8s/apis/meta/v1"
	"github.com/cilium/cilium/pkg/policy/api"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/baseline"
)

// pod is one captured pod: its app, where the app's name came from, and
// its labels as the collector stores them.
type pod struct {
	app      string
	nameFrom string
	labels   []string
}

// captures is a namespace whose apps are named by each naming source: a
// workload whose pods carry another name, app.kubernetes.io/name, app
// (two versions of pods), k8s-app, and a StatefulSet named after its pods
// with no app label, told apart by its service account; and two apps that
// nothing tells apart from the others.
var captures = []pod{
	{"web", "workload", []string{"app.kubernetes.io/name=frontend", "app.kubernetes.io/part-of=shop", "io.cilium.k8s.policy.serviceaccount=default"}},
	{"worker", "label:app.kubernetes.io/name", []string{"app.kubernetes.io/name=worker", "app.kubernetes.io/part-of=shop", "io.cilium.k8s.policy.serviceaccount=default"}},
	{"api", "label:app", []string{"app=api", "tier=backend", "version=v1", "io.cilium.k8s.policy.serviceaccount=default"}},
	{"api", "label:app", []string{"app=api", "tier=backend", "version=v2", "io.cilium.k8s.policy.serviceaccount=default"}},
	{"event-exporter", "label:k8s-app", []string{"k8s-app=event-exporter", "io.cilium.k8s.policy.serviceaccount=event-exporter"}},
	{"db", "pod", []string{"io.cilium.k8s.policy.serviceaccount=db"}},
	{"backend-job", "pod", []string{"tier=backend", "io.cilium.k8s.policy.serviceaccount=default"}},
	{"bare", "pod", []string{"io.cilium.k8s.policy.serviceaccount=default"}},
}

func labelSets(ns string, pods []pod) []egressd.AppLabelSet {
	var out []egressd.AppLabelSet
	for _, p := range pods {
		s := egressd.AppLabelSet{App: egressd.App{Namespace: ns, Name: p.app}, NameFrom: p.nameFrom}
		for _, l := range p.labels {
			k, v, _ := strings.Cut(l, "=")
			s.Labels = append(s.Labels, egressd.Label{Key: k, Value: v})
		}
		out = append(out, s)
	}
	return out
}

// selects reports whether Cilium's selector of rule (as the agent parsed
// it, with the policy's namespace added) selects a pod of namespace ns with
// these labels. Cilium keys selector labels by source: a pod's Kubernetes
// labels are "k8s:KEY", and a key written without a source is "any:KEY",
// which matches the label from any source, so the pod's labels are given
// under both.
func selects(t *testing.T, rule *api.Rule, ns string, podLabels []string) bool {
	t.Helper()
	set := map[string]string{"k8s:io.kubernetes.pod.namespace": ns, "any:io.kubernetes.pod.namespace": ns}
	for _, l := range podLabels {
		k, v, _ := strings.Cut(l, "=")
		set["k8s:"+k], set["any:"+k] = v, v
	}
	ls := rule.EndpointSelector.LabelSelector
	for k, v := range ls.MatchLabels {
		if got, ok := set[k]; !ok || got != v {
			return false
		}
	}
	for _, e := range ls.MatchExpressions {
		v, ok := set[e.Key]
		switch e.Operator {
		case slimv1.LabelSelectorOpIn:
			if !ok || !slices.Contains(e.Values, v) {
				return false
			}
		case slimv1.LabelSelectorOpNotIn:
			if ok && slices.Contains(e.Values, v) {
				return false
			}
		case slimv1.LabelSelectorOpExists:
			if !ok {
				return false
			}
		case slimv1.LabelSelectorOpDoesNotExist:
			if ok {
				return false
			}
		default:
			t.Fatalf("selector operator %s", e.Operator)
		}
	}
	return true
}

// checkSelection generates the policies of the apps of pods and checks, with
// Cilium's own selector, that each selects every pod of its app and no
// other pod of the namespace, and that the apps without one are said why.
func checkSelection(t *testing.T, ns string, pods []pod, wantSkipped []string) baseline.PolicySet {
	t.Helper()
	var bs []egressd.Baseline
	seen := map[string]bool{}
	for _, p := range pods {
		if !seen[p.app] {
			seen[p.app] = true
			bs = append(bs, egressd.Baseline{Namespace: ns, App: p.app, Destinations: []egressd.BaselineDestination{dest(t, "example.com", "443/TCP")}})
		}
	}
	bs = baseline.AttachPods(bs, labelSets(ns, pods), nil)
	set, err := baseline.Policies(bs, baseline.PolicyOptions{})
	require.NoError(t, err)
	var skipped []string
	for _, s := range set.Skipped {
		skipped = append(skipped, s.App.Name)
		require.Contains(t, s.Reason, "no labels select exactly its pods")
	}
	require.ElementsMatch(t, wantSkipped, skipped)
	for _, p := range set.Policies {
		_, rule := parseCiliumPolicy(t, p.YAML)
		for _, q := range pods {
			require.Equal(t, q.app == p.App.Name, selects(t, rule, ns, q.labels), "policy of %s, pod of %s %v:\n%s", p.App.Name, q.app, q.labels, p.YAML)
		}
		// A pod of the same labels in another namespace is not selected.
		for _, q := range pods {
			require.False(t, selects(t, rule, "other", q.labels))
		}
	}
	require.Len(t, set.Policies, len(seen)-len(wantSkipped))
	return set
}

func TestPoliciesSelectEachAppsPods(t *testing.T) {
	t.Parallel()
	set := checkSelection(t, "shop", captures, []string{"backend-job", "bare"})
	byApp := map[string]string{}
	for _, p := range set.Policies {
		byApp[p.App.Name] = string(p.YAML)
	}
	// The label the name came from is preferred; a workload-named app is
	// selected by the label its pods do carry.
	require.Contains(t, byApp["event-exporter"], "\n      k8s-app: event-exporter\n")
	require.Contains(t, byApp["api"], "\n      app: api\n")
	require.Contains(t, byApp["worker"], "\n      app.kubernetes.io/name: worker\n")
	require.Contains(t, byApp["web"], "\n      app.kubernetes.io/name: frontend\n")
	require.Contains(t, byApp["db"], "\n      io.cilium.k8s.policy.serviceaccount: db\n")
}

func TestAttachPodsExplains(t *testing.T) {
	t.Parallel()
	bs := []egressd.Baseline{{Namespace: "shop", App: "bare"}, {Namespace: "shop", App: "backend-job"}, {Namespace: "shop", App: "unknown"}}
	got := baseline.AttachPods(bs, labelSets("shop", captures), nil)
	require.Nil(t, got[2].Pods, "an app without label sets keeps the app-label selector")
	require.Contains(t, got[0].Pods.Unselectable, "io.cilium.k8s.policy.serviceaccount=default")
	require.Contains(t, got[0].Pods.Unselectable, "(api, backend-job, web, worker)")
	require.Nil(t, bs[0].Pods, "the input is not modified")

	// Pods of one app that share nothing.
	got = baseline.AttachPods([]egressd.Baseline{{Namespace: "x", App: "a"}},
		labelSets("x", []pod{{"a", "pod", []string{"k=1"}}, {"a", "pod", []string{"k=2"}}}), nil)
	require.Contains(t, got[0].Pods.Unselectable, "share no label")
}

// TestPoliciesCombineLabels: when no label alone tells the app apart, the
// shared labels together do.
func TestPoliciesCombineLabels(t *testing.T) {
	t.Parallel()
	pods := []pod{
		{"a", "pod", []string{"team=x", "tier=web"}},
		{"b", "pod", []string{"team=x", "tier=db"}},
		{"c", "pod", []string{"team=y", "tier=web"}},
	}
	checkSelection(t, "ns", pods, nil)
}

func TestPoliciesAllowTheResolversUsed(t *testing.T) {
	t.Parallel()
	app := egressd.App{Namespace: "media", Name: "recyclarr"}
	b := egressd.Baseline{Namespace: "media", App: "recyclarr", Destinations: []egressd.BaselineDestination{dest(t, "api.github.com", "443/TCP")}}
	tests := []struct {
		name      string
		resolvers []egressd.AppResolver
		cluster   bool
		cidrs     []string
	}{
		{name: "none known: cluster DNS", cluster: true},
		{name: "CoreDNS", resolvers: []egressd.AppResolver{{App: app, Kind: egressd.ResolverCluster}}, cluster: true},
		{name: "NodeLocal DNSCache", resolvers: []egressd.AppResolver{{App: app, Kind: egressd.ResolverNodeLocal, Addr: "169.254.20.10"}}, cidrs: []string{"169.254.20.10/32"}},
		{name: "all three", resolvers: []egressd.AppResolver{
			{App: app, Kind: egressd.ResolverExternal, Addr: "2001:4860:4860::8888"},
			{App: app, Kind: egressd.ResolverNodeLocal, Addr: "169.254.20.10"},
			{App: app, Kind: egressd.ResolverCluster},
		}, cluster: true, cidrs: []string{"169.254.20.10/32", "2001:4860:4860::8888/128"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bs := baseline.AttachPods([]egressd.Baseline{b}, nil, tt.resolvers)
			// The file keeps the resolvers.
			back, err := baseline.Unmarshal(mustMarshal(t, bs[0]), "x.json")
			require.NoError(t, err)
			if diff := cmp.Diff(bs[0].Pods, back.Pods); diff != "" {
				t.Fatalf("pods after a round trip (-want +got):\n%s", diff)
			}
			set, err := baseline.Policies(bs, baseline.PolicyOptions{})
			require.NoError(t, err)
			_, rule := parseCiliumPolicy(t, set.Policies[0].YAML)
			var gotCluster bool
			var gotCIDRs []string
			for _, er := range rule.Egress {
				dns := false
				for _, pr := range er.ToPorts {
					if pr.Rules != nil && len(pr.Rules.DNS) > 0 {
						dns = true
						require.Equal(t, api.PortRulesDNS{{MatchPattern: "*"}}, pr.Rules.DNS)
						require.Equal(t, []api.PortProtocol{{Port: "53", Protocol: api.ProtoTCP}, {Port: "53", Protocol: api.ProtoUDP}}, pr.Ports)
					}
				}
				if !dns {
					continue
				}
				if len(er.ToEndpoints) > 0 {
					gotCluster = true
					require.Contains(t, er.ToEndpoints[0].String(), "k8s-app\":\"kube-dns\"")
				}
				js, err := json.Marshal([]any{er.ToCIDR, er.ToCIDRSet})
				require.NoError(t, err)
				for _, c := range tt.cidrs {
					if strings.Contains(string(js), `"`+c+`"`) {
						gotCIDRs = append(gotCIDRs, c)
					}
				}
			}
			require.Equal(t, tt.cluster, gotCluster)
			require.ElementsMatch(t, tt.cidrs, gotCIDRs)
		})
	}
}

func TestPodsInFiles(t *testing.T) {
	t.Parallel()
	b := egressd.Baseline{Namespace: "media", App: "recyclarr", Pods: &egressd.BaselinePods{
		Selector:  map[string]string{"k8s-app": "recyclarr", "app.kubernetes.io/part-of": "arr"},
		Resolvers: []egressd.BaselineResolver{{Kind: egressd.ResolverNodeLocal, Addr: "169.254.20.10"}, {Kind: egressd.ResolverCluster}},
	}}
	data := mustMarshal(t, b)
	golden(t, "pods/recyclarr.json", data)
	// encoding/json writes the same bytes (the fast writer's contract).
	back, err := baseline.Unmarshal(data, "recyclarr.json")
	require.NoError(t, err)
	require.Equal(t, data, mustMarshal(t, back))

	bad := map[string]string{
		"selector key":   `{"apiVersion":"egressd.io/v1","kind":"EgressBaseline","namespace":"media","app":"a","unbounded":false,"pods":{"selector":{"k8s:app":"a"}},"destinations":[]}`,
		"selector value": `{"apiVersion":"egressd.io/v1","kind":"EgressBaseline","namespace":"media","app":"a","unbounded":false,"pods":{"selector":{"app":"a b"}},"destinations":[]}`,
		"resolver kind":  `{"apiVersion":"egressd.io/v1","kind":"EgressBaseline","namespace":"media","app":"a","unbounded":false,"pods":{"dns":[{"kind":"magic"}]},"destinations":[]}`,
		"resolver addr":  `{"apiVersion":"egressd.io/v1","kind":"EgressBaseline","namespace":"media","app":"a","unbounded":false,"pods":{"dns":[{"kind":"external","address":"dns.google"}]},"destinations":[]}`,
		"unknown field":  `{"apiVersion":"egressd.io/v1","kind":"EgressBaseline","namespace":"media","app":"a","unbounded":false,"pods":{"selectors":{}},"destinations":[]}`,
	}
	want := map[string]string{
		"selector key":   `a.json:1:123: pods.selector key "k8s:app" is not a label key`,
		"selector value": `a.json:1:129: pods.selector value "a b" of app is not a label value`,
		"resolver kind":  `a.json:1:118: pods.dns: resolver kind "magic"`,
		"resolver addr":  `a.json:1:118: pods.dns: external resolver address "dns.google" is not an IP address`,
		"unknown field":  `a.json:1:111: unknown field "selectors" in pods`,
	}
	for name, doc := range bad {
		_, err := baseline.Unmarshal([]byte(doc), "a.json")
		require.Error(t, err, name)
		require.True(t, strings.HasPrefix(err.Error(), want[name]), "%s: %v", name, err)
	}
}

// TestMergeKeepsWhatLiveDoesNotKnow: a window that saw an app's DNS but
// none of its pods' labels keeps the file's selector, and one that saw
// neither keeps the file's pods.
func TestMergeKeepsWhatLiveDoesNotKnow(t *testing.T) {
	t.Parallel()
	file := egressd.Baseline{Namespace: "media", App: "a", Pods: &egressd.BaselinePods{
		Selector:  map[string]string{"app": "a"},
		Resolvers: []egressd.BaselineResolver{{Kind: egressd.ResolverCluster}},
	}}
	live := egressd.Baseline{Namespace: "media", App: "a", Pods: &egressd.BaselinePods{
		Resolvers: []egressd.BaselineResolver{{Kind: egressd.ResolverExternal, Addr: "9.9.9.9"}},
	}}
	got := baseline.Merge(&file, live)
	require.Equal(t, map[string]string{"app": "a"}, got.Pods.Selector)
	require.Equal(t, live.Pods.Resolvers, got.Pods.Resolvers)
	got = baseline.Merge(&file, egressd.Baseline{Namespace: "media", App: "a"})
	require.Equal(t, file.Pods, got.Pods)
	// What live knows wins.
	live.Pods.Unselectable = "none"
	got = baseline.Merge(&file, live)
	require.Empty(t, got.Pods.Selector)
	require.Equal(t, "none", got.Pods.Unselectable)
	require.Equal(t, map[string]string{"app": "a"}, file.Pods.Selector, "the file's baseline is not modified")
}
