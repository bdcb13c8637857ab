package collector_test

import (
	"bytes"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector"
)

// barePodFlow is a flow of a pod without labels or workload: the pod's
// name is its app, so each such pod is an app of its own.
func barePodFlow(i, n int) *flowpb.Flow {
	f := podFlow(t0, "140.82.112.6", 443)
	f.Uuid = "bare-" + strconv.Itoa(i) + "-" + strconv.Itoa(n)
	f.Source.Namespace, f.Source.PodName = "attack", "bare"+strconv.Itoa(i)+"x"
	f.Source.Labels = []string{"k8s:io.cilium.k8s.policy.cluster=homelab", "k8s:io.kubernetes.pod.namespace=attack"}
	f.Source.Workloads = nil
	return f
}

func boundedPipeline(t *testing.T, maxApps int, now *time.Time) (*collector.Pipeline, *collector.Metrics, *captureSink, *bytes.Buffer) {
	t.Helper()
	m := collector.NewMetrics(prometheus.NewRegistry())
	opts := collector.DefaultOptions()
	opts.MaxApps = maxApps
	opts.Now = func() time.Time { return *now }
	var log bytes.Buffer
	opts.Log = slog.New(slog.NewTextHandler(&log, nil))
	sink := &captureSink{}
	p, err := collector.NewPipeline(opts, m, sink)
	require.NoError(t, err)
	return p, m, sink, &log
}

// TestPipelineBoundsApps: 5000 bare pods, each its own app, flow twice
// each. The first MaxApps/2 apps are kept, then about one in 100 more, up
// to MaxApps; a kept app keeps all its flows, an app not kept loses all of
// them, and every observation not kept is counted and logged, at most one
// line per 10 s.
func TestPipelineBoundsApps(t *testing.T) {
	t.Parallel()
	const maxApps, pods = 200, 5000
	now := t0
	p, m, sink, log := boundedPipeline(t, maxApps, &now)
	for round := range 2 {
		for i := range pods {
			handleAll(t, p, barePodFlow(i, round))
		}
		now = now.Add(11 * time.Second)
	}
	flows := map[string]int{}
	for _, o := range sink.obs {
		flows[o.App.Name]++
	}
	require.LessOrEqual(t, len(flows), maxApps)
	require.Greater(t, len(flows), maxApps/2, "past half of the bound, apps are sampled")
	for i := range maxApps / 2 {
		require.Equal(t, 2, flows["bare"+strconv.Itoa(i)+"x"], "the first apps are kept, with every flow")
	}
	for app, n := range flows {
		require.Equal(t, 2, n, app)
	}
	require.Equal(t, float64(2*pods-len(sink.obs)), testutil.ToFloat64(m.AppsSampled))
	require.Equal(t, float64(len(flows)), testutil.ToFloat64(m.Apps))
	require.Equal(t, float64(maxApps), testutil.ToFloat64(m.AppsMax))
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	require.Len(t, lines, 2, "one line per 10 s:\n%s", log)
	require.Contains(t, lines[0], "msg=apps_not_kept")
	require.Contains(t, lines[0], "max_apps=200")
	// The first line counts its own observation, the second those since,
	// up to its own: the rest of the first round and the first of the
	// second.
	require.True(t, strings.HasSuffix(lines[0], "observations_not_kept=1"), lines[0])
	require.Contains(t, lines[1], "observations_not_kept="+strconv.Itoa(pods-len(flows)))
}

// TestPipelineKeepsStoredApps: the apps stored before (KeepApp) are kept
// even beyond MaxApps; a new app is not, once they fill the bound.
func TestPipelineKeepsStoredApps(t *testing.T) {
	t.Parallel()
	now := t0
	p, m, sink, _ := boundedPipeline(t, 10, &now)
	for i := range 20 {
		p.KeepApp(egressd.App{Cluster: "homelab", Namespace: "attack", Name: "bare" + strconv.Itoa(i) + "x"})
	}
	for i := range 30 {
		handleAll(t, p, barePodFlow(i, 0))
	}
	require.Len(t, sink.obs, 20)
	for i, o := range sink.obs {
		require.Equal(t, "bare"+strconv.Itoa(i)+"x", o.App.Name)
	}
	require.Equal(t, float64(10), testutil.ToFloat64(m.AppsSampled))
	require.Equal(t, float64(20), testutil.ToFloat64(m.Apps))
}

func TestOptionsValidateMaxApps(t *testing.T) {
	t.Parallel()
	o := collector.DefaultOptions()
	o.MaxApps = 0
	require.ErrorContains(t, o.Validate(), "MaxApps must be > 0 (--max-apps)")
}

// TestDNSCacheBoundsAnswersPerPod: a pod resolving addresses by the
// thousand keeps at most DNSMaxEntriesPerPod of them, so that another
// pod's answers stay and name its connections; the answers not kept are
// counted, and the pod gets answers in again once its answers expired.
func TestDNSCacheBoundsAnswersPerPod(t *testing.T) {
	t.Parallel()
	m := collector.NewMetrics(prometheus.NewRegistry())
	opts := collector.DefaultOptions()
	opts.DNSMaxEntries, opts.DNSMaxEntriesPerPod = 100, 10
	sink := &captureSink{}
	p, err := collector.NewPipeline(opts, m, sink)
	require.NoError(t, err)
	addr := func(i int) string { return "203.0.113." + strconv.Itoa(i) }
	other := func(f *flowpb.Flow) *flowpb.Flow {
		f.Uuid += "-other"
		f.Destination.PodName, f.Destination.Workloads[0].Name = "sonarr-5f7c9b8d4-q8z2m", "sonarr"
		return f
	}
	handleAll(t, p, other(dnsAnswer(t0, "api.sonarr.example.", 60, "198.51.100.7")))
	for i := range 200 {
		handleAll(t, p, dnsAnswer(t0, "h"+strconv.Itoa(i)+".tunnel.example.", 60, addr(i)))
	}
	require.Equal(t, float64(190), testutil.ToFloat64(m.DNSPodFull))
	conn := func(at time.Time, ip string) *flowpb.Flow {
		f := podFlow(at, ip, 443)
		f.Uuid += "-conn"
		return f
	}
	sonarrConn := podFlow(t0.Add(time.Second), "198.51.100.7", 443)
	sonarrConn.Source.PodName, sonarrConn.Source.Workloads[0].Name = "sonarr-5f7c9b8d4-q8z2m", "sonarr"
	handleAll(t, p, conn(t0.Add(time.Second), addr(9)), conn(t0.Add(time.Second), addr(10)), sonarrConn)
	require.Len(t, sink.obs, 3)
	require.Equal(t, "h9.tunnel.example", sink.obs[0].Destination.Name, "within the pod's bound")
	require.Equal(t, addr(10), sink.obs[1].Destination.Name, "past it: named by address")
	require.Equal(t, "api.sonarr.example", sink.obs[2].Destination.Name, "the other pod's answer stayed")

	// Two hours later (answers live an hour at least), the pod's answers
	// have expired and new ones are kept.
	later := t0.Add(2 * time.Hour)
	handleAll(t, p, dnsAnswer(later, "again.example.", 60, addr(250)), conn(later.Add(time.Second), addr(250)))
	require.Equal(t, "again.example", sink.obs[3].Destination.Name)
	require.Equal(t, float64(190), testutil.ToFloat64(m.DNSPodFull))
}
