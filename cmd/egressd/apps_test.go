package main

import (
	"context"
	"sort"
	"testing"
	"time"

	observer "github.com/cilium/cilium/api/v1/observer"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector/hubbletest"
)

// barePods returns one flow of each pod, without labels (each pod is an
// app of its own), a second apart from at.
func barePods(at time.Time, pods ...string) []*observer.GetFlowsResponse {
	var out []*observer.GetFlowsResponse
	for i, pod := range pods {
		out = append(out, hubbletest.Response(hubbletest.NewFlow(hubbletest.FlowSpec{
			Time: at.Add(time.Duration(i) * time.Second), Node: "node-1", UUID: pod + at.Format(time.RFC3339),
			Src: hubbletest.PodEndpoint("attack", pod, "10.42.1.17"),
			Dst: hubbletest.WorldEndpoint("93.184.216.34", 443, "example.com"),
		})))
	}
	return out
}

// TestReplayKeepsStoredAppsPastMaxApps: the apps already stored are kept
// whatever --max-apps says, and new apps past it are neither stored nor
// judged, and are reported with the reason.
func TestReplayKeepsStoredAppsPastMaxApps(t *testing.T) {
	t.Parallel()
	env := dbEnv(t)
	dir := t.TempDir()
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	old := []string{"old0x", "old1x", "old2x", "old3x"}
	first := writeFile(t, dir, "first.jsonl", captureLines(t, barePods(at, old...)))
	r := run(t, env, "replay", first)
	require.Equal(t, 0, r.code, r.stderr)

	// An hour later, the same apps and six new ones, with room for four.
	second := writeFile(t, dir, "second.jsonl", captureLines(t, barePods(at.Add(time.Hour), append(old, "new0x", "new1x", "new2x", "new3x", "new4x", "new5x")...)))
	r = run(t, env, "replay", "--max-apps", "4", second)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stderr, "6  apps_sampled: of a new app, past half of --max-apps apps")

	var apps []string
	require.NoError(t, openEnvDB(t, env).EachApp(context.Background(), func(a egressd.App) {
		apps = append(apps, a.Name)
	}))
	sort.Strings(apps)
	require.Equal(t, old, apps)

	r = run(t, env, "replay", "--max-apps", "0", second)
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "MaxApps must be > 0 (--max-apps)")
}
