package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
)

var detectStart = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

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
// acceptance test: learning on a week of flows (learntWeek: its replay
// raises nothing), then replaying two more days with planted anomalies
// (detectedDays) reports each exactly once near its time (a DNS tunnel
// too), and nothing for the apps that behaved, nothing for the app still
// learning.
func TestReplayDetectsPlantedAnomaliesExactlyOnce(t *testing.T) {
	t.Parallel()
	flows, err := restartFlows()
	require.NoError(t, err)
	env := snapshotEnv(t, detectedDays)
	r := detectedReplay
	lines := parseAnomalies(t, r.stdout)
	day := 24 * time.Hour
	want := []detected{
		{"novel_destination", "media/recyclarr", "exfil.example.net", 443, "FORWARDED", 7*day + 6*time.Hour},
		{"novel_destination", "home/home-assistant", "203.0.113.99", 8443, "FORWARDED", 7*day + 10*time.Hour},
		{"novel_destination", "media/sonarr", "cdn.newthing.example", 443, "FORWARDED", 8*day + 2*time.Hour},
		{"novel_destination", "media/recyclarr", "192.0.2.10", 22, "DROPPED", 8*day + 5*time.Hour},
		{"egress_volume", "media/sonarr", "", 0, "", 8*day + 12*time.Hour},
		// The 501st name, in the tunnel's sixth minute.
		{"dns_tunnel", "media/sonarr", "q000-05.t.exfil.example", 53, "FORWARDED", 8*day + 18*time.Hour + 5*time.Minute},
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
	r = runStdin(t, env, flows.dayLines, "replay", "--detect", "-")
	require.Equal(t, 0, r.code, r.stderr)
	require.Empty(t, parseAnomalies(t, r.stdout))
}
