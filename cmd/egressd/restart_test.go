package main

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector/flowgen"
	"github.com/egressd/egressd/collector/hubbletest"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgtest"
)

// restartScenario is the demo's nine days with one more planted anomaly: a
// DNS tunnel (sonarr asks for 600 names under t.exfil.example within six
// minutes, none answered) on the eighth day.
func restartScenario() flowgen.Scenario { return restartScenarioAt(detectStart) }

// restartScenarioAt is restartScenario starting at start.
func restartScenarioAt(start time.Time) flowgen.Scenario {
	s := demoScenario(start)
	tunnel := start.Add(8*24*time.Hour + 18*time.Hour)
	for m := range 6 {
		var do []flowgen.Action
		for i := range 100 {
			name := fmt.Sprintf("q%03d-%02d.t.exfil.example", i, m)
			do = append(do, flowgen.Lookup{Of: &flowgen.Remote{Name: name, NXDomain: true}})
		}
		s.Extra = append(s.Extra, flowgen.Event{At: tunnel.Add(time.Duration(m) * time.Minute), Source: "media/sonarr", Do: do})
	}
	return s
}

// anomalyKey is what makes two runs' anomalies the same one: a volume
// anomaly has no destination, and a DNS tunnel's example name depends on
// where its window was cut, not its domain.
func anomalyKey(l anomalyLine) string {
	dest := fmt.Sprintf("%s:%d", l.Destination, l.Port)
	switch l.Kind {
	case "egress_volume":
		dest = ""
	case "dns_tunnel", "novel_destination_flood":
		dest = l.Details["domain"]
	}
	return l.Kind + " " + l.Namespace + "/" + l.App + " " + dest
}

// anomalyKeys returns the sorted keys of the anomalies a replay printed.
func anomalyKeys(t *testing.T, stdout string) []string {
	t.Helper()
	var keys []string
	for _, l := range parseAnomalies(t, stdout) {
		keys = append(keys, anomalyKey(l))
	}
	sort.Strings(keys)
	return keys
}

// TestReplayRestartsChangeNothing streams the days after a learning week
// once in one process (detectedDays), and once cut into processes at
// awkward points, each a new detector and collector on a copy of the
// learnt week, as after a restart: before the volume burst's day is old
// enough for the rule's own history (the process that sees the burst
// started ten hours before it), inside the burst before and after it
// fires, inside the DNS tunnel's window, and between a DNS answer and the
// connection that uses it (named from the stored answer).
// Both runs report the same anomalies, each exactly once.
func TestReplayRestartsChangeNothing(t *testing.T) {
	t.Parallel()
	flows, err := restartFlows()
	require.NoError(t, err)
	env := snapshotEnv(t, learntWeek)
	// The parts' bounds, as indices into the days.
	day := 24 * time.Hour
	days := flows.days
	// The first part ends just after sonarr's DNS answer for the DNS-only
	// name, before the connection that uses it.
	answer := slices.IndexFunc(days, func(r *observer.GetFlowsResponse) bool {
		l7 := r.GetFlow().GetL7()
		return l7.GetType() == flowpb.L7FlowType_RESPONSE &&
			strings.TrimSuffix(l7.GetDns().GetQuery(), ".") == "cdn.newthing.example"
	})
	require.GreaterOrEqual(t, answer, 0, "the DNS answer for cdn.newthing.example")
	bounds := []int{0, answer + 1}
	for _, cut := range []time.Duration{
		8*day + 3*time.Hour,                    // 9 h before the burst
		8*day + 12*time.Hour + 90*time.Second,  // inside the burst, before it fires
		8*day + 12*time.Hour + 6*time.Minute,   // inside the burst, after it fired
		8*day + 18*time.Hour + 150*time.Second, // inside the DNS tunnel's window
	} {
		end := detectStart.Add(cut)
		bounds = append(bounds, sort.Search(len(days), func(i int) bool { return !days[i].GetTime().AsTime().Before(end) }))
	}
	bounds = append(bounds, len(days))
	require.True(t, slices.IsSorted(bounds), "the DNS answer comes before the first cut: %v", bounds)

	var split []string
	for i := range len(bounds) - 1 {
		r := runStdin(t, env, flows.lines(bounds[i], bounds[i+1]), "replay", "--detect", "-")
		require.Equal(t, 0, r.code, r.stderr)
		split = append(split, anomalyKeys(t, r.stdout)...)
	}
	sort.Strings(split)

	// detectedDays is filled by the first test that asks: this one or
	// TestReplayDetectsPlantedAnomaliesExactlyOnce, which may be filling
	// it while this one replays the parts.
	detectedDays.URL(t)
	single := anomalyKeys(t, detectedReplay.stdout)
	want := []string{
		"dns_tunnel media/sonarr exfil.example",
		"egress_volume media/sonarr ",
		"novel_destination home/home-assistant 203.0.113.99:8443",
		"novel_destination media/recyclarr 192.0.2.10:22",
		"novel_destination media/recyclarr exfil.example.net:443",
		"novel_destination media/sonarr cdn.newthing.example:443",
	}
	if diff := cmp.Diff(want, single); diff != "" {
		t.Fatalf("one process (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(single, split); diff != "" {
		t.Fatalf("split into %d processes (-one process +split):\n%s", len(bounds)-1, diff)
	}
}

// storedAnomalyKey is anomalyKey for a stored anomaly.
func storedAnomalyKey(a egressd.Anomaly) string {
	return anomalyKey(anomalyLine{Kind: string(a.Kind), Namespace: a.App.Namespace, App: a.App.Name,
		Destination: a.Destination.Name, Port: int(a.Destination.Port), Details: a.Details})
}

// TestServeSIGKILLChangesNothing streams the same nine days to the egressd
// binary's serve twice: once in one process, and once killed with SIGKILL
// at the awkward points of TestReplayRestartsChangeNothing and restarted
// under the same replica name. Both store the same anomalies, each once.
// The scenario ends at today's midnight, so that serve's wall-clock window
// holds the learning week.
func TestServeSIGKILLChangesNothing(t *testing.T) {
	t.Parallel()
	bin := faultBuild(t)
	day := 24 * time.Hour
	start := time.Now().UTC().Truncate(day).Add(-9 * day)
	all, err := restartScenarioAt(start).Generate()
	require.NoError(t, err)

	run := func(t *testing.T, kills []time.Duration) []string {
		ctx := t.Context()
		srv, addr := startHubble(t, hubbletest.Options{})
		dsn := pgtest.URL(t)
		db := openTestDB(t, dsn)
		serve := func() *faultProc {
			return faultStart(t, bin, "serve", "--hubble-address", addr, "--database-url", string(dsn),
				"--listen", "127.0.0.1:0", "--flush-interval", "200ms", "--hubble-backoff-max", "1s",
				"--retention", "0", "--log-format", "json", "--replica-id", "egressd-pod-a")
		}
		p := serve()
		p.waitRequests(t, srv, 1)
		resps := slices.Clone(all)
		source := "hubble:" + addr
		for i, cut := range append(slices.Clone(kills), 10*day) {
			batch := takeUntil(&resps, start.Add(cut))
			srv.Add(batch...)
			require.NoError(t, waitStored(ctx, db, source, batch, p.done, func() error { return fmt.Errorf("egressd exited: %v", p.err) }))
			if i == len(kills) {
				break
			}
			require.Error(t, p.signal(t, syscall.SIGKILL))
			p = serve()
			p.waitRequests(t, srv, i+2)
		}
		// The detector records what it raised within milliseconds of the
		// flush (unloaded): wait until nothing new is stored for three
		// seconds, which a machine other tests saturate still leaves.
		var keys []string
		stable := time.Now()
		for time.Since(stable) < 3*time.Second {
			as, err := db.Anomalies(ctx, postgres.AnomalyFilter{Limit: postgres.MaxAnomalyLimit})
			require.NoError(t, err)
			var now []string
			for _, a := range as {
				now = append(now, storedAnomalyKey(a))
			}
			sort.Strings(now)
			if !slices.Equal(now, keys) {
				keys, stable = now, time.Now()
			}
			time.Sleep(50 * time.Millisecond)
		}
		return keys
	}

	var single, killed []string
	t.Run("one process", func(t *testing.T) {
		single = run(t, nil)
	})
	t.Run("killed four times", func(t *testing.T) {
		killed = run(t, []time.Duration{
			8*day + 3*time.Hour,                    // 9 h before the burst
			8*day + 12*time.Hour + 90*time.Second,  // inside the burst, before it fires
			8*day + 12*time.Hour + 6*time.Minute,   // inside the burst, after it fired
			8*day + 18*time.Hour + 150*time.Second, // inside the DNS tunnel's window
		})
	})
	require.Contains(t, single, "egress_volume media/sonarr ")
	require.Contains(t, single, "dns_tunnel media/sonarr exfil.example")
	if diff := cmp.Diff(single, killed); diff != "" {
		t.Fatalf("killed with SIGKILL (-one process +killed):\n%s", diff)
	}
}
