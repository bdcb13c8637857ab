package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// policyTestFiles are baseline files as an operator commits them: plain
// exports, a hand-written pattern, an unbounded app and a host app.
var policyTestFiles = map[string]string{
	"media/recyclarr.json": `{
  "apiVersion": "egressd.io/v1",
  "kind": "EgressBaseline",
  "namespace": "media",
  "app": "recyclarr",
  "unbounded": false,
  "destinations": [
    {"name": "*.githubusercontent.com", "ports": ["443/TCP"], "note": "GitHub CDN"},
    {"name": "api.github.com", "ports": ["443/TCP"]}
  ]
}
`,
	"default/web.json": `{
  "apiVersion": "egressd.io/v1",
  "kind": "EgressBaseline",
  "namespace": "default",
  "app": "web",
  "unbounded": false,
  "destinations": [
    {"name": "1.1.1.1", "ports": ["853/TCP"]},
    {"name": "ntp.ubuntu.com", "ports": ["123/UDP"]}
  ]
}
`,
	"ci/runner.json": `{
  "apiVersion": "egressd.io/v1",
  "kind": "EgressBaseline",
  "namespace": "ci",
  "app": "runner",
  "unbounded": true,
  "destinations": []
}
`,
	"host/node-1.json": `{
  "apiVersion": "egressd.io/v1",
  "kind": "EgressBaseline",
  "namespace": "host",
  "app": "node-1",
  "unbounded": false,
  "destinations": [{"name": "archive.ubuntu.com", "ports": ["80/TCP"]}]
}
`,
}

// writeBaselineFiles writes files below a new directory and returns it.
func writeBaselineFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for rel, content := range files {
		path := filepath.Join(dir, filepath.FromSlash(rel))
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	}
	return dir
}

func TestBaselinePolicy(t *testing.T) {
	t.Parallel()
	dir := writeBaselineFiles(t, policyTestFiles)

	// No database: the command reads files only.
	r := run(t, nil, "baseline", "policy", "--dir", dir)
	require.Equal(t, 0, r.code, r.stderr)
	docs := strings.Split(r.stdout, "---\n")
	require.Len(t, docs, 2)
	require.Contains(t, docs[0], "name: egressd-web\n  namespace: default\n")
	require.Contains(t, docs[0], "- \"1.1.1.1/32\"\n")
	require.Contains(t, docs[0], "- matchName: ntp.ubuntu.com\n")
	require.Contains(t, docs[1], "name: egressd-recyclarr\n  namespace: media\n")
	require.Contains(t, docs[1], "- matchPattern: \"*.githubusercontent.com\"\n")
	require.Contains(t, docs[1], "- matchName: api.github.com\n")
	require.Contains(t, docs[1], "app.kubernetes.io/name: recyclarr\n")
	require.Contains(t, r.stderr, "no policy for ci/runner: unbounded")
	require.Contains(t, r.stderr, "no policy for host/node-1: host-network traffic")
	require.Contains(t, r.stderr, "2 policies from 4 baselines")

	// The same again: the same bytes.
	again := run(t, nil, "baseline", "policy", "--dir", dir)
	require.Equal(t, r.stdout, again.stdout)

	// --out writes the same documents to files and prints their paths;
	// --app-label changes the selector.
	out := filepath.Join(t.TempDir(), "policies")
	w := run(t, nil, "baseline", "policy", "--dir", dir, "--out", out)
	require.Equal(t, 0, w.code, w.stderr)
	web, recyclarr := filepath.Join(out, "default", "web.yaml"), filepath.Join(out, "media", "recyclarr.yaml")
	require.Equal(t, web+"\n"+recyclarr+"\n", w.stdout)
	for i, path := range []string{web, recyclarr} {
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		require.Equal(t, docs[i], string(b))
	}
	l := run(t, nil, "baseline", "policy", "--dir", dir, "--app-label", "app", "--dns-selector", "k8s:k8s-app=node-local-dns",
		"--allow-cidr", "192.168.1.0/24", "--no-cluster-rule")
	require.Equal(t, 0, l.code, l.stderr)
	require.Contains(t, l.stdout, "      app: recyclarr\n")
	require.Contains(t, l.stdout, "\"k8s:k8s-app\": node-local-dns\n")
	require.NotContains(t, l.stdout, "kube-dns")
	require.Contains(t, l.stdout, "- \"192.168.1.0/24\"\n")
	require.NotContains(t, l.stdout, "toEntities")
}

func TestBaselinePolicyErrors(t *testing.T) {
	t.Parallel()
	files := map[string]string{
		"media/broken.json": `{"apiVersion": "egressd.io/v1", "kind": "EgressBaseline", "namespace": "media", "app": "broken", "destinations": [{"name": "a b"}]}`,
		"media/ping.json": `{"apiVersion": "egressd.io/v1", "kind": "EgressBaseline", "namespace": "media", "app": "ping",
		  "destinations": [{"name": "ping.example.com", "ports": ["300/ICMPv4"]}]}`,
	}
	for k, v := range policyTestFiles {
		files[k] = v
	}
	dir := writeBaselineFiles(t, files)
	r := run(t, nil, "baseline", "policy", "--dir", dir)
	require.Equal(t, 2, r.code, r.stderr)
	require.Empty(t, r.stdout, "nothing printed when a file is wrong")
	require.Contains(t, r.stderr, filepath.Join(dir, "media", "broken.json")+":")
	require.Contains(t, r.stderr, filepath.Join(dir, "media", "ping.json")+": destination ping.example.com: port 300/ICMPv4")
	require.Contains(t, r.stderr, "2 errors in "+dir)

	out := filepath.Join(t.TempDir(), "policies")
	r = run(t, nil, "baseline", "policy", "--dir", dir, "--out", out)
	require.Equal(t, 2, r.code, r.stderr)
	_, err := os.Stat(out)
	require.ErrorIs(t, err, os.ErrNotExist, "nothing written when a file is wrong")

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no dir", nil, "--dir is required"},
		{"missing dir", []string{"--dir", filepath.Join(dir, "nope")}, filepath.Join(dir, "nope")},
		{"argument", []string{"--dir", dir, "extra"}, `unexpected argument "extra"`},
		{"bad app label", []string{"--dir", dir, "--app-label", "my app"}, `--app-label: baseline: PolicyOptions.AppLabel "my app" is not a label key`},
		{"bad DNS selector", []string{"--dir", dir, "--dns-selector", "k8s-app"}, `--dns-selector: "k8s-app": want KEY=VALUE`},
		{"bad DNS label", []string{"--dir", dir, "--dns-selector", "k8s:k8s-app=kube dns"}, `--dns-selector: baseline: PolicyOptions.DNSSelector value "kube dns"`},
		{"bad CIDR", []string{"--dir", dir, "--allow-cidr", "10.0.0.0/33"}, `--allow-cidr: invalid CIDR "10.0.0.0/33"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, nil, append([]string{"baseline", "policy"}, tt.args...)...)
			require.Equal(t, 2, r.code, r.stderr)
			require.Contains(t, r.stderr, tt.want)
			require.Empty(t, r.stdout)
		})
	}

	// An empty directory: nothing to do, said on standard error.
	r = run(t, nil, "baseline", "policy", "--dir", t.TempDir())
	require.Equal(t, 0, r.code, r.stderr)
	require.Empty(t, r.stdout)
	require.Contains(t, r.stderr, "no baseline files in")
}
