package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cilium/cilium/api/v1/observer"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/collector/flowgen"
)

var detectStart = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// writeCapture writes responses as hubble observe -o jsonpb lines.
func writeCapture(t *testing.T, path string, resps []*observer.GetFlowsResponse) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	w := bufio.NewWriter(f)
	require.NoError(t, flowgen.WriteJSONLines(w, resps))
	require.NoError(t, w.Flush())
	require.NoError(t, f.Close())
}

type detected struct {
	Kind, App, Destination string
	Port                   int
	Verdict                string
	Near                   time.Duration // planted time, after detectStart
}

func parseAnomalies(t *testing.T, stdout string) []anomalyLine {
	t.Helper()
	var out []anomalyLine
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		if line == "" {
			continue
		}
		var l anomalyLine
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		require.NoError(t, dec.Decode(&l), line)
		out = append(out, l)
	}
	return out
}

// TestReplayDetectsPlantedAnomaliesExactlyOnce is the detection slice's
// acceptance test: learning on a week of flows, then replaying two more
// days with planted anomalies reports each exactly once near its time, and
// nothing for the apps that behaved, nothing for the app still learning.
func TestReplayDetectsPlantedAnomaliesExactlyOnce(t *testing.T) {
	t.Parallel()
	resps, err := demoScenario(detectStart).Generate()
	require.NoError(t, err)
	split := sort.Search(len(resps), func(i int) bool {
		return !resps[i].GetTime().AsTime().Before(detectStart.Add(7 * 24 * time.Hour))
	})
	dir := t.TempDir()
	week, days := filepath.Join(dir, "week.jsonl"), filepath.Join(dir, "days.jsonl")
	writeCapture(t, week, resps[:split])
	writeCapture(t, days, resps[split:])

	env := dbEnv(t)
	r := run(t, env, "replay", "--detect", week)
	require.Equal(t, 0, r.code, r.stderr)
	require.Empty(t, parseAnomalies(t, r.stdout), "a normal week raises nothing")

	r = run(t, env, "replay", "--detect", days)
	require.Equal(t, 0, r.code, r.stderr)
	lines := parseAnomalies(t, r.stdout)
	day := 24 * time.Hour
	want := []detected{
		{"novel_destination", "media/recyclarr", "exfil.example.net", 443, "FORWARDED", 7*day + 6*time.Hour},
		{"novel_destination", "home/home-assistant", "203.0.113.99", 8443, "FORWARDED", 7*day + 10*time.Hour},
		{"novel_destination", "media/sonarr", "cdn.newthing.example", 443, "FORWARDED", 8*day + 2*time.Hour},
		{"novel_destination", "media/recyclarr", "192.0.2.10", 22, "DROPPED", 8*day + 5*time.Hour},
		{"egress_volume", "media/sonarr", "", 0, "", 8*day + 12*time.Hour},
	}
	var got []detected
	for i, l := range lines {
		at, err := time.Parse(time.RFC3339Nano, l.Time)
		require.NoError(t, err)
		near := time.Duration(0)
		if i < len(want) {
			require.WithinDuration(t, detectStart.Add(want[i].Near), at, 5*time.Minute, "%s reported far from its planted time", l.Summary)
			near = want[i].Near
		}
		got = append(got, detected{l.Kind, l.Namespace + "/" + l.App, l.Destination, l.Port, l.Verdict, near})
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("anomalies (-want +got):\n%s\nstdout:\n%s", diff, r.stdout)
	}

	// Replaying the same days again raises nothing: stored fingerprints.
	r = run(t, env, "replay", "--detect", days)
	require.Equal(t, 0, r.code, r.stderr)
	require.Empty(t, parseAnomalies(t, r.stdout))
}
