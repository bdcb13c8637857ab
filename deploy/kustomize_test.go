package deploy_test

import (
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/cilium/cilium/pkg/policy/api"
	"github.com/google/go-cmp/cmp"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestBuild(t *testing.T) {
	t.Parallel()
	egressd := []string{
		"CiliumNetworkPolicy/egressd", "ConfigMap/egressd-config", "Deployment/egressd",
		"PrometheusRule/egressd", "Service/egressd", "ServiceAccount/egressd", "ServiceMonitor/egressd",
	}
	tests := []struct {
		name      string
		dir       string
		want      []string // Kind/name, sorted; ConfigMap names without their hash
		namespace string   // every namespaced object's, "" when left to overlays
		image     string
	}{
		{"base", baseDir, egressd, "", "registry.example.com/egressd/egressd:latest"},
		{"example overlay", exampleDir, sorted(append([]string{"Namespace/egressd"}, egressd...)), "egressd", "registry.example.com/egressd/egressd:v0.1.0"},
		{"per-node overlay", perNodeDir, sorted(append([]string{"Namespace/egressd", "DaemonSet/egressd"}, slices.DeleteFunc(slices.Clone(egressd), func(k string) bool { return k == "Deployment/egressd" })...)), "egressd", "registry.example.com/egressd/egressd:v0.1.0"},
		{"gitops", gitopsDir, []string{"CiliumNetworkPolicy/egressd-gitops", "CronJob/egressd-gitops"}, "egressd", "registry.example.com/egressd/egressd-gitops:v0.1.0"},
	}
	hash := regexp.MustCompile(`^(ConfigMap/.*)-[a-z0-9]{10}$`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			objs := build(t, tt.dir)
			got := kinds(objs)
			for i, k := range got {
				got[i] = hash.ReplaceAllString(k, "$1")
			}
			require.Empty(t, cmp.Diff(tt.want, got), "objects (-want +got)")
			for _, o := range objs {
				if o.Kind == "Namespace" {
					continue
				}
				require.Equal(t, tt.namespace, o.Namespace, "namespace of %s/%s", o.Kind, o.Name)
			}
			for _, o := range objs {
				for _, c := range podSpec(o).Containers {
					require.Equal(t, tt.image, c.Image, "image of %s/%s", o.Kind, o.Name)
				}
			}
		})
	}
}

// podSpec returns the pod template of a workload, or an empty one.
func podSpec(o object) corev1.PodSpec {
	switch v := o.Value.(type) {
	case *appsv1.Deployment:
		return v.Spec.Template.Spec
	case *appsv1.DaemonSet:
		return v.Spec.Template.Spec
	case *batchv1.CronJob:
		return v.Spec.JobTemplate.Spec.Template.Spec
	}
	return corev1.PodSpec{}
}

// requireHardened checks the pod security settings every egressd workload
// has: the "restricted" Pod Security Standard, a read-only root filesystem,
// no service account token, resource requests and a memory limit.
func requireHardened(t *testing.T, spec corev1.PodSpec) {
	t.Helper()
	require.NotNil(t, spec.AutomountServiceAccountToken)
	require.False(t, *spec.AutomountServiceAccountToken, "automountServiceAccountToken")
	require.False(t, spec.HostNetwork || spec.HostPID || spec.HostIPC, "host namespaces")
	psc := spec.SecurityContext
	require.NotNil(t, psc, "pod securityContext")
	require.Equal(t, ptr(true), psc.RunAsNonRoot, "pod runAsNonRoot")
	require.Equal(t, ptr(int64(65532)), psc.RunAsUser, "pod runAsUser")
	require.NotNil(t, psc.SeccompProfile)
	require.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, psc.SeccompProfile.Type)
	require.NotEmpty(t, spec.Containers)
	for _, c := range append(spec.InitContainers, spec.Containers...) {
		sc := c.SecurityContext
		require.NotNil(t, sc, "container %s securityContext", c.Name)
		require.Equal(t, ptr(true), sc.RunAsNonRoot, "container %s runAsNonRoot", c.Name)
		require.Equal(t, ptr(int64(65532)), sc.RunAsUser, "container %s runAsUser", c.Name)
		require.Equal(t, ptr(true), sc.ReadOnlyRootFilesystem, "container %s readOnlyRootFilesystem", c.Name)
		require.Equal(t, ptr(false), sc.AllowPrivilegeEscalation, "container %s allowPrivilegeEscalation", c.Name)
		require.NotEqual(t, ptr(true), sc.Privileged, "container %s privileged", c.Name)
		require.NotNil(t, sc.Capabilities, "container %s capabilities", c.Name)
		require.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop, "container %s capabilities.drop", c.Name)
		require.Empty(t, sc.Capabilities.Add, "container %s capabilities.add", c.Name)
		require.NotNil(t, sc.SeccompProfile, "container %s seccompProfile", c.Name)
		require.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, sc.SeccompProfile.Type)
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			require.Contains(t, c.Resources.Requests, r, "container %s requests", c.Name)
		}
		require.Contains(t, c.Resources.Limits, corev1.ResourceMemory, "container %s limits", c.Name)
	}
}

func ptr[T any](v T) *T { return &v }

func sorted(s []string) []string {
	sort.Strings(s)
	return s
}

func TestEgressdDeployment(t *testing.T) {
	t.Parallel()
	for _, dir := range []string{baseDir, exampleDir} {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			objs := build(t, dir)
			d := one[*appsv1.Deployment](t, objs)
			spec := d.Spec.Template.Spec
			requireHardened(t, spec)
			require.Equal(t, ptr(int32(1)), d.Spec.Replicas, "replicas")

			podLabels := labels.Set(d.Spec.Template.Labels)
			sel := labels.SelectorFromSet(d.Spec.Selector.MatchLabels)
			require.True(t, sel.Matches(podLabels), "Deployment selector %v does not select its pods %v", sel, podLabels)
			sa := one[*corev1.ServiceAccount](t, objs)
			require.Equal(t, sa.Name, spec.ServiceAccountName, "serviceAccountName")
			require.Equal(t, ptr(false), sa.AutomountServiceAccountToken, "ServiceAccount automountServiceAccountToken")

			require.Len(t, spec.Containers, 1)
			c := spec.Containers[0]
			require.Equal(t, "serve", c.Args[0], "args start with the command (ENTRYPOINT is /egressd)")
			require.Len(t, c.Ports, 1)
			require.Equal(t, corev1.ContainerPort{Name: "http-metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP}, c.Ports[0])
			require.Contains(t, c.Args, "--listen=:9090", "egressd listens on the container port")

			probes := []struct {
				name  string
				probe *corev1.Probe
				path  string
			}{
				{"startup", c.StartupProbe, "/healthz"},
				{"liveness", c.LivenessProbe, "/healthz"},
				{"readiness", c.ReadinessProbe, "/readyz"},
			}
			for _, p := range probes {
				require.NotNil(t, p.probe, "%s probe", p.name)
				require.NotNil(t, p.probe.HTTPGet, "%s probe is an HTTP GET", p.name)
				require.Equal(t, p.path, p.probe.HTTPGet.Path, "%s probe path", p.name)
				require.Equal(t, int32(9090), containerPort(t, c, p.probe.HTTPGet.Port), "%s probe port", p.name)
			}

			// Secrets come from the Secret egressd that the operator creates
			// (README.md); everything else from the generated ConfigMap.
			// DATABASE_URL is required; without EGRESSD_API_TOKEN the API is
			// read-only.
			secretKeys := map[string]bool{}
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					ref := e.ValueFrom.SecretKeyRef
					require.Equal(t, "egressd", ref.Name, "Secret of %s", e.Name)
					require.Equal(t, e.Name, ref.Key, "Secret key of %s", e.Name)
					secretKeys[e.Name] = ref.Optional != nil && *ref.Optional
				}
			}
			require.Equal(t, map[string]bool{"DATABASE_URL": false, "EGRESSD_API_TOKEN": true}, secretKeys, "Secret keys (optional)")
			env := containerEnv(t, c, objs)
			for _, k := range []string{"HUBBLE_ADDRESS", "ALERTMANAGER_URL", "PROMETHEUS_URL"} {
				require.Contains(t, env, k, "the ConfigMap sets %s", k)
			}
			require.Equal(t, "hubble-relay.kube-system:80", env["HUBBLE_ADDRESS"])
			for _, a := range c.Args {
				expand(t, a, env) // every $(VAR) is defined
			}

			svc := one[*corev1.Service](t, objs)
			require.True(t, labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels), "Service selects egressd's pods")
			require.Len(t, svc.Spec.Ports, 1)
			sp := svc.Spec.Ports[0]
			require.Equal(t, "http-metrics", sp.Name)
			require.Equal(t, int32(9090), sp.Port)
			require.Equal(t, int32(9090), containerPort(t, c, sp.TargetPort), "Service targetPort")

			sm := one[*monitoringv1.ServiceMonitor](t, objs)
			smSel := labels.SelectorFromSet(sm.Spec.Selector.MatchLabels)
			require.Empty(t, sm.Spec.Selector.MatchExpressions)
			require.True(t, smSel.Matches(labels.Set(svc.Labels)), "ServiceMonitor selects the Service")
			require.Empty(t, sm.Spec.JobLabel, "the scrape job is named after the Service: the rules match job=%q", svc.Name)
			require.Len(t, sm.Spec.Endpoints, 1)
			require.Equal(t, sp.Name, sm.Spec.Endpoints[0].Port, "ServiceMonitor port")
			require.Equal(t, "/metrics", sm.Spec.Endpoints[0].Path)
		})
	}
}

// containerPort resolves a probe's or Service's port (number or name) to
// the container's port number.
func containerPort(t *testing.T, c corev1.Container, p intstr.IntOrString) int32 {
	t.Helper()
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	t.Fatalf("container %s has no port named %q", c.Name, p.StrVal)
	return 0
}

// TestServeFlags runs the real egressd binary: every flag in the Deployment's
// args must be one `egressd serve -h` lists, and the args as the kubelet
// expands them must parse (`serve ARGS... -h` exits 0 only when every flag
// before -h is defined and its value parses).
func TestServeFlags(t *testing.T) {
	t.Parallel()
	bin := egressdBinary(t)
	help := run(t, 0, "", nil, bin, "serve", "-h")
	defined := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  --([a-z0-9-]+)`).FindAllStringSubmatch(help, -1) {
		defined[m[1]] = true
	}
	require.Contains(t, defined, "hubble-address", "serve -h output:\n%s", help)
	flagName := regexp.MustCompile(`^--?([a-z0-9-]+)(=|$)`)
	for _, dir := range []string{baseDir, exampleDir} {
		objs := build(t, dir)
		c := one[*appsv1.Deployment](t, objs).Spec.Template.Spec.Containers[0]
		env := containerEnv(t, c, objs)
		var args []string
		for _, a := range c.Args[1:] {
			m := flagName.FindStringSubmatch(a)
			require.NotNil(t, m, "%s: arg %q is not a --flag=value", dir, a)
			require.True(t, defined[m[1]], "%s: --%s is not a flag of egressd serve", dir, m[1])
			args = append(args, expand(t, a, env))
		}
		out := run(t, 0, "", nil, bin, append(append([]string{"serve"}, args...), "-h")...)
		require.NotContains(t, out, "invalid value", dir)
	}
}

// TestCiliumNetworkPolicies validates every policy as Cilium does (its
// CRD's schema, then the rules' Sanitize), checks that it selects its
// workload, and that egressd's own policy lets it reach what it needs.
func TestCiliumNetworkPolicies(t *testing.T) {
	t.Parallel()
	for _, dir := range []string{baseDir, exampleDir, gitopsDir} {
		objs := build(t, dir)
		for _, o := range objs {
			cnp, ok := o.Value.(*ciliumNetworkPolicy)
			if !ok {
				continue
			}
			require.NoError(t, validateCNP(t, o.Raw, cnp), "%s: %s", dir, o.Name)

			// The policy selects the workload's pods.
			var pod labels.Set
			for _, w := range objs {
				switch x := w.Value.(type) {
				case *appsv1.Deployment:
					pod = x.Spec.Template.Labels
				case *appsv1.DaemonSet:
					pod = x.Spec.Template.Labels
				case *batchv1.CronJob:
					pod = x.Spec.JobTemplate.Spec.Template.Labels
				}
			}
			sel := cnp.Spec.EndpointSelector.LabelSelector
			require.NotNil(t, sel)
			require.Empty(t, sel.MatchExpressions)
			require.NotEmpty(t, sel.MatchLabels)
			for k, want := range sel.MatchLabels {
				require.Equal(t, want, pod[k], "%s: %s selects pods by %s", dir, o.Name, k)
			}
		}
		if dir == gitopsDir {
			continue
		}
		cnp := one[*ciliumNetworkPolicy](t, objs)
		egress := map[string]bool{}
		dnsRule := false
		for _, r := range cnp.Spec.Egress {
			for _, tp := range r.ToPorts {
				for _, p := range tp.Ports {
					egress[p.Port+"/"+string(p.Protocol)] = true
					if p.Port == "53" && tp.Rules != nil && len(tp.Rules.DNS) > 0 {
						dnsRule = true
					}
				}
			}
		}
		for _, want := range []string{"4245/TCP", "80/TCP", "5432/TCP", "9093/TCP", "9090/TCP", "53/UDP", "53/TCP"} {
			require.True(t, egress[want], "%s: egress to %s", dir, want)
		}
		require.True(t, dnsRule, "%s: DNS goes through Cilium's DNS proxy (a dns rule)", dir)
		require.Len(t, cnp.Spec.Ingress, 1)
		in := cnp.Spec.Ingress[0]
		require.Equal(t, []api.PortProtocol{{Port: "9090", Protocol: api.ProtoTCP}}, in.ToPorts[0].Ports, "%s: ingress to /metrics only", dir)
		require.Equal(t, "prometheus", in.FromEndpoints[0].LabelSelector.MatchLabels["app.kubernetes.io/name"], "%s: ingress from Prometheus", dir)
	}
}

func TestGitOpsCronJob(t *testing.T) {
	t.Parallel()
	objs := build(t, gitopsDir)
	cj := one[*batchv1.CronJob](t, objs)
	spec := cj.Spec.JobTemplate.Spec.Template.Spec
	requireHardened(t, spec)
	require.Equal(t, batchv1.ForbidConcurrent, cj.Spec.ConcurrencyPolicy)
	require.Equal(t, corev1.RestartPolicyNever, spec.RestartPolicy)
	c := spec.Containers[0]
	require.Equal(t, []string{"sync"}, c.Args)
	env := containerEnv(t, c, objs)
	require.Equal(t, "secret:egressd/DATABASE_URL", env["DATABASE_URL"], "the database URL comes from egressd's Secret")
	for _, k := range []string{"GIT_REPO", "BASELINE_DIR", "GIT_SSH_KEY", "GIT_KNOWN_HOSTS"} {
		require.NotEmpty(t, env[k], k)
	}

	// The key and known_hosts files named in the environment are in the
	// mounted Secret, readable by the job's group only; /tmp is writable.
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m
	}
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	require.Equal(t, "/tmp", mounts["tmp"].MountPath)
	require.NotNil(t, vols["tmp"].EmptyDir)
	cred := vols["git-credentials"].Secret
	require.NotNil(t, cred)
	require.Equal(t, "egressd-gitops", cred.SecretName)
	require.Equal(t, ptr(int32(0o440)), cred.DefaultMode)
	require.Equal(t, ptr(int64(65532)), spec.SecurityContext.FSGroup)
	dir := mounts["git-credentials"].MountPath
	require.Equal(t, dir+"/ssh-privatekey", env["GIT_SSH_KEY"])
	require.Equal(t, dir+"/known_hosts", env["GIT_KNOWN_HOSTS"])
	require.True(t, strings.HasPrefix(env["HOME"], "/tmp"), "HOME is writable")
}
