package baseline_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	crdsv2 "github.com/cilium/cilium/pkg/k8s/apis/cilium.io/client/crds/v2"
	ciliumutils "github.com/cilium/cilium/pkg/k8s/apis/cilium.io/utils"
	"github.com/cilium/cilium/pkg/policy/api"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	apiextensionsinternal "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	crdvalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	metavalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/baseline"
)

// policyBaselines covers every case of policy generation: names, patterns
// (one label, any depth, every name), IPv4 and IPv6 addresses, ports shared
// by several destinations, port 0, ANY, ICMP, more ports than one toPorts
// entry takes, names that need quoting or hashing, and the apps that get no
// policy.
func policyBaselines(t testing.TB) []egressd.Baseline {
	manyPorts := make([]string, 45)
	for i := range manyPorts {
		manyPorts[i] = fmt.Sprintf("%d/TCP", 10000+i)
	}
	return []egressd.Baseline{
		{Namespace: "media", App: "recyclarr", Destinations: []egressd.BaselineDestination{
			dest(t, "*.githubusercontent.com", "443/TCP"),
			dest(t, "api.github.com", "443/TCP"),
			dest(t, "notify.example.org", "8443/TCP"),
			dest(t, "trash-guides.info", "443/TCP"),
		}},
		{Namespace: "media", App: "sonarr", Destinations: []egressd.BaselineDestination{
			dest(t, "**.sonarr.tv", "443/TCP"),
			dest(t, "api.thetvdb.com", "80/TCP", "443/TCP"),
			dest(t, "artworks.thetvdb.com", "443/TCP", "80/TCP"),
			dest(t, "sub*.tvmaze.com", "443/TCP"),
		}},
		{Namespace: "default", App: "web", Destinations: []egressd.BaselineDestination{
			dest(t, "1.1.1.1", "853/TCP"),
			dest(t, "2001:db8::1", "443/TCP"),
			dest(t, "8.8.8.8", "0/ANY"),
			dest(t, "9.9.9.9", "53/UDP", "0/ICMPv4"),
			dest(t, "ntp.ubuntu.com", "123/UDP"),
			dest(t, "pool.ntp.org", "0/UDP", "123/UDP"),
			dest(t, "relay.example.net", "5000/ANY", "5000/TCP", "0/SCTP"),
			dest(t, "ping.example.com", "0/ICMPv4", "0/ICMPv6", "3/ICMPv4"),
			dest(t, "tunnel.example.com", "0/ANY", "443/TCP"),
		}},
		{Namespace: "default", App: "crawler", Unbounded: true, Destinations: []egressd.BaselineDestination{
			dest(t, "*", "443/TCP"),
		}},
		{Namespace: "default", App: "empty"},
		{Namespace: "default", App: "everything", Destinations: []egressd.BaselineDestination{
			dest(t, "*", "443/TCP", "80/TCP"),
		}},
		{Namespace: "default", App: "many-ports", Destinations: []egressd.BaselineDestination{
			dest(t, "ports.example.com", manyPorts...),
		}},
		{Namespace: "default", App: "Web_Frontend.v2", Destinations: []egressd.BaselineDestination{
			dest(t, "cdn.example.com", "443/TCP"),
		}},
		{Namespace: "default", App: strings.Repeat("b", 60), Destinations: []egressd.BaselineDestination{
			dest(t, "long.example.com", "443/TCP"),
		}},
		{Namespace: "default", App: strings.Repeat("c", 64), Destinations: []egressd.BaselineDestination{
			dest(t, "too-long.example.com", "443/TCP"),
		}},
		{Namespace: "yes", App: "on", Destinations: []egressd.BaselineDestination{
			dest(t, "1e3.example.com", "443/TCP"),
		}},
		{Namespace: "yes", App: "1e3", Destinations: []egressd.BaselineDestination{
			dest(t, "null", "443/TCP"),
		}},
		{Namespace: egressd.HostNamespace, App: "node-1", Destinations: []egressd.BaselineDestination{
			dest(t, "archive.ubuntu.com", "80/TCP"),
		}},
		// Selected by the labels its pods share, asking CoreDNS, NodeLocal
		// DNSCache and an external resolver.
		{Namespace: "media", App: "prowlarr", Destinations: []egressd.BaselineDestination{
			dest(t, "indexer.example.org", "443/TCP"),
		}, Pods: &egressd.BaselinePods{
			Selector: map[string]string{"app.kubernetes.io/name": "prowlarr", "io.cilium.k8s.policy.serviceaccount": "prowlarr"},
			Resolvers: []egressd.BaselineResolver{
				{Kind: egressd.ResolverCluster},
				{Kind: egressd.ResolverNodeLocal, Addr: "169.254.20.10"},
				{Kind: egressd.ResolverExternal, Addr: "2001:4860:4860::8888"},
			},
		}},
		// A name too long for a label value, selected by a label of its
		// pods instead.
		{Namespace: "default", App: strings.Repeat("d", 64), Destinations: []egressd.BaselineDestination{
			dest(t, "long.example.com", "443/TCP"),
		}, Pods: &egressd.BaselinePods{Selector: map[string]string{"app": "ddd"}}},
		// Nothing tells its pods apart.
		{Namespace: "media", App: "bare", Destinations: []egressd.BaselineDestination{
			dest(t, "example.com", "443/TCP"),
		}, Pods: &egressd.BaselinePods{Unselectable: "its pods share no label"}},
	}
}

// policyFiles writes set with WritePolicies and returns the files by
// slash-separated path relative to the directory.
func policyFiles(t *testing.T, set baseline.PolicySet) map[string]string {
	t.Helper()
	dir := t.TempDir()
	written, err := baseline.WritePolicies(dir, set)
	require.NoError(t, err)
	files := snapshot(t, dir)
	require.Len(t, written, len(files))
	for i, p := range set.Policies {
		require.Equal(t, filepath.Join(dir, p.App.Namespace, p.App.Name+".yaml"), written[i])
	}
	return files
}

func TestPoliciesGolden(t *testing.T) {
	t.Parallel()
	set, err := baseline.Policies(policyBaselines(t), baseline.PolicyOptions{})
	require.NoError(t, err)
	files := policyFiles(t, set)
	for rel, content := range files {
		golden(t, "policy/defaults/"+rel, []byte(content))
	}
	want := []string{
		"default/Web_Frontend.v2.yaml",
		"default/" + strings.Repeat("b", 60) + ".yaml",
		"default/" + strings.Repeat("d", 64) + ".yaml",
		"default/empty.yaml",
		"default/everything.yaml",
		"default/many-ports.yaml",
		"default/web.yaml",
		"media/prowlarr.yaml",
		"media/recyclarr.yaml",
		"media/sonarr.yaml",
		"yes/1e3.yaml",
		"yes/on.yaml",
	}
	require.Equal(t, want, slices.Sorted(maps.Keys(files)))

	if diff := cmp.Diff([]egressd.App{{Namespace: "default", Name: "crawler"}}, set.Unbounded); diff != "" {
		t.Fatalf("unbounded (-want +got):\n%s", diff)
	}
	var skipped []string
	for _, s := range set.Skipped {
		skipped = append(skipped, s.App.String())
	}
	require.Equal(t, []string{"default/" + strings.Repeat("c", 64), "host/node-1", "media/bare"}, skipped)
	require.Contains(t, set.Skipped[0].Reason, "longer than 63 characters")
	require.Contains(t, set.Skipped[1].Reason, "CiliumClusterwideNetworkPolicy with a nodeSelector")
	require.Equal(t, "no labels select exactly its pods: its pods share no label", set.Skipped[2].Reason)

	// The stream is the same documents, separated.
	var stream bytes.Buffer
	require.NoError(t, baseline.WritePolicyStream(&stream, set))
	docs := strings.Split(stream.String(), "---\n")
	require.Len(t, docs, len(set.Policies))
	for i, p := range set.Policies {
		require.Equal(t, string(p.YAML), docs[i])
		require.Equal(t, files[p.App.Namespace+"/"+p.App.Name+".yaml"], docs[i])
	}
}

func TestPoliciesOptionsGolden(t *testing.T) {
	t.Parallel()
	opts := baseline.PolicyOptions{
		AppLabel:        "app",
		DNSSelector:     map[string]string{"k8s:io.kubernetes.pod.namespace": "kube-system", "k8s:k8s-app": "node-local-dns"},
		OmitClusterRule: true,
		AllowCIDRs:      []netip.Prefix{netip.MustParsePrefix("192.168.1.7/24"), netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("192.168.1.0/24")},
	}
	set, err := baseline.Policies(policyBaselines(t)[:1], opts)
	require.NoError(t, err)
	for rel, content := range policyFiles(t, set) {
		golden(t, "policy/options/"+rel, []byte(content))
	}
	// DefaultPolicyOptions spells out the zero value.
	def, err := baseline.Policies(policyBaselines(t), baseline.DefaultPolicyOptions())
	require.NoError(t, err)
	zero, err := baseline.Policies(policyBaselines(t), baseline.PolicyOptions{})
	require.NoError(t, err)
	require.Equal(t, zero, def)
}

// TestPoliciesValidInCilium decodes every generated document strictly into
// Cilium's CiliumNetworkPolicy, validates it as the API server does (the CRD's
// OpenAPI schema) and as the Cilium agent does (Rule.Sanitize and the
// conversion CiliumNetworkPolicy.Parse makes), and checks that it allows
// exactly what the baseline's Matcher accepts.
func TestPoliciesValidInCilium(t *testing.T) {
	t.Parallel()
	bs := policyBaselines(t)
	for _, opts := range []baseline.PolicyOptions{{}, {AppLabel: "k8s:app", AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, OmitClusterRule: true}} {
		set, err := baseline.Policies(bs, opts)
		require.NoError(t, err)
		require.Len(t, set.Policies, 12)
		for _, p := range set.Policies {
			t.Run(fmt.Sprintf("%s %s", opts.AppLabel, p.App), func(t *testing.T) {
				cnp, rule := parseCiliumPolicy(t, p.YAML)
				require.Equal(t, p.Name, cnp.Name)
				require.Equal(t, p.App.Namespace, cnp.Namespace)
				require.Equal(t, "egressd", cnp.Labels["app.kubernetes.io/managed-by"])
				require.Equal(t, p.App.String(), cnp.Annotations["egressd.io/baseline"])
				var b egressd.Baseline
				for _, c := range bs {
					if c.Namespace == p.App.Namespace && c.App == p.App.Name {
						b = c
					}
				}
				label := cmpOr(opts.AppLabel, "app.kubernetes.io/name")
				wantSel := map[string]string{label: p.App.Name}
				if b.Pods != nil && len(b.Pods.Selector) > 0 {
					wantSel = b.Pods.Selector
				}
				require.Equal(t, wantSel, cnp.Spec.EndpointSelector.MatchLabels)
				// Cilium confines the selector to the policy's namespace.
				require.Contains(t, rule.EndpointSelector.String(), `"k8s:io.kubernetes.pod.namespace":"`+p.App.Namespace+`"`)
				checkSameAsMatcher(t, b, rule)
				checkDNSRule(t, rule)
			})
		}
	}
}

func TestPoliciesDeterministic(t *testing.T) {
	t.Parallel()
	bs := policyBaselines(t)
	first, err := baseline.Policies(bs, baseline.PolicyOptions{})
	require.NoError(t, err)
	var firstStream bytes.Buffer
	require.NoError(t, baseline.WritePolicyStream(&firstStream, first))
	r := rand.New(rand.NewPCG(1, 2))
	for range 5 {
		shuffled := slices.Clone(bs)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		for _, b := range shuffled {
			r.Shuffle(len(b.Destinations), func(i, j int) { b.Destinations[i], b.Destinations[j] = b.Destinations[j], b.Destinations[i] })
		}
		again, err := baseline.Policies(shuffled, baseline.PolicyOptions{})
		require.NoError(t, err)
		var stream bytes.Buffer
		require.NoError(t, baseline.WritePolicyStream(&stream, again))
		require.Equal(t, firstStream.String(), stream.String())
	}
	// Writing twice gives the same files, and the second write changes
	// nothing on disk.
	dir := t.TempDir()
	_, err = baseline.WritePolicies(dir, first)
	require.NoError(t, err)
	path := filepath.Join(dir, "media", "recyclarr.yaml")
	before, err := os.Stat(path)
	require.NoError(t, err)
	snap := snapshot(t, dir)
	_, err = baseline.WritePolicies(dir, first)
	require.NoError(t, err)
	require.Equal(t, snap, snapshot(t, dir))
	after, err := os.Stat(path)
	require.NoError(t, err)
	require.True(t, os.SameFile(before, after), "an unchanged file is not replaced")
}

func TestPoliciesFromExportedFiles(t *testing.T) {
	t.Parallel()
	bs, err := baseline.LoadDir(filepath.Join("testdata", "export"))
	require.NoError(t, err)
	set, err := baseline.Policies(bs, baseline.PolicyOptions{})
	require.NoError(t, err)
	var apps []string
	for _, p := range set.Policies {
		apps = append(apps, p.App.String())
		parseCiliumPolicy(t, p.YAML)
	}
	require.Equal(t, []string{"default/web", "media/recyclarr", "media/sonarr"}, apps)
	require.Equal(t, "host/node-1", set.Skipped[0].App.String())
	require.Contains(t, string(set.Policies[1].YAML), "\n        - matchName: api.github.com\n")
}

func TestPolicyNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		app  string
		want string // "" when only checked for validity
	}{
		{"recyclarr", "egressd-recyclarr"},
		{"a-b", "egressd-a-b"},
		{strings.Repeat("x", 55), "egressd-" + strings.Repeat("x", 55)},
		{strings.Repeat("x", 56), ""},
		{strings.Repeat("x", 63), ""},
		{"Web", ""},
		{"web", "egressd-web"},
		{"a.b", ""},
		{"a_b", ""},
		{"a-b-", ""}, // invalid app: an error, not a policy
	}
	var bs []egressd.Baseline
	for _, tt := range tests {
		bs = append(bs, egressd.Baseline{Namespace: "ns", App: tt.app})
	}
	set, err := baseline.Policies(bs, baseline.PolicyOptions{})
	require.Error(t, err)
	var pe *baseline.PolicyError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, egressd.App{Namespace: "ns", Name: "a-b-"}, pe.App)
	require.Equal(t, egressd.EINVALID, egressd.ErrorCode(err))
	names := map[string]string{}
	for _, p := range set.Policies {
		require.Empty(t, metavalidation.NameIsDNSLabel(p.Name, false), "policy name %q", p.Name)
		require.True(t, strings.HasPrefix(p.Name, "egressd-"), p.Name)
		if other, ok := names[p.Name]; ok {
			t.Fatalf("apps %s and %s share the policy name %s", other, p.App.Name, p.Name)
		}
		names[p.Name] = p.App.Name
		for _, tt := range tests {
			if tt.app == p.App.Name && tt.want != "" {
				require.Equal(t, tt.want, p.Name)
			}
		}
	}
	require.Len(t, names, len(tests)-1)
}

func TestPoliciesErrors(t *testing.T) {
	t.Parallel()
	ok := egressd.Baseline{Namespace: "media", App: "ok", Destinations: []egressd.BaselineDestination{dest(t, "a.example.com", "443/TCP")}}
	tests := []struct {
		name string
		b    []egressd.Baseline
		want string
	}{
		{"invalid destination", []egressd.Baseline{{Namespace: "media", App: "bad", Destinations: []egressd.BaselineDestination{{Name: "not a name", Ports: ports(t, "443/TCP")}}}},
			`policy for media/bad: baseline media/bad: invalid destination name "not a name"`},
		{"ICMP type out of range", []egressd.Baseline{{Namespace: "media", App: "bad", Destinations: []egressd.BaselineDestination{dest(t, "a.example.com", "256/ICMPv4")}}},
			"policy for media/bad: destination a.example.com: port 256/ICMPv4: an ICMP port is 0 (echo request) or an ICMP type from 1 to 255"},
		{"app twice", []egressd.Baseline{{Namespace: "media", App: "bad"}, {Namespace: "media", App: "bad"}},
			"policy for media/bad: the app appears 2 times"},
		{"invalid namespace", []egressd.Baseline{{Namespace: "Media", App: "bad"}},
			`policy for Media/bad: invalid namespace "Media"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			set, err := baseline.Policies(append(tt.b, ok), baseline.PolicyOptions{})
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.want)
			require.Equal(t, 1, strings.Count(err.Error(), "policy for"), "one error per app: %v", err)
			require.Equal(t, egressd.EINVALID, egressd.ErrorCode(err))
			require.Len(t, set.Policies, 1, "the valid app still gets its policy")
			require.Equal(t, "ok", set.Policies[0].App.Name)
		})
	}
}

func TestPolicyOptionsValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts baseline.PolicyOptions
		want string // "" when valid
	}{
		{"zero", baseline.PolicyOptions{}, ""},
		{"defaults", baseline.DefaultPolicyOptions(), ""},
		{"plain label", baseline.PolicyOptions{AppLabel: "app"}, ""},
		{"source prefix", baseline.PolicyOptions{AppLabel: "k8s:app.kubernetes.io/instance"}, ""},
		{"space", baseline.PolicyOptions{AppLabel: "my app"}, `PolicyOptions.AppLabel "my app" is not a label key`},
		{"two slashes", baseline.PolicyOptions{AppLabel: "a/b/c"}, "PolicyOptions.AppLabel"},
		{"empty name", baseline.PolicyOptions{AppLabel: "example.com/"}, "PolicyOptions.AppLabel"},
		{"quote", baseline.PolicyOptions{AppLabel: `a"b`}, "PolicyOptions.AppLabel"},
		{"long name", baseline.PolicyOptions{AppLabel: strings.Repeat("a", 64)}, "PolicyOptions.AppLabel"},
		{"bad DNS key", baseline.PolicyOptions{DNSSelector: map[string]string{"k8s:k8s app": "x"}}, `PolicyOptions.DNSSelector key "k8s:k8s app"`},
		{"bad DNS value", baseline.PolicyOptions{DNSSelector: map[string]string{"k8s:k8s-app": "kube dns"}}, `PolicyOptions.DNSSelector value "kube dns" of k8s:k8s-app`},
		{"bad CIDR", baseline.PolicyOptions{AllowCIDRs: []netip.Prefix{{}}}, "PolicyOptions.AllowCIDRs entry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.opts.Validate()
			_, perr := baseline.Policies(policyBaselines(t), tt.opts)
			if tt.want == "" {
				require.NoError(t, err)
				require.NoError(t, perr)
				return
			}
			require.ErrorContains(t, err, tt.want)
			require.Equal(t, egressd.EINVALID, egressd.ErrorCode(err))
			require.Equal(t, err, perr)
		})
	}
}

// TestWritePoliciesStaysInside: only valid namespace and app names become
// paths, and a symbolic link inside the directory leads nowhere.
func TestWritePoliciesStaysInside(t *testing.T) {
	t.Parallel()
	set, err := baseline.Policies(policyBaselines(t), baseline.PolicyOptions{})
	require.NoError(t, err)
	good := set.Policies[0]
	for _, tt := range pathTests {
		if tt.want != "" {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			dir := filepath.Join(base, "policies")
			bad := good
			bad.App = egressd.App{Namespace: tt.namespace, Name: tt.app}
			written, err := baseline.WritePolicies(dir, baseline.PolicySet{Policies: []baseline.Policy{bad, good}})
			require.Error(t, err)
			require.Equal(t, egressd.EINVALID, egressd.ErrorCode(err))
			require.Equal(t, []string{filepath.Join(dir, good.App.Namespace, good.App.Name+".yaml")}, written)
			require.Equal(t, []string{"policies/" + good.App.Namespace + "/" + good.App.Name + ".yaml"}, slices.Sorted(maps.Keys(snapshot(t, base))))
		})
	}

	t.Run("symlink", func(t *testing.T) {
		t.Parallel()
		base := t.TempDir()
		dir := filepath.Join(base, "policies")
		outside := filepath.Join(base, "outside")
		require.NoError(t, os.MkdirAll(dir, 0o755))
		require.NoError(t, os.MkdirAll(outside, 0o755))
		require.NoError(t, os.Symlink(outside, filepath.Join(dir, "media")))
		written, err := baseline.WritePolicies(dir, set)
		require.Error(t, err)
		require.Contains(t, err.Error(), filepath.Join(dir, "media", "recyclarr.yaml"))
		require.Empty(t, snapshot(t, outside), "nothing written through the link")
		require.Len(t, written, len(set.Policies)-3, "every app outside media is written")
	})
}

// FuzzPolicies: every baseline that Unmarshal accepts makes a policy that
// Cilium accepts, or an EINVALID error naming the app.
func FuzzPolicies(f *testing.F) {
	for _, b := range policyBaselines(f) {
		f.Add(mustMarshal(f, b))
	}
	f.Add([]byte(`{"apiVersion":"egressd.io/v1","kind":"EgressBaseline","namespace":"n","app":"x","destinations":[{"name":"**.a-*.b","ports":["0/any","1/icmpv6"]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := baseline.Unmarshal(data, "fuzz.json")
		if err != nil {
			return
		}
		set, err := baseline.Policies([]egressd.Baseline{b}, baseline.PolicyOptions{})
		if err != nil {
			var pe *baseline.PolicyError
			require.ErrorAs(t, err, &pe)
			require.Equal(t, egressd.EINVALID, egressd.ErrorCode(err))
			return
		}
		for _, p := range set.Policies {
			_, rule := parseCiliumPolicy(t, p.YAML)
			checkSameAsMatcher(t, b, rule)
		}
	})
}

// ciliumNetworkPolicy is github.com/cilium/cilium/pkg/k8s/apis/cilium.io/v2
// CiliumNetworkPolicy without its status. That package cannot be built
// here: it needs github.com/cilium/statedb v0.8.4, which the module proxy
// does not serve. Its fields are the same types, so decoding into it is
// decoding into Cilium's type.
type ciliumNetworkPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              *api.Rule `json:"spec,omitempty"`
	Specs             api.Rules `json:"specs,omitempty"`
}

// parseCiliumPolicy checks one generated document the way the API server
// and the Cilium agent would, and returns it decoded and the rule the agent
// would enforce.
func parseCiliumPolicy(t *testing.T, doc []byte) (*ciliumNetworkPolicy, *api.Rule) {
	t.Helper()
	require.True(t, bytes.HasSuffix(doc, []byte("\n")))
	require.NotContains(t, string(doc), "\n---", "one document")

	// Strict YAML (duplicate keys are errors) as kubectl reads it.
	js, err := yaml.YAMLToJSONStrict(doc)
	require.NoError(t, err, "%s", doc)

	// Strict decoding: unknown fields are errors, and what decodes
	// encodes back to the same JSON (this catches unknown fields below
	// types with their own UnmarshalJSON, as Cilium's validator does).
	var cnp ciliumNetworkPolicy
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&cnp), "%s", js)
	_, err = dec.Token()
	require.ErrorIs(t, err, io.EOF)
	back, err := json.Marshal(&cnp)
	require.NoError(t, err)
	var in, out map[string]any
	require.NoError(t, json.Unmarshal(js, &in))
	require.NoError(t, json.Unmarshal(back, &out))
	if m, ok := out["metadata"].(map[string]any); ok && m["creationTimestamp"] == nil {
		delete(m, "creationTimestamp")
	}
	if diff := cmp.Diff(in, out); diff != "" {
		t.Fatalf("fields Cilium's type does not know (-generated +decoded):\n%s", diff)
	}

	// The API server: the CRD's schema, its one CEL rule ("spec or specs
	// must be provided"), and object metadata.
	require.Equal(t, "cilium.io/v2", cnp.APIVersion)
	require.Equal(t, "CiliumNetworkPolicy", cnp.Kind)
	if errs := crdvalidation.ValidateCustomResource(nil, in, cnpSchema(t)); len(errs) > 0 {
		t.Fatalf("CRD schema: %v\n%s", errs.ToAggregate(), doc)
	}
	require.NotNil(t, cnp.Spec)
	if errs := metavalidation.ValidateObjectMeta(&cnp.ObjectMeta, true, metavalidation.NameIsDNSSubdomain, field.NewPath("metadata")); len(errs) > 0 {
		t.Fatalf("metadata: %v", errs.ToAggregate())
	}

	// The agent: CiliumNetworkPolicy.Parse in Cilium v1.20.2, which
	// sanitizes the spec and converts it to the rule it enforces.
	require.NotEmpty(t, cnp.Name)
	require.NotEmpty(t, cnp.Namespace)
	spec := cnp.Spec.DeepCopy()
	require.NoError(t, spec.Sanitize(), "%s", doc)
	require.Nil(t, spec.NodeSelector.LabelSelector)
	rule := ciliumutils.ParseToCiliumRule(slog.New(slog.DiscardHandler), "default", cnp.Namespace, cnp.Name, cnp.UID, spec)
	return &cnp, rule
}

var (
	cnpSchemaOnce      sync.Once
	cnpSchemaValidator crdvalidation.SchemaCreateValidator
	cnpSchemaErr       error
)

// cnpSchema returns a validator for the CiliumNetworkPolicy CRD schema that
// Cilium v1.20.2 installs, built the way Cilium's own policy validator
// (pkg/k8s/apis/cilium.io/v2/validator) builds it.
func cnpSchema(t *testing.T) crdvalidation.SchemaCreateValidator {
	t.Helper()
	cnpSchemaOnce.Do(func() {
		data, err := crdsv2.EmbedFS.ReadFile("ciliumnetworkpolicies.yaml")
		if err != nil {
			cnpSchemaErr = err
			return
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.Unmarshal(data, &crd); err != nil {
			cnpSchemaErr = err
			return
		}
		if crd.Spec.Group != "cilium.io" || crd.Spec.Versions[0].Name != "v2" || crd.Spec.Names.Kind != "CiliumNetworkPolicy" {
			cnpSchemaErr = errors.New("unexpected CRD " + crd.Name)
			return
		}
		var internal apiextensionsinternal.CustomResourceValidation
		if err := apiextensionsv1.Convert_v1_CustomResourceValidation_To_apiextensions_CustomResourceValidation(crd.Spec.Versions[0].Schema, &internal, nil); err != nil {
			cnpSchemaErr = err
			return
		}
		cnpSchemaValidator, _, cnpSchemaErr = crdvalidation.NewSchemaValidator(internal.OpenAPIV3Schema)
	})
	require.NoError(t, cnpSchemaErr)
	return cnpSchemaValidator
}

// checkSameAsMatcher checks that rule allows a probe exactly when the
// baseline's Matcher accepts it: every destination of the baseline, names a
// pattern matches or nearly matches, unrelated names and addresses, on the
// baseline's ports and others. Names are matched with Cilium's own
// toFQDNs regular expressions.
func checkSameAsMatcher(t *testing.T, b egressd.Baseline, rule *api.Rule) {
	t.Helper()
	m := baseline.NewMatcher(b)
	names := []string{"unrelated.example.com", "203.0.113.9", "2001:db8::99"}
	probePorts := []egressd.Port{{Number: 1, Protocol: "TCP"}, {Number: 0, Protocol: "ICMPv4"}, {Number: 0, Protocol: "ICMPv6"}}
	for _, d := range b.Destinations {
		if strings.Contains(d.Name, "*") {
			base := strings.TrimLeft(d.Name, "*.")
			names = append(names, strings.ReplaceAll(d.Name, "*", "x"), strings.ReplaceAll(d.Name, "*", ""),
				"a.b."+strings.ReplaceAll(d.Name, "*", "x"), base, "other."+base)
		} else {
			names = append(names, d.Name, "sub."+d.Name)
		}
		for _, p := range d.Ports {
			if isICMP(p) && p.Number != 0 {
				// ICMP flows always have port 0 (which the policy
				// reads as an echo request); a non-zero ICMP port is
				// a type written by hand, allowed to its destination.
				if !strings.Contains(d.Name, "*") {
					require.True(t, allows(t, rule, d.Name, p), "%s %s", d.Name, p)
				}
				continue
			}
			probePorts = append(probePorts, p)
			if !isICMP(p) {
				probePorts = append(probePorts, egressd.Port{Number: p.Number + 1, Protocol: p.Protocol})
			}
			for _, proto := range []string{"TCP", "UDP", "SCTP"} {
				probePorts = append(probePorts, egressd.Port{Number: p.Number, Protocol: proto})
			}
		}
	}
	// A flow has a real protocol, never ANY.
	probePorts = slices.DeleteFunc(probePorts, func(p egressd.Port) bool { return p.Protocol == "ANY" })
	for _, name := range names {
		if _, ok := egressd.NormalizeName(name); !ok {
			if _, err := netip.ParseAddr(name); err != nil {
				continue
			}
		}
		for _, p := range probePorts {
			want := m.Match(name, p.Number, p.Protocol)
			if got := allows(t, rule, name, p); got != want {
				t.Errorf("%s %s: policy allows %v, baseline matcher %v", name, p, got, want)
			}
		}
	}
}

// allows reports whether rule lets traffic to an external name or address
// through, in Cilium's terms: an egress rule whose L3 part selects the
// destination (toFQDNs by Cilium's regular expression, toCIDR by prefix)
// and whose L4 part allows the port (no toPorts and no icmps: all traffic;
// toPorts port "0": every port; protocol ANY: TCP, UDP and SCTP; icmps: the
// listed ICMP types, an echo request standing for port 0).
func allows(t *testing.T, rule *api.Rule, name string, p egressd.Port) bool {
	t.Helper()
	addr, ipErr := netip.ParseAddr(name)
	for _, er := range rule.Egress {
		selected := false
		switch {
		case len(er.ToFQDNs) > 0:
			for _, sel := range er.ToFQDNs {
				re, err := sel.ToRegex()
				require.NoError(t, err)
				if ipErr != nil && re.MatchString(strings.ToLower(strings.TrimSuffix(name, "."))+".") {
					selected = true
				}
			}
		case len(er.ToCIDR) > 0 || len(er.ToCIDRSet) > 0:
			var cidrs []string
			for _, c := range er.ToCIDR {
				cidrs = append(cidrs, string(c))
			}
			for _, c := range er.ToCIDRSet {
				cidrs = append(cidrs, string(c.Cidr))
			}
			for _, c := range cidrs {
				if ipErr == nil && netip.MustParsePrefix(c).Contains(addr) {
					selected = true
				}
			}
		}
		if !selected {
			continue
		}
		if len(er.ToPorts) == 0 && len(er.ICMPs) == 0 {
			return true
		}
		for _, pr := range er.ToPorts {
			for _, pp := range pr.Ports {
				portOK := pp.Port == "0" || pp.Port == fmt.Sprint(p.Number)
				var protoOK bool
				switch pp.Protocol {
				case api.ProtoAny, "":
					protoOK = p.Protocol == "TCP" || p.Protocol == "UDP" || p.Protocol == "SCTP"
				default:
					protoOK = string(pp.Protocol) == p.Protocol
				}
				if portOK && protoOK {
					return true
				}
			}
		}
		for _, ir := range er.ICMPs {
			for _, f := range ir.Fields {
				family := map[string]string{"ICMPv4": api.IPv4Family, "ICMPv6": api.IPv6Family}[p.Protocol]
				typ := "EchoRequest"
				if p.Number != 0 {
					typ = fmt.Sprint(p.Number)
				}
				if cmpOr(f.Family, api.IPv4Family) == family && f.Type.String() == typ {
					return true
				}
			}
		}
	}
	return false
}

// checkDNSRule checks the rule that lets toFQDNs learn addresses: DNS to
// kube-dns on port 53 through Cilium's DNS proxy, every name allowed.
func checkDNSRule(t *testing.T, rule *api.Rule) {
	t.Helper()
	for _, er := range rule.Egress {
		for _, pr := range er.ToPorts {
			if pr.Rules != nil && len(pr.Rules.DNS) > 0 {
				require.Equal(t, api.PortRulesDNS{{MatchPattern: "*"}}, pr.Rules.DNS)
				require.Equal(t, []api.PortProtocol{{Port: "53", Protocol: api.ProtoTCP}, {Port: "53", Protocol: api.ProtoUDP}}, pr.Ports)
				require.Len(t, er.ToEndpoints, 1)
				// The namespace label names kube-system, so the
				// selector is not confined to the policy's namespace.
				sel := er.ToEndpoints[0].String()
				require.Contains(t, sel, "io.kubernetes.pod.namespace\":\"kube-system\"")
				require.Contains(t, sel, "k8s-app\":\"kube-dns\"")
				return
			}
		}
	}
	t.Fatal("no DNS rule")
}

func isICMP(p egressd.Port) bool {
	return p.Protocol == "ICMPv4" || p.Protocol == "ICMPv6"
}

// cmpOr returns the first of a and b that is not empty.
func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
