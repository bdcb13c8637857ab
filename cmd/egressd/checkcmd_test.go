package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBaselineCheck: a fresh export passes; a narrowed file fails naming
// the app and the destination, in text and JSON; an unreadable file is an
// error.
func TestBaselineCheck(t *testing.T) {
	t.Parallel()
	env := dbEnv(t)
	require.Equal(t, 0, run(t, env, "replay", capture).code)
	dir := t.TempDir()
	require.Equal(t, 0, run(t, env, "baseline", "export", "--dir", dir, "--at", captureEnd).code)

	r := run(t, env, "baseline", "check", "--dir", dir, "--at", captureEnd)
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stderr, "allows everything the window saw")

	path := filepath.Join(dir, "media", "recyclarr.json")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	narrowed := strings.Replace(string(b), `"api.github.com"`, `"api.gitlab.com"`, 1)
	require.NoError(t, os.WriteFile(path, []byte(narrowed), 0o644))
	r = run(t, env, "baseline", "check", "--dir", dir, "--at", captureEnd)
	require.Equal(t, 1, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, "media/recyclarr: 1 destinations would be novel")
	require.Regexp(t, `\n  api\.github\.com +443/TCP +\d+ +\S+ +recyclarr-`, r.stdout)

	r = run(t, env, "baseline", "check", "--dir", dir, "--at", captureEnd, "--output", "json")
	require.Equal(t, 1, r.code, r.stdout+r.stderr)
	var report struct {
		Findings []struct {
			Namespace, App, Destination string
			Port                        int
		}
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &report))
	require.Len(t, report.Findings, 1)
	require.Equal(t, "recyclarr", report.Findings[0].App)
	require.Equal(t, "api.github.com", report.Findings[0].Destination)
	require.Equal(t, 443, report.Findings[0].Port)

	require.NoError(t, os.WriteFile(path, []byte("{"), 0o644))
	r = run(t, env, "baseline", "check", "--dir", dir, "--at", captureEnd)
	require.Equal(t, 2, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stderr, "recyclarr.json")

	r = run(t, env, "baseline", "check", "--dir", dir, "--output", "yaml")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, `--output "yaml": want text or json`)
}

// TestBaselineWarnsOfLostEvents: export, diff and check over a window in
// which Hubble lost events say which node lost how many, and when.
func TestBaselineWarnsOfLostEvents(t *testing.T) {
	t.Parallel()
	env := dbEnv(t)
	require.Equal(t, 0, run(t, env, "replay", capture).code)
	lost := filepath.Join(t.TempDir(), "lost.jsonl")
	require.NoError(t, os.WriteFile(lost, []byte(
		`{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"40"},"node_name":"homelab/k8s-node-9","time":"2026-11-07T10:00:00Z"}`+"\n"+
			`{"lost_events":{"source":"PERF_EVENT_RING_BUFFER","num_events_lost":"2"},"node_name":"homelab/k8s-node-9","time":"2026-11-07T11:30:00Z"}`+"\n"+
			`{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"5"},"node_name":"k8s-node-8","time":"2026-10-01T00:00:00Z"}`+"\n"), 0o644))
	require.Equal(t, 0, run(t, env, "replay", lost).code)
	// Replaying the records again counts them once.
	require.Equal(t, 0, run(t, env, "replay", lost).code)

	const want = "node k8s-node-9 lost 42 events between 2026-11-07T10:00:00Z and 2026-11-07T11:30:00Z; baselines may be incomplete"
	dir := t.TempDir()
	r := run(t, env, "baseline", "export", "--dir", dir, "--at", captureEnd)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stderr, "baseline export: warning: "+want)
	require.NotContains(t, r.stderr, "k8s-node-8", "outside the window")
	r = run(t, env, "baseline", "diff", "--dir", dir, "--at", captureEnd)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stderr, "baseline diff: warning: "+want)

	r = run(t, env, "baseline", "check", "--dir", dir, "--at", captureEnd)
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, "warning: "+want)
	r = run(t, env, "baseline", "check", "--dir", dir, "--at", captureEnd, "--output", "json")
	require.Equal(t, 0, r.code, r.stdout+r.stderr)
	var report struct{ Coverage []string }
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &report))
	// The bundled week has lost events of its own, on three nodes.
	require.Len(t, report.Coverage, 4)
	require.Contains(t, report.Coverage, want)
}
