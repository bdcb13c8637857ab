package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/postgres"
)

// Alertmanagers the tests deliver to.
const (
	am1 = "http://alertmanager-0:9093"
	am2 = "http://alertmanager-1:9093"
)

var amTargets = []string{am1, am2}

// AnomalyOpts describes an anomaly; zero fields get defaults.
type AnomalyOpts struct {
	Kind        egressd.AnomalyKind // default novel_destination
	App         egressd.App         // default recyclarr
	Destination egressd.Destination // default github for novel kinds
	Time        time.Time           // default t0
	// Fingerprint defaults to the kind's fingerprint function.
	Fingerprint string
	Summary     string
	Details     map[string]string
}

// newAnomaly builds an anomaly (a factory in the river style).
func newAnomaly(o AnomalyOpts) egressd.Anomaly {
	if o.Kind == "" {
		o.Kind = egressd.AnomalyNovelDestination
	}
	if o.App == (egressd.App{}) {
		o.App = recyclarr
	}
	if o.Time.IsZero() {
		o.Time = t0
	}
	if o.Destination == (egressd.Destination{}) && o.Kind != egressd.AnomalyEgressVolume {
		o.Destination = github
	}
	if o.Fingerprint == "" {
		switch o.Kind {
		case egressd.AnomalyNovelDestination:
			o.Fingerprint = egressd.NoveltyFingerprint(o.App, o.Destination)
		case egressd.AnomalyNovelFlood:
			o.Fingerprint = egressd.FloodFingerprint(o.App, o.Time)
		case egressd.AnomalyDNSTunnel:
			o.Fingerprint = egressd.DNSTunnelFingerprint(o.App, o.Time)
		default:
			o.Fingerprint = egressd.VolumeFingerprint(o.App, o.Time)
		}
	}
	if o.Summary == "" {
		o.Summary = string(o.Kind) + " of " + o.App.String()
	}
	return egressd.Anomaly{
		Fingerprint:    o.Fingerprint,
		Kind:           o.Kind,
		App:            o.App,
		Destination:    o.Destination,
		Time:           o.Time,
		Pod:            o.App.Name + "-7d9f8c-x2x4z",
		Node:           "node-1",
		Verdict:        egressd.VerdictForwarded,
		NameSource:     egressd.NameFromFlow,
		BaselineSource: "window",
		Summary:        o.Summary,
		Details:        o.Details,
	}
}

// record stores a with deliveries to amTargets, recorded at t0+1s, and
// requires that it was new.
func record(t testing.TB, db *postgres.DB, a egressd.Anomaly) egressd.Anomaly {
	t.Helper()
	inserted, err := db.RecordAnomaly(context.Background(), a, amTargets, recordedAt)
	require.NoError(t, err)
	require.True(t, inserted, "anomaly %s was stored before", a.Fingerprint)
	return a
}

// recordedAt is when record stores anomalies, in wall time.
var recordedAt = at(time.Second)

// deliveries returns the deliveries of fingerprint, requiring no error.
func deliveries(t testing.TB, db *postgres.DB, fingerprint string) []postgres.DeliveryStatus {
	t.Helper()
	d, err := db.Deliveries(context.Background(), fingerprint)
	require.NoError(t, err)
	return d
}

// ids returns the ids of deliveries.
func ids(ds []egressd.Delivery) []int64 {
	out := make([]int64, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

// withoutIDs returns statuses with zero ids, for comparisons.
func withoutIDs(ds []postgres.DeliveryStatus) []postgres.DeliveryStatus {
	var out []postgres.DeliveryStatus
	for _, d := range ds {
		d.ID = 0
		out = append(out, d)
	}
	return out
}
