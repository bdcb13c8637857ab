package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/postgres"
)

// t0 is an hour boundary; test times are offsets from it.
var t0 = time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

var (
	recyclarr = egressd.App{Namespace: "media", Name: "recyclarr"}
	shop      = egressd.App{Cluster: "prod", Namespace: "web", Name: "shop"}

	github  = egressd.Destination{Name: "api.github.com", Port: 443, Protocol: egressd.ProtoTCP}
	dnsUDP  = egressd.Destination{Name: "dns.google", Port: 53, Protocol: egressd.ProtoUDP}
	rawIP   = egressd.Destination{Name: "203.0.113.7", Port: 443, Protocol: egressd.ProtoTCP}
	blocked = egressd.Destination{Name: "evil.example", Port: 443, Protocol: egressd.ProtoTCP}
)

// DestOpts describes a destination rollup; zero fields get defaults.
type DestOpts struct {
	App          egressd.App
	Destination  egressd.Destination
	FirstSeen    time.Time
	LastSeen     time.Time // default FirstSeen
	Flows        int64     // default 1
	DroppedFlows int64
	Verdicts     egressd.VerdictSet // default FORWARDED, plus DROPPED when DroppedFlows > 0
	ExamplePod   string
	NameSource   egressd.NameSource
}

// destRollup builds a destination rollup (a factory in the river style).
func destRollup(o DestOpts) egressd.DestinationRollup {
	if o.LastSeen.IsZero() {
		o.LastSeen = o.FirstSeen
	}
	if o.Flows == 0 {
		o.Flows = 1
	}
	if o.Verdicts == 0 {
		if o.Flows > o.DroppedFlows {
			o.Verdicts = o.Verdicts.Add(egressd.VerdictForwarded)
		}
		if o.DroppedFlows > 0 {
			o.Verdicts = o.Verdicts.Add(egressd.VerdictDropped)
		}
	}
	return egressd.DestinationRollup{
		App: o.App, Destination: o.Destination, FirstSeen: o.FirstSeen, LastSeen: o.LastSeen,
		Flows: o.Flows, DroppedFlows: o.DroppedFlows, Verdicts: o.Verdicts,
		ExamplePod: o.ExamplePod, NameSource: o.NameSource,
	}
}

func hourly(app egressd.App, d egressd.Destination, hour time.Time, flows, dropped int64) egressd.HourlyRollup {
	return egressd.HourlyRollup{App: app, Destination: d, Hour: hour, Flows: flows, DroppedFlows: dropped}
}

// state is everything stored, read back through the package's API.
type state struct {
	Apps         []postgres.AppSeen
	Destinations []egressd.DestinationRollup
	Hourly       []egressd.HourlyRollup
	DNSQueries   []egressd.DNSQueryRollup
	Cursors      []egressd.Cursor
}

func dump(t testing.TB, db *postgres.DB, sources ...string) state {
	t.Helper()
	ctx := context.Background()
	var s state
	apps, err := db.Apps(ctx)
	require.NoError(t, err)
	s.Apps = apps
	for _, a := range apps {
		d, err := db.Destinations(ctx, a.App)
		require.NoError(t, err)
		s.Destinations = append(s.Destinations, d...)
		h, err := db.Hourly(ctx, a.App, time.Time{}, time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC))
		require.NoError(t, err)
		s.Hourly = append(s.Hourly, h...)
		q, err := db.DNSQueries(ctx, a.App)
		require.NoError(t, err)
		s.DNSQueries = append(s.DNSQueries, q...)
	}
	for _, src := range sources {
		c, err := db.Cursor(ctx, src)
		if errors.Is(err, egressd.ErrNotFound) {
			continue
		}
		require.NoError(t, err)
		s.Cursors = append(s.Cursors, egressd.Cursor{Source: src, Time: c})
	}
	return s
}
