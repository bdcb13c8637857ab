package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgtest"
)

func TestRecordAnomaly(t *testing.T) {
	t.Parallel()
	firing := func(target string) postgres.DeliveryStatus {
		return postgres.DeliveryStatus{Target: target, State: postgres.DeliveryFiring, NextAttemptAt: recordedAt}
	}
	volume := newAnomaly(AnomalyOpts{Kind: egressd.AnomalyEgressVolume, App: shop, Details: map[string]string{"rate": "12.5 MB/s", "average": "80 kB/s"}})
	resolved := newAnomaly(AnomalyOpts{})
	resolved.ResolvedAt = at(time.Minute)
	ranked := newAnomaly(AnomalyOpts{Destination: rawIP})
	ranked.Severity = egressd.SeverityCritical
	ranked.Evidence = egressd.Evidence{
		ClusterFirstSeen: at(-time.Hour), AppFirstSeen: at(-48 * time.Hour), KnownPorts: []string{"80/TCP"},
		BareIP: true, PortClass: "well-known", Entropy: 3.25, Dropped: true, Pods: []string{"recyclarr-1", "recyclarr-2"},
		Reasons: []string{"never reached by any app in the cluster", "bare IP"},
	}

	tests := []struct {
		name           string
		anomaly        egressd.Anomaly
		targets        []string
		wantDeliveries []postgres.DeliveryStatus
	}{
		{
			name:           "novel destination, one delivery per Alertmanager",
			anomaly:        newAnomaly(AnomalyOpts{}),
			targets:        amTargets,
			wantDeliveries: []postgres.DeliveryStatus{firing(am1), firing(am2)},
		},
		{
			name:           "volume, no destination, details",
			anomaly:        volume,
			targets:        []string{am1},
			wantDeliveries: []postgres.DeliveryStatus{firing(am1)},
		},
		{
			name:           "targets deduplicated and trimmed",
			anomaly:        newAnomaly(AnomalyOpts{}),
			targets:        []string{am2, am1, " " + am2},
			wantDeliveries: []postgres.DeliveryStatus{firing(am1), firing(am2)},
		},
		{
			name:           "severity and evidence",
			anomaly:        ranked,
			targets:        []string{am1},
			wantDeliveries: []postgres.DeliveryStatus{firing(am1)},
		},
		{
			name:    "no Alertmanager configured",
			anomaly: newAnomaly(AnomalyOpts{}),
		},
		{
			name:    "recorded already resolved: nothing to send",
			anomaly: resolved,
			targets: amTargets,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			db := pgtest.NewDB(t)

			inserted, err := db.RecordAnomaly(ctx, tt.anomaly, tt.targets, recordedAt)
			require.NoError(t, err)
			require.True(t, inserted)
			got, err := db.Anomaly(ctx, tt.anomaly.Fingerprint)
			require.NoError(t, err)
			if diff := cmp.Diff(tt.anomaly, got); diff != "" {
				t.Errorf("stored anomaly (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantDeliveries, withoutIDs(deliveries(t, db, tt.anomaly.Fingerprint))); diff != "" {
				t.Errorf("deliveries (-want +got):\n%s", diff)
			}

			// Recording it again, even changed and later, changes nothing.
			again := tt.anomaly
			again.Summary = "seen again by another replica"
			inserted, err = db.RecordAnomaly(ctx, again, append(tt.targets, "http://alertmanager-2:9093"), at(time.Hour))
			require.NoError(t, err)
			require.False(t, inserted)
			got, err = db.Anomaly(ctx, tt.anomaly.Fingerprint)
			require.NoError(t, err)
			require.Equal(t, tt.anomaly.Summary, got.Summary)
			if diff := cmp.Diff(tt.wantDeliveries, withoutIDs(deliveries(t, db, tt.anomaly.Fingerprint))); diff != "" {
				t.Errorf("deliveries after recording again (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRecordAnomalyApp(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)

	// An app the collector stored keeps its times.
	require.NoError(t, db.WriteRollup(ctx, &egressd.Rollup{Destinations: []egressd.DestinationRollup{
		destRollup(DestOpts{App: recyclarr, Destination: dnsUDP, FirstSeen: at(-48 * time.Hour), LastSeen: at(2 * time.Hour)}),
	}}))
	record(t, db, newAnomaly(AnomalyOpts{App: recyclarr}))
	// An app not stored yet gets a row starting at the anomaly.
	record(t, db, newAnomaly(AnomalyOpts{App: shop, Time: at(30 * time.Minute)}))

	apps, err := db.Apps(ctx)
	require.NoError(t, err)
	want := []postgres.AppSeen{
		{App: recyclarr, FirstSeen: at(-48 * time.Hour), LastSeen: at(2 * time.Hour)},
		{App: shop, FirstSeen: at(30 * time.Minute), LastSeen: at(30 * time.Minute)},
	}
	if diff := cmp.Diff(want, apps); diff != "" {
		t.Errorf("apps (-want +got):\n%s", diff)
	}
	// The collector's rollups widen the row the anomaly created.
	require.NoError(t, db.WriteRollup(ctx, &egressd.Rollup{Destinations: []egressd.DestinationRollup{
		destRollup(DestOpts{App: shop, Destination: github, FirstSeen: at(29 * time.Minute), LastSeen: at(3 * time.Hour)}),
	}}))
	apps, err = db.Apps(ctx)
	require.NoError(t, err)
	require.Equal(t, postgres.AppSeen{App: shop, FirstSeen: at(29 * time.Minute), LastSeen: at(3 * time.Hour)}, apps[1])
}

// TestRecordAnomalyDoesNotWaitForFlush holds an app's row as a flush does
// (updated, not committed) and records an anomaly of that app meanwhile.
func TestRecordAnomalyDoesNotWaitForFlush(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url := pgtest.URL(t)
	db := open(t, url)
	require.NoError(t, db.WriteRollup(ctx, &egressd.Rollup{Destinations: []egressd.DestinationRollup{
		destRollup(DestOpts{App: recyclarr, Destination: dnsUDP, FirstSeen: at(-time.Hour)}),
	}}))

	conn, err := pgx.Connect(ctx, string(url))
	require.NoError(t, err)
	defer conn.Close(ctx)
	flush, err := conn.Begin(ctx)
	require.NoError(t, err)
	defer flush.Rollback(ctx) //nolint:errcheck // the test ends it
	_, err = flush.Exec(ctx, `UPDATE apps SET last_seen = last_seen + interval '10 seconds' WHERE name = 'recyclarr'`)
	require.NoError(t, err)

	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	inserted, err := db.RecordAnomaly(short, newAnomaly(AnomalyOpts{}), amTargets, recordedAt)
	require.NoError(t, err, "recording waited for the flush")
	require.True(t, inserted)
	require.NoError(t, flush.Commit(ctx))
}

func TestRecordAnomalyInvalid(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	valid := newAnomaly(AnomalyOpts{})
	tests := []struct {
		name    string
		change  func(a *egressd.Anomaly)
		targets []string
		want    string
	}{
		{name: "no fingerprint", change: func(a *egressd.Anomaly) { a.Fingerprint = "" }, want: "invalid fingerprint"},
		{name: "fingerprint with spaces", change: func(a *egressd.Anomaly) { a.Fingerprint = "a b" }, want: "invalid fingerprint"},
		{name: "long fingerprint", change: func(a *egressd.Anomaly) { a.Fingerprint = strings.Repeat("f", 129) }, want: "invalid fingerprint"},
		{name: "no kind", change: func(a *egressd.Anomaly) { a.Kind = "" }, want: "invalid kind"},
		{name: "invalid app", change: func(a *egressd.Anomaly) { a.App.Namespace = "../etc" }, want: "invalid namespace"},
		{name: "no time", change: func(a *egressd.Anomaly) { a.Time = time.Time{} }, want: "Time is zero"},
		{name: "empty target", targets: []string{am1, " "}, want: "empty Alertmanager target"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := valid
			if tt.change != nil {
				tt.change(&a)
			}
			inserted, err := db.RecordAnomaly(t.Context(), a, tt.targets, recordedAt)
			require.ErrorContains(t, err, tt.want)
			require.Equal(t, egressd.EINVALID, egressd.ErrorCode(err))
			require.False(t, inserted)
		})
	}
	list, err := db.Anomalies(t.Context(), postgres.AnomalyFilter{})
	require.NoError(t, err)
	require.Empty(t, list)
}

func TestRecordAnomalyBounds(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)

	huge := strings.Repeat("é", 10_000) // 2 bytes each
	details := map[string]string{
		"members":                 strings.Repeat("x.example.com,", 1000),
		"nul\x00key":              "bad\x00value\xff",
		strings.Repeat("k", 100):  "long key",
		"flows":                   "12",
		"zz-after-budget-is-gone": "?",
	}
	for i := range 10 {
		details[fmt.Sprintf("x%d", i)] = huge
	}
	a := newAnomaly(AnomalyOpts{Summary: huge, Details: details})
	a.Pod = strings.Repeat("p", 1000)
	a.Node = "node\x00-1\xc3"
	for i := range 100 {
		a.Evidence.Pods = append(a.Evidence.Pods, fmt.Sprintf("%d-%s", i, huge))
	}
	a.Evidence.Reasons = []string{"bad\x00reason\xff"}
	a.Severity = egressd.Severity(huge)
	record(t, db, a)

	got, err := db.Anomaly(ctx, a.Fingerprint)
	require.NoError(t, err)
	require.LessOrEqual(t, len(got.Summary), postgres.MaxSummaryLen)
	require.True(t, strings.HasSuffix(got.Summary, "…"), "a cut summary ends in an ellipsis")
	require.True(t, utf8.ValidString(got.Summary))
	require.Len(t, got.Pod, 253)
	require.Equal(t, "node-1\uFFFD", got.Node)
	require.Len(t, got.Evidence.Pods, postgres.MaxEvidenceList)
	for _, p := range got.Evidence.Pods {
		require.LessOrEqual(t, len(p), 253)
		require.True(t, utf8.ValidString(p))
	}
	require.Equal(t, []string{"badreason\uFFFD"}, got.Evidence.Reasons)
	require.LessOrEqual(t, len(got.Severity), 16)

	total := 0
	for k, v := range got.Details {
		require.LessOrEqual(t, len(k), postgres.MaxDetailKeyLen, "key %q", k)
		require.LessOrEqual(t, len(v), postgres.MaxDetailValueLen, "value of %q", k)
		require.True(t, utf8.ValidString(k) && utf8.ValidString(v))
		total += len(k) + len(v) + 8
	}
	require.LessOrEqual(t, total, postgres.MaxDetailsLen)
	// Entries are kept in key order until the budget runs out.
	require.Equal(t, "12", got.Details["flows"])
	require.Equal(t, "long key", got.Details[strings.Repeat("k", 61)+"…"])
	require.Equal(t, "badvalue\uFFFD", got.Details["nulkey"])
	require.Len(t, got.Details["members"], postgres.MaxDetailValueLen)
	require.Contains(t, got.Details, "x1")
	require.NotContains(t, got.Details, "x9")
	require.NotContains(t, got.Details, "zz-after-budget-is-gone")
}

// TestRecordAnomalyConcurrent stands for replicas that raise the same
// anomalies at the same moment: each anomaly, and each of its deliveries, is
// stored exactly once.
func TestRecordAnomalyConcurrent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url := pgtest.URL(t)
	replicas := []*postgres.DB{open(t, url), open(t, url)}

	const (
		anomalies = 20
		perDB     = 4 // goroutines per replica recording each anomaly
	)
	// Half of the anomalies belong to apps nobody stored yet, so replicas
	// also race to create the app.
	var all []egressd.Anomaly
	for i := range anomalies {
		app := recyclarr
		if i%2 == 1 {
			app = egressd.App{Namespace: "race", Name: fmt.Sprintf("app-%d", i/4)}
		}
		all = append(all, newAnomaly(AnomalyOpts{App: app, Destination: egressd.Destination{
			Name: fmt.Sprintf("host-%d.example.com", i), Port: 443, Protocol: egressd.ProtoTCP,
		}}))
	}

	var (
		mu       sync.Mutex
		inserted = map[string]int{}
		wg       sync.WaitGroup
		start    = make(chan struct{})
		errs     = make(chan error, perDB*len(replicas)+1)
	)
	for _, db := range replicas {
		for range perDB {
			wg.Go(func() {
				<-start
				for _, a := range all {
					ok, err := db.RecordAnomaly(ctx, a, amTargets, recordedAt)
					if err != nil {
						errs <- err
						return
					}
					if ok {
						mu.Lock()
						inserted[a.Fingerprint]++
						mu.Unlock()
					}
				}
			})
		}
	}
	// A collector flushing at the same time creates the same apps.
	wg.Go(func() {
		<-start
		r := &egressd.Rollup{}
		for _, a := range slices.Backward(all) {
			r.Destinations = append(r.Destinations, destRollup(DestOpts{App: a.App, Destination: dnsUDP, FirstSeen: at(-time.Hour)}))
		}
		if err := replicas[1].WriteRollup(ctx, r); err != nil {
			errs <- err
		}
	})
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	for _, a := range all {
		require.Equal(t, 1, inserted[a.Fingerprint], "%s inserted", a.Destination.Name)
		require.Len(t, deliveries(t, replicas[0], a.Fingerprint), len(amTargets), "%s deliveries", a.Destination.Name)
	}
	list, err := replicas[0].Anomalies(ctx, postgres.AnomalyFilter{Limit: 1000})
	require.NoError(t, err)
	require.Len(t, list, anomalies)
	depth, err := replicas[0].OutboxDepth(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{"firing": anomalies * len(amTargets), "resolved": 0}, depth)
	// Whoever created an app row, the flush's earlier first seen is kept.
	apps, err := replicas[0].Apps(ctx)
	require.NoError(t, err)
	require.Len(t, apps, 1+anomalies/4)
	for _, a := range apps {
		require.Equal(t, at(-time.Hour), a.FirstSeen, a.App.String())
	}
}

func TestResolveAnomaly(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)
	a := record(t, db, newAnomaly(AnomalyOpts{Kind: egressd.AnomalyEgressVolume}))

	// am1 failed twice and is leased by a sender; am2 rejected the alert.
	claimed, err := db.ClaimDeliveries(ctx, at(2*time.Second), time.Minute, 10)
	require.NoError(t, err)
	require.Len(t, claimed, 2)
	require.Equal(t, am1, claimed[0].Target)
	require.NoError(t, db.DeliveryFailed(ctx, []int64{claimed[0].ID}, at(3*time.Second), "connection refused"))
	require.NoError(t, db.DeliveryDropped(ctx, []int64{claimed[1].ID}, "400 Bad Request"))
	claimed, err = db.ClaimDeliveries(ctx, at(3*time.Second), time.Minute, 10)
	require.NoError(t, err)
	require.Len(t, claimed, 1)
	require.NoError(t, db.DeliveryFailed(ctx, []int64{claimed[0].ID}, at(5*time.Second), "connection refused"))
	claimed, err = db.ClaimDeliveries(ctx, at(5*time.Second), time.Minute, 10)
	require.NoError(t, err)
	require.Len(t, claimed, 1)

	resolvedAt := at(10 * time.Second)
	ok, err := db.ResolveAnomaly(ctx, a.Fingerprint, resolvedAt)
	require.NoError(t, err)
	require.True(t, ok)

	got, err := db.Anomaly(ctx, a.Fingerprint)
	require.NoError(t, err)
	require.Equal(t, resolvedAt, got.ResolvedAt)
	want := []postgres.DeliveryStatus{
		// Resolved, due at once, attempts reset; the sender keeps its lease.
		{Target: am1, State: postgres.DeliveryResolved, NextAttemptAt: resolvedAt, LeasedUntil: at(time.Minute + 5*time.Second), LastError: "connection refused"},
		{Target: am2, State: postgres.DeliveryDropped, NextAttemptAt: recordedAt, LastError: "400 Bad Request"},
	}
	if diff := cmp.Diff(want, withoutIDs(deliveries(t, db, a.Fingerprint))); diff != "" {
		t.Errorf("deliveries (-want +got):\n%s", diff)
	}

	// Idempotent: a second resolve changes nothing.
	ok, err = db.ResolveAnomaly(ctx, a.Fingerprint, at(time.Hour))
	require.NoError(t, err)
	require.False(t, ok)
	got, err = db.Anomaly(ctx, a.Fingerprint)
	require.NoError(t, err)
	require.Equal(t, resolvedAt, got.ResolvedAt)
	if diff := cmp.Diff(want, withoutIDs(deliveries(t, db, a.Fingerprint))); diff != "" {
		t.Errorf("deliveries after resolving again (-want +got):\n%s", diff)
	}

	_, err = db.ResolveAnomaly(ctx, "0123456789abcdef0123456789abcdef", resolvedAt)
	require.ErrorIs(t, err, egressd.ErrNotFound)
}

func TestExpireNovel(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)

	oldNovel := record(t, db, newAnomaly(AnomalyOpts{Time: at(-2 * time.Hour)}))
	oldFlood := record(t, db, newAnomaly(AnomalyOpts{Kind: egressd.AnomalyNovelFlood, Time: at(-3 * time.Hour)}))
	oldVolume := record(t, db, newAnomaly(AnomalyOpts{Kind: egressd.AnomalyEgressVolume, Time: at(-3 * time.Hour)}))
	oldTunnel := record(t, db, newAnomaly(AnomalyOpts{Kind: egressd.AnomalyDNSTunnel, Time: at(-3 * time.Hour)}))
	newNovel := record(t, db, newAnomaly(AnomalyOpts{Destination: dnsUDP, Time: at(-time.Hour)}))
	edge := record(t, db, newAnomaly(AnomalyOpts{Destination: rawIP, Time: at(-90 * time.Minute)}))
	already := record(t, db, newAnomaly(AnomalyOpts{Destination: blocked, Time: at(-5 * time.Hour)}))
	_, err := db.ResolveAnomaly(ctx, already.Fingerprint, at(-4*time.Hour))
	require.NoError(t, err)

	n, err := db.ExpireNovel(ctx, at(-90*time.Minute), t0)
	require.NoError(t, err)
	require.Equal(t, 3, n)

	for _, tt := range []struct {
		a    egressd.Anomaly
		want time.Time
	}{
		{a: oldNovel, want: t0},
		{a: oldFlood, want: t0},
		{a: oldTunnel, want: t0},
		{a: oldVolume},                         // volume anomalies resolve when the volume drops
		{a: newNovel},                          // younger than the time to live
		{a: edge},                              // started exactly at the cut-off
		{a: already, want: at(-4 * time.Hour)}, // resolved before, unchanged
	} {
		got, err := db.Anomaly(ctx, tt.a.Fingerprint)
		require.NoError(t, err)
		require.Equal(t, tt.want, got.ResolvedAt, "%s %s", tt.a.Kind, tt.a.Destination)
	}

	n, err = db.ExpireNovel(ctx, at(-90*time.Minute), at(time.Minute))
	require.NoError(t, err)
	require.Zero(t, n, "second expiry")
	depth, err := db.OutboxDepth(ctx)
	require.NoError(t, err)
	// The 3 expired ones and the resolved one wait to be sent resolved.
	require.Equal(t, map[string]int{"firing": 6, "resolved": 8}, depth)
}

func TestAnomalies(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)

	// Times: a1 oldest ... a5 newest; a3 and a4 start at the same time.
	a1 := record(t, db, newAnomaly(AnomalyOpts{Time: at(1 * time.Minute)}))
	a2 := record(t, db, newAnomaly(AnomalyOpts{App: shop, Kind: egressd.AnomalyEgressVolume, Time: at(2 * time.Minute)}))
	a3 := record(t, db, newAnomaly(AnomalyOpts{Destination: dnsUDP, Time: at(3 * time.Minute)}))
	a4 := record(t, db, newAnomaly(AnomalyOpts{Destination: rawIP, Time: at(3 * time.Minute)}))
	a5 := record(t, db, newAnomaly(AnomalyOpts{App: shop, Time: at(5 * time.Minute)}))
	_, err := db.ResolveAnomaly(ctx, a1.Fingerprint, at(time.Hour))
	require.NoError(t, err)
	_, err = db.ResolveAnomaly(ctx, a2.Fingerprint, at(time.Hour))
	require.NoError(t, err)
	a1.ResolvedAt, a2.ResolvedAt = at(time.Hour), at(time.Hour)

	// Same start time: the larger fingerprint first.
	a3, a4 = largerFirst(a3, a4)

	tests := []struct {
		name   string
		filter postgres.AnomalyFilter
		want   []egressd.Anomaly
	}{
		{name: "all, newest first", want: []egressd.Anomaly{a5, a3, a4, a2, a1}},
		{name: "firing", filter: postgres.AnomalyFilter{State: postgres.AnomaliesFiring}, want: []egressd.Anomaly{a5, a3, a4}},
		{name: "resolved", filter: postgres.AnomalyFilter{State: postgres.AnomaliesResolved}, want: []egressd.Anomaly{a2, a1}},
		{name: "app", filter: postgres.AnomalyFilter{App: &shop}, want: []egressd.Anomaly{a5, a2}},
		{name: "unknown app", filter: postgres.AnomalyFilter{App: &egressd.App{Namespace: "x", Name: "y"}}},
		{name: "kind", filter: postgres.AnomalyFilter{Kind: egressd.AnomalyEgressVolume}, want: []egressd.Anomaly{a2}},
		{name: "since is inclusive", filter: postgres.AnomalyFilter{Since: at(3 * time.Minute)}, want: []egressd.Anomaly{a5, a3, a4}},
		{name: "limit", filter: postgres.AnomalyFilter{Limit: 2}, want: []egressd.Anomaly{a5, a3}},
		{
			name:   "after, between two with the same time",
			filter: postgres.AnomalyFilter{After: &postgres.AnomalyCursor{Time: a3.Time, Fingerprint: a3.Fingerprint}},
			want:   []egressd.Anomaly{a4, a2, a1},
		},
		{
			name: "everything at once",
			filter: postgres.AnomalyFilter{
				State: postgres.AnomaliesFiring, App: &recyclarr, Kind: egressd.AnomalyNovelDestination,
				Since: at(time.Minute), Limit: 1, After: &postgres.AnomalyCursor{Time: a5.Time, Fingerprint: a5.Fingerprint},
			},
			want: []egressd.Anomaly{a3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := db.Anomalies(t.Context(), tt.filter)
			require.NoError(t, err)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Anomalies (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("pages", func(t *testing.T) {
		t.Parallel()
		var (
			got []egressd.Anomaly
			f   = postgres.AnomalyFilter{Limit: 2}
		)
		for page := 0; ; page++ {
			require.Less(t, page, 10, "pagination does not end")
			list, err := db.Anomalies(t.Context(), f)
			require.NoError(t, err)
			if len(list) == 0 {
				break
			}
			got = append(got, list...)
			last := list[len(list)-1]
			f.After = &postgres.AnomalyCursor{Time: last.Time, Fingerprint: last.Fingerprint}
		}
		if diff := cmp.Diff([]egressd.Anomaly{a5, a3, a4, a2, a1}, got); diff != "" {
			t.Errorf("pages (-want +got):\n%s", diff)
		}
	})

	t.Run("invalid", func(t *testing.T) {
		t.Parallel()
		_, err := db.Anomalies(t.Context(), postgres.AnomalyFilter{Limit: -1})
		require.Equal(t, egressd.EINVALID, egressd.ErrorCode(err))
		_, err = db.Anomalies(t.Context(), postgres.AnomalyFilter{State: 7})
		require.Equal(t, egressd.EINVALID, egressd.ErrorCode(err))
	})

	t.Run("not found", func(t *testing.T) {
		t.Parallel()
		_, err := db.Anomaly(t.Context(), "0123456789abcdef0123456789abcdef")
		require.ErrorIs(t, err, egressd.ErrNotFound)
	})
}

// largerFirst returns a and b, the one with the larger fingerprint first.
func largerFirst(a, b egressd.Anomaly) (egressd.Anomaly, egressd.Anomaly) {
	if a.Fingerprint < b.Fingerprint {
		return b, a
	}
	return a, b
}
