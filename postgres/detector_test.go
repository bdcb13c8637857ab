package postgres_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/postgres/pgtest"
)

// TestDetectorState: what the detector primes itself from is written with
// the rollups and read back as it needs it.
func TestDetectorState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	day := 24 * time.Hour

	// recyclarr, first seen at t0-2d, reaches two destinations in the same
	// hour from two pods, over two rollups; shop appears at t0.
	require.NoError(t, db.WriteRollup(ctx, &egressd.Rollup{
		Destinations: []egressd.DestinationRollup{
			destRollup(DestOpts{App: recyclarr, Destination: github, FirstSeen: at(-2 * day), ExamplePod: "recyclarr-1"}),
			destRollup(DestOpts{App: recyclarr, Destination: dnsUDP, FirstSeen: at(time.Minute), Flows: 3, ExamplePod: "recyclarr-2"}),
		},
		Hourly: []egressd.HourlyRollup{
			hourly(recyclarr, github, at(-2*day), 1, 0),
			hourly(recyclarr, dnsUDP, t0, 3, 0),
		},
		DNSQueries: []egressd.DNSQueryRollup{{App: recyclarr, Name: "dns.google", FirstSeen: at(-time.Hour), LastSeen: at(time.Minute), Queries: 2}},
	}))
	require.NoError(t, db.WriteRollup(ctx, &egressd.Rollup{
		Destinations: []egressd.DestinationRollup{
			destRollup(DestOpts{App: recyclarr, Destination: github, FirstSeen: at(2 * time.Minute), ExamplePod: "recyclarr-1"}),
			destRollup(DestOpts{App: shop, Destination: blocked, FirstSeen: at(3 * time.Minute), DroppedFlows: 1}),
		},
		Hourly: []egressd.HourlyRollup{
			hourly(recyclarr, github, t0, 1, 0),
			hourly(shop, blocked, t0, 1, 1),
		},
	}))

	// Every stored app, with strings the caller may keep once copied.
	var apps []egressd.App
	require.NoError(t, db.EachApp(ctx, func(a egressd.App) {
		apps = append(apps, egressd.App{Cluster: strings.Clone(a.Cluster), Namespace: strings.Clone(a.Namespace), Name: strings.Clone(a.Name)})
	}))
	require.ElementsMatch(t, []egressd.App{recyclarr, shop}, apps)

	hours, err := db.AppHours(ctx, at(-3*day), at(time.Hour))
	require.NoError(t, err)
	want := []egressd.AppHour{
		{App: recyclarr, Hour: at(-2 * day), Flows: 1},
		{App: recyclarr, Hour: t0, Flows: 4},
		{App: shop, Hour: t0, Flows: 1},
	}
	// AppHours sorts by cluster first: recyclarr has none, shop "prod".
	if diff := cmp.Diff(want, hours); diff != "" {
		t.Fatalf("AppHours (-want +got):\n%s", diff)
	}

	pods, err := db.AppPods(ctx, at(-time.Hour))
	require.NoError(t, err)
	if diff := cmp.Diff([]egressd.AppPod{
		{App: recyclarr, Pod: "recyclarr-1", LastSeen: at(2 * time.Minute)},
		{App: recyclarr, Pod: "recyclarr-2", LastSeen: at(time.Minute)},
	}, pods); diff != "" {
		t.Fatalf("AppPods (-want +got):\n%s", diff)
	}

	// New destinations after a learning period of a day: recyclarr's dns
	// (github was first seen while it learned); shop is still learning.
	fresh, err := db.NewDestinations(ctx, at(-7*day), day)
	require.NoError(t, err)
	require.Len(t, fresh, 1)
	require.Equal(t, recyclarr, fresh[0].App)
	require.Equal(t, dnsUDP, fresh[0].Destination)
	require.Equal(t, "recyclarr-2", fresh[0].ExamplePod)
	fresh, err = db.NewDestinations(ctx, at(-7*day), 0)
	require.NoError(t, err)
	require.Len(t, fresh, 3)
	require.Equal(t, github, fresh[0].Destination, "by first-seen time")
	require.Equal(t, blocked, fresh[2].Destination)
	require.Equal(t, int64(1), fresh[2].DroppedFlows)

	// Anomalies since a time, and volume ones still firing from before.
	for _, a := range []egressd.Anomaly{
		newAnomaly(AnomalyOpts{Destination: dnsUDP, Time: at(time.Minute)}),
		newAnomaly(AnomalyOpts{Destination: github, Time: at(-3 * day)}),
		newAnomaly(AnomalyOpts{Kind: egressd.AnomalyEgressVolume, Time: at(-3 * day), Details: map[string]string{"average_rate": "0.5"}}),
	} {
		ok, err := db.RecordAnomaly(ctx, a, nil, t0)
		require.NoError(t, err)
		require.True(t, ok)
	}
	as, err := db.DetectorAnomalies(ctx, at(-time.Hour))
	require.NoError(t, err)
	require.Len(t, as, 2)
	require.Equal(t, egressd.AnomalyEgressVolume, as[0].Kind)
	require.Equal(t, "0.5", as[0].Details["average_rate"])
	require.Equal(t, dnsUDP, as[1].Destination)

	type seen struct {
		App  egressd.App
		Dest egressd.Destination
	}
	var all []seen
	require.NoError(t, db.EachSeenDestination(ctx, at(-time.Hour), func(a egressd.App, d egressd.Destination) error {
		// The strings are only valid during the call.
		d.Name, d.Protocol = strings.Clone(d.Name), strings.Clone(d.Protocol)
		all = append(all, seen{a, d})
		return nil
	}))
	require.ElementsMatch(t, []seen{{recyclarr, github}, {recyclarr, dnsUDP}, {shop, blocked}}, all)
	stop := errors.New("stop")
	require.ErrorIs(t, db.EachSeenDestination(ctx, at(-time.Hour), func(egressd.App, egressd.Destination) error { return stop }), stop)

	qs, err := db.DNSQueriesSince(ctx, t0)
	require.NoError(t, err)
	require.Len(t, qs, 1)
	require.Equal(t, "dns.google", qs[0].Name)
	qs, err = db.DNSQueriesSince(ctx, at(time.Hour))
	require.NoError(t, err)
	require.Empty(t, qs)
}

// TestDNSAnswers: per pod and address, the stored answer is the one that
// expires last, whatever the order of the flushes; answers expired before
// the newest stored flow are not read back.
func TestDNSAnswers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	ip := netip.MustParseAddr("185.199.108.133")
	ans := func(name string, exp time.Time) egressd.DNSAnswer {
		return egressd.DNSAnswer{Namespace: "media", Pod: "recyclarr-1", Addr: ip, Name: name, Expires: exp}
	}
	for _, a := range []egressd.DNSAnswer{
		ans("later.example", at(2*time.Hour)), ans("earlier.example", at(time.Hour)),
		{Namespace: "media", Pod: "sonarr-1", Addr: ip, Name: "old.example", Expires: at(-time.Hour)},
	} {
		require.NoError(t, db.WriteRollup(ctx, &egressd.Rollup{DNSAnswers: []egressd.DNSAnswer{a},
			Destinations: []egressd.DestinationRollup{destRollup(DestOpts{App: recyclarr, Destination: github, FirstSeen: t0})}}))
	}
	got, err := db.DNSAnswers(ctx, time.Time{}) // from the newest flow stored: t0
	require.NoError(t, err)
	if diff := cmp.Diff([]egressd.DNSAnswer{ans("later.example", at(2*time.Hour))}, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Fatalf("DNSAnswers (-want +got):\n%s", diff)
	}
	got, err = db.DNSAnswers(ctx, at(-2*time.Hour))
	require.NoError(t, err)
	require.Len(t, got, 2)
}
