package deploy_test

import (
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// TestPerNodeDaemonSet checks the per-node variant: a DaemonSet in place
// of the Deployment, each pod reading its own node's agent socket through
// a read-only hostPath mount, named by its node (downward API) as its own
// source, hardened like the Deployment, selected by the Service and its
// policy, and that policy without the egress to Hubble Relay it no longer
// needs.
func TestPerNodeDaemonSet(t *testing.T) {
	t.Parallel()
	objs := build(t, perNodeDir)
	require.Empty(t, every[*appsv1.Deployment](objs), "the DaemonSet replaces the Deployment")
	ds := one[*appsv1.DaemonSet](t, objs)
	spec := ds.Spec.Template.Spec
	requireHardened(t, spec)
	podLabels := labels.Set(ds.Spec.Template.Labels)
	require.True(t, labels.SelectorFromSet(ds.Spec.Selector.MatchLabels).Matches(podLabels), "DaemonSet selector selects its pods")
	require.True(t, labels.SelectorFromSet(one[*corev1.Service](t, objs).Spec.Selector).Matches(podLabels), "Service selects the pods")
	require.Contains(t, spec.SecurityContext.SupplementalGroups, int64(0), "group 0 may connect to the agent's root:root 0660 socket")

	require.Len(t, spec.Containers, 1)
	c := spec.Containers[0]
	env := containerEnv(t, c, objs)
	args := map[string]bool{}
	for _, a := range c.Args {
		args[a] = true
		expand(t, a, env)
	}
	require.Equal(t, "serve", c.Args[0])
	require.True(t, args["--per-node"], "args: %v", c.Args)
	require.True(t, args["--source=node/$(NODE_NAME)"], "args: %v", c.Args)
	require.True(t, args["--hubble-address=$(HUBBLE_ADDRESS)"], "args: %v", c.Args)
	require.True(t, args["--listen=:9090"], "args: %v", c.Args)

	var node *corev1.EnvVar
	for i, e := range c.Env {
		if e.Name == "NODE_NAME" {
			node = &c.Env[i]
		}
	}
	require.NotNil(t, node, "NODE_NAME is set")
	require.NotNil(t, node.ValueFrom)
	require.NotNil(t, node.ValueFrom.FieldRef)
	require.Equal(t, "spec.nodeName", node.ValueFrom.FieldRef.FieldPath)

	// The socket the address names lies in the read-only mount of the
	// node's /var/run/cilium.
	sock, ok := strings.CutPrefix(env["HUBBLE_ADDRESS"], "unix://")
	require.True(t, ok, "HUBBLE_ADDRESS = %q", env["HUBBLE_ADDRESS"])
	require.Equal(t, "/var/run/cilium/hubble.sock", sock)
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		if path.Dir(sock) != m.MountPath {
			continue
		}
		mounted = true
		require.True(t, m.ReadOnly, "the agent's directory is mounted read-only")
		hp := vols[m.Name].HostPath
		require.NotNil(t, hp, "volume %s is the node's directory", m.Name)
		require.Equal(t, "/var/run/cilium", hp.Path)
		require.NotNil(t, hp.Type)
		require.Equal(t, corev1.HostPathDirectory, *hp.Type)
	}
	require.True(t, mounted, "no volume is mounted at %s", path.Dir(sock))
	require.Len(t, spec.Tolerations, 1, "every node, as Cilium's agent")
	require.Equal(t, corev1.TolerationOpExists, spec.Tolerations[0].Operator)

	// The policy: still valid, still reaching PostgreSQL, Alertmanager,
	// Prometheus and DNS, but not Hubble Relay.
	for _, o := range objs {
		if cnp, ok := o.Value.(*ciliumNetworkPolicy); ok {
			require.NoError(t, validateCNP(t, o.Raw, cnp))
			for k, want := range cnp.Spec.EndpointSelector.LabelSelector.MatchLabels {
				require.Equal(t, want, podLabels[k], "the policy selects the pods by %s", k)
			}
			egress := map[string]bool{}
			for _, r := range cnp.Spec.Egress {
				for _, e := range r.ToEndpoints {
					require.NotEqual(t, "hubble-relay", e.LabelSelector.MatchLabels["k8s-app"], "egress to Hubble Relay")
				}
				for _, tp := range r.ToPorts {
					for _, p := range tp.Ports {
						egress[p.Port+"/"+string(p.Protocol)] = true
					}
				}
			}
			for _, want := range []string{"5432/TCP", "9093/TCP", "9090/TCP", "53/UDP"} {
				require.True(t, egress[want], "egress to %s", want)
			}
			require.False(t, egress["4245/TCP"], "egress to Hubble Relay's port")
		}
	}
}

// TestPerNodeServeFlags runs the real binary on the DaemonSet's args as the
// kubelet expands them: every flag exists and parses, --per-node included.
func TestPerNodeServeFlags(t *testing.T) {
	t.Parallel()
	bin := egressdBinary(t)
	objs := build(t, perNodeDir)
	c := one[*appsv1.DaemonSet](t, objs).Spec.Template.Spec.Containers[0]
	env := containerEnv(t, c, objs)
	env["NODE_NAME"] = "k8s-node-1"
	flagName := regexp.MustCompile(`^--([a-z0-9-]+)(=|$)`)
	var args []string
	for _, a := range c.Args[1:] {
		require.Regexp(t, flagName, a)
		args = append(args, expand(t, a, env))
	}
	out := run(t, 0, "", nil, bin, append(append([]string{"serve"}, args...), "-h")...)
	require.NotContains(t, out, "invalid value")
	require.Contains(t, out, "--per-node")
}
