package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/egressd/egressd/postgres/pgtest"
)

// The GitOps test runs the egressd binary against a real PostgreSQL.
func TestMain(m *testing.M) { pgtest.Main(m) }

// Kustomization directories, relative to this package.
const (
	baseDir    = "kustomize/base"
	exampleDir = "kustomize/overlays/example"
	perNodeDir = "kustomize/overlays/per-node"
	gitopsDir  = "gitops"
)

// object is one resource of a kustomize build: its raw JSON and its strictly
// decoded Go value.
type object struct {
	Kind, Name, Namespace string
	Raw                   map[string]any
	Value                 any // *appsv1.Deployment, *corev1.Service, ...
}

// newTyped returns an empty Go value for each apiVersion/kind the manifests
// may contain. A kind missing here fails the build test: add its type.
var newTyped = map[string]func() any{
	"v1/Namespace":       func() any { return &corev1.Namespace{} },
	"v1/ServiceAccount":  func() any { return &corev1.ServiceAccount{} },
	"v1/ConfigMap":       func() any { return &corev1.ConfigMap{} },
	"v1/Service":         func() any { return &corev1.Service{} },
	"apps/v1/Deployment": func() any { return &appsv1.Deployment{} },
	"apps/v1/DaemonSet":  func() any { return &appsv1.DaemonSet{} },
	"batch/v1/CronJob":   func() any { return &batchv1.CronJob{} },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return &monitoringv1.ServiceMonitor{} },
	"monitoring.coreos.com/v1/PrometheusRule": func() any { return &monitoringv1.PrometheusRule{} },
	"cilium.io/v2/CiliumNetworkPolicy":        func() any { return &ciliumNetworkPolicy{} },
}

// build runs kustomize on dir, as `kubectl apply -k dir` would, and decodes
// every resulting object strictly: a field its Go type does not have (a
// typo, a wrong indentation) fails the test.
func build(t *testing.T, dir string) []object {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), dir)
	require.NoError(t, err, "kustomize build %s", dir)
	var objs []object
	for _, r := range resMap.Resources() {
		js, err := r.MarshalJSON()
		require.NoError(t, err)
		gvk := r.GetGvk()
		key := gvk.ApiVersion() + "/" + gvk.Kind
		newValue, ok := newTyped[key]
		require.True(t, ok, "%s: %s %s has no Go type in newTyped: add it", dir, key, r.GetName())
		v := newValue()
		// Kubernetes decodes case-sensitively (sigs.k8s.io/json), unlike
		// encoding/json: readOnlyRootFileSystem is not readOnlyRootFilesystem.
		strict, err := kjson.UnmarshalStrict(js, v)
		require.NoError(t, err, "%s: decode %s %s", dir, key, r.GetName())
		require.Empty(t, strict, "%s: %s %s has fields its Go type does not have", dir, key, r.GetName())
		var raw map[string]any
		require.NoError(t, json.Unmarshal(js, &raw))
		// Types with their own UnmarshalJSON (Cilium's EndpointSelector)
		// decode leniently: every field written must survive a round trip
		// through the Go type, as Cilium's validate-cnp checks.
		back, err := json.Marshal(v)
		require.NoError(t, err)
		var trip map[string]any
		require.NoError(t, json.Unmarshal(back, &trip))
		requireSubset(t, fmt.Sprintf("%s: %s %s", dir, key, r.GetName()), raw, trip)
		objs = append(objs, object{Kind: gvk.Kind, Name: r.GetName(), Namespace: r.GetNamespace(), Raw: raw, Value: v})
	}
	return objs
}

// requireSubset fails when a field of written is missing or different in
// decoded, the same object after a round trip through its Go type.
func requireSubset(t *testing.T, where string, written, decoded any) {
	t.Helper()
	var walk func(path string, w, d any)
	walk = func(path string, w, d any) {
		switch w := w.(type) {
		case map[string]any:
			dm, ok := d.(map[string]any)
			require.True(t, ok, "%s: %s is not an object after decoding", where, path)
			for k, v := range w {
				dv, ok := dm[k]
				require.True(t, ok, "%s: field %s.%s is unknown to its Go type", where, path, k)
				walk(path+"."+k, v, dv)
			}
		case []any:
			ds, ok := d.([]any)
			require.True(t, ok && len(ds) == len(w), "%s: %s differs after decoding", where, path)
			for i := range w {
				walk(fmt.Sprintf("%s[%d]", path, i), w[i], ds[i])
			}
		default:
			require.Equal(t, w, d, "%s: %s differs after decoding", where, path)
		}
	}
	walk("", written, decoded)
}

// one returns the only object of type T in objs.
func one[T any](t *testing.T, objs []object) T {
	t.Helper()
	all := every[T](objs)
	require.Len(t, all, 1, "objects of type %T", *new(T))
	return all[0]
}

// every returns the objects of type T in objs.
func every[T any](objs []object) []T {
	var all []T
	for _, o := range objs {
		if v, ok := o.Value.(T); ok {
			all = append(all, v)
		}
	}
	return all
}

func kinds(objs []object) []string {
	var ks []string
	for _, o := range objs {
		ks = append(ks, o.Kind+"/"+o.Name)
	}
	sort.Strings(ks)
	return ks
}

// requireTool returns the path of a command the tests run, or fails saying
// which Debian package installs it. Tests never skip for a missing tool.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found in PATH: apt-get install %s", name, pkg)
	}
	return p
}

// run runs a command and returns its combined output; it fails the test when
// the exit status is not want.
func run(t *testing.T, want int, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		require.True(t, ok, "%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		code = ee.ExitCode()
	}
	require.Equal(t, want, code, "exit status of %s %s\n%s", name, strings.Join(args, " "), out)
	return string(out)
}

// egressdBinary builds cmd/egressd into a temporary directory of t, as the
// Dockerfile does, and returns its path.
func egressdBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "egressd")
	run(t, 0, "..", []string{"CGO_ENABLED=0"}, "go", "build", "-trimpath",
		"-ldflags", "-X main.version=deploy-test", "-o", bin, "./cmd/egressd")
	return bin
}

// varRef matches a Kubernetes $(VAR) reference in a container's args.
var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expand replaces $(VAR) references as the kubelet does; it fails on a
// reference to a variable the container does not define (the kubelet would
// pass it on literally).
func expand(t *testing.T, s string, env map[string]string) string {
	t.Helper()
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		name := varRef.FindStringSubmatch(m)[1]
		v, ok := env[name]
		require.True(t, ok, "%q refers to $(%s), which the container does not define", s, name)
		return v
	})
}

// containerEnv returns the environment a container gets from its env and
// envFrom ConfigMaps (found in objs). Secret values are placeholders.
func containerEnv(t *testing.T, c corev1.Container, objs []object) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		require.NotNil(t, from.ConfigMapRef, "container %s: envFrom other than a ConfigMap", c.Name)
		cm := findConfigMap(objs, from.ConfigMapRef.Name)
		require.NotNil(t, cm, "container %s: envFrom ConfigMap %q is not in the build", c.Name, from.ConfigMapRef.Name)
		for k, v := range cm.Data {
			env[from.Prefix+k] = v
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = fmt.Sprintf("secret:%s/%s", e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
		default:
			env[e.Name] = "from-field"
		}
	}
	return env
}

func findConfigMap(objs []object, name string) *corev1.ConfigMap {
	for _, cm := range every[*corev1.ConfigMap](objs) {
		if cm.Name == name {
			return cm
		}
	}
	return nil
}
