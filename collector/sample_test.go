package collector_test

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector"
)

func newSamplingAggregator(t *testing.T, w collector.Writer, perApp, oneIn int) (*collector.Aggregator, *collector.Metrics) {
	t.Helper()
	m := collector.NewMetrics(prometheus.NewRegistry())
	opts := collector.DefaultAggregatorOptions()
	opts.MaxKeysPerApp = perApp
	opts.SampleOneIn = oneIn
	a, err := collector.NewAggregator(opts, w, slog.New(slog.NewTextHandler(io.Discard, nil)), m)
	require.NoError(t, err)
	return a, m
}

func tunnelName(i int) string { return "q" + strconv.Itoa(i) + ".t.evil.example" }

// TestAggregatorSamplesAnAppPastItsBound: an app reaching 50k names, each
// once, gets at most MaxKeysPerApp of them in (all of the first half, then
// about one in SampleOneIn), while another app's keys are all kept and
// counted in full; every observation not kept is counted.
func TestAggregatorSamplesAnAppPastItsBound(t *testing.T) {
	t.Parallel()
	const perApp, oneIn, names = 200, 10, 50_000
	w := &fakeWriter{}
	a, m := newSamplingAggregator(t, w, perApp, oneIn)
	for i := range names {
		a.Observe(obs(appA, egressd.Destination{Name: tunnelName(i), Port: 443, Protocol: "TCP"}, t0, egressd.VerdictForwarded, ""))
		if i%100 == 0 {
			// appB: 100 names (half of its bound), 5 flows each.
			a.Observe(obs(appB, egressd.Destination{Name: "b" + strconv.Itoa(i/500) + ".example.com", Port: 443, Protocol: "TCP"}, t0, egressd.VerdictForwarded, ""))
		}
	}
	require.NoError(t, a.Flush(context.Background()))
	kept := map[egressd.App]int{}
	flows := map[egressd.App]int64{}
	for _, d := range w.rollups[0].Destinations {
		kept[d.App]++
		flows[d.App] += d.Flows
	}
	require.Equal(t, 100, kept[appB], "the other app keeps every name")
	require.Equal(t, int64(500), flows[appB])
	require.LessOrEqual(t, kept[appA], perApp)
	require.Greater(t, kept[appA], perApp/2, "past half of the bound, names are sampled, not dropped")
	require.Equal(t, float64(names-kept[appA]), testutil.ToFloat64(m.AggSampled))
	require.Zero(t, testutil.ToFloat64(m.AggDropped))
}

// TestAggregatorSamplesByName: a name is kept or not for the whole hour,
// across flushes, and a kept name counts every flow; the budget starts
// again with the next hour of flow time.
func TestAggregatorSamplesByName(t *testing.T) {
	t.Parallel()
	const perApp, oneIn = 10, 4
	w := &fakeWriter{}
	a, m := newSamplingAggregator(t, w, perApp, oneIn)
	dst := func(i int) egressd.Destination {
		return egressd.Destination{Name: tunnelName(i), Port: 443, Protocol: "TCP"}
	}
	for i := range 1000 {
		a.Observe(obs(appA, dst(i), t0, egressd.VerdictForwarded, ""))
	}
	require.NoError(t, a.Flush(context.Background()))
	first := map[string]bool{}
	for _, d := range w.rollups[0].Destinations {
		first[d.Destination.Name] = true
	}
	require.Len(t, first, perApp)
	// The same names again, in a later flush of the same hour: the same
	// ones are kept, each with all its flows.
	for i := range 1000 {
		a.Observe(obs(appA, dst(i), t0.Add(time.Minute), egressd.VerdictForwarded, ""))
		a.Observe(obs(appA, dst(i), t0.Add(time.Minute), egressd.VerdictForwarded, ""))
	}
	require.NoError(t, a.Flush(context.Background()))
	second := map[string]bool{}
	for _, d := range w.rollups[1].Destinations {
		second[d.Destination.Name] = true
		require.Equal(t, int64(2), d.Flows)
	}
	require.Equal(t, first, second)
	require.Equal(t, float64(3*(1000-perApp)), testutil.ToFloat64(m.AggSampled))
	// The next hour has a budget of its own.
	for i := 1000; i < 1000+perApp/2; i++ {
		a.Observe(obs(appA, dst(i), t0.Add(time.Hour), egressd.VerdictForwarded, ""))
	}
	require.NoError(t, a.Flush(context.Background()))
	require.Len(t, w.rollups[2].Destinations, perApp/2)
}

// TestAggregatorSamplesDNSQuestions: DNS names count against the same
// budget as destinations.
func TestAggregatorSamplesDNSQuestions(t *testing.T) {
	t.Parallel()
	const perApp = 20
	w := &fakeWriter{}
	a, m := newSamplingAggregator(t, w, perApp, 1_000_000)
	for i := range 1000 {
		a.Observe(&egressd.Observation{Time: t0, Kind: egressd.KindDNSQuery, App: appA, Destination: egressd.Destination{Name: tunnelName(i)}})
	}
	require.NoError(t, a.Flush(context.Background()))
	n := len(w.rollups[0].DNSQueries)
	require.GreaterOrEqual(t, n, perApp/2)
	require.LessOrEqual(t, n, perApp)
	require.Equal(t, float64(1000-n), testutil.ToFloat64(m.AggSampled))
}

func TestAggregatorOptionsValidatePerApp(t *testing.T) {
	t.Parallel()
	o := collector.DefaultAggregatorOptions()
	o.MaxKeysPerApp = 0
	require.ErrorContains(t, o.Validate(), "MaxKeysPerApp")
	o = collector.DefaultAggregatorOptions()
	o.SampleOneIn = 0
	require.ErrorContains(t, o.Validate(), "SampleOneIn")
}

// TestAggregatorNeverKeepsMoreThanItsBound: once an app has its
// MaxKeysPerApp names of the hour, a million new names of it keep none.
// A name is remembered as a hash, and one whose hash matched a kept name's
// passed as kept: with 32-bit hashes, this stream let about 5 names past
// the bound (TestTunnelStaysBoundedAndAlerts kept 1001 of 1000 about one
// run in 20).
func TestAggregatorNeverKeepsMoreThanItsBound(t *testing.T) {
	t.Parallel()
	const perApp, names = 20_000, 1_000_000
	w := &fakeWriter{}
	a, m := newSamplingAggregator(t, w, perApp, 1) // every name kept up to the bound
	for i := range names {
		a.Observe(obs(appA, egressd.Destination{Name: tunnelName(i), Port: 443, Protocol: "TCP"}, t0, egressd.VerdictForwarded, ""))
	}
	require.NoError(t, a.Flush(context.Background()))
	require.Equal(t, perApp, len(w.rollups[0].Destinations), "names kept")
	require.Equal(t, float64(names-perApp), testutil.ToFloat64(m.AggSampled))
}
