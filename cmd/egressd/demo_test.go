package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDemo runs `egressd demo` as make demo does (here with the test's
// database): it learns, prints each planted incident as an alert, and writes
// the learnt baselines.
func TestDemo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := run(t, dbEnv(t), "demo", "--dir", dir)
	require.Equal(t, 0, r.code, r.stderr)
	for _, want := range []string{
		"day 1 (learning)", "day 9 (watching)",
		"media/recyclarr reached exfil.example.net:443/TCP",
		"home/home-assistant reached 203.0.113.99:8443/TCP",
		"media/sonarr reached cdn.newthing.example:443/TCP",
		"media/recyclarr tried to reach 192.0.2.10:22/TCP",
		"EgressVolumeAnomaly",
		"==> 5 alerts raised",
		"/api/v1/apps",
	} {
		require.Contains(t, r.stdout, want)
	}
	require.NotContains(t, r.stdout, "new-app", "an app still learning raises nothing")
	files, err := filepath.Glob(filepath.Join(dir, "*", "*.json"))
	require.NoError(t, err)
	require.Len(t, files, 6)
	b, err := os.ReadFile(filepath.Join(dir, "media", "recyclarr.json"))
	require.NoError(t, err)
	require.True(t, strings.Contains(string(b), "api.github.com") && !strings.Contains(string(b), "exfil"))
}
