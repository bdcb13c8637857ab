package postgres_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgtest"
)

// outboxScenario is one anomaly with deliveries to am1 and am2, recorded at
// recordedAt, and the operations of a sender on it.
type outboxScenario struct {
	t  *testing.T
	db *postgres.DB
	a  egressd.Anomaly
}

func (s *outboxScenario) claim(now time.Time, lease time.Duration) []egressd.Delivery {
	s.t.Helper()
	d, err := s.db.ClaimDeliveries(s.t.Context(), now, lease, 100)
	require.NoError(s.t, err)
	return d
}

// claimN claims at now for a minute and requires n deliveries.
func (s *outboxScenario) claimN(now time.Time, n int) []egressd.Delivery {
	s.t.Helper()
	d := s.claim(now, time.Minute)
	require.Len(s.t, d, n, "deliveries claimed at %s", now.Format(time.TimeOnly))
	return d
}

func (s *outboxScenario) sent(d []egressd.Delivery, sentAt, next time.Time) {
	s.t.Helper()
	require.NoError(s.t, s.db.DeliverySent(s.t.Context(), ids(d), sentAt, next))
}

func (s *outboxScenario) failed(d []egressd.Delivery, next time.Time, msg string) {
	s.t.Helper()
	require.NoError(s.t, s.db.DeliveryFailed(s.t.Context(), ids(d), next, msg))
}

func (s *outboxScenario) dropped(d []egressd.Delivery, msg string) {
	s.t.Helper()
	require.NoError(s.t, s.db.DeliveryDropped(s.t.Context(), ids(d), msg))
}

func (s *outboxScenario) resolve(at time.Time) {
	s.t.Helper()
	ok, err := s.db.ResolveAnomaly(s.t.Context(), s.a.Fingerprint, at)
	require.NoError(s.t, err)
	require.True(s.t, ok)
}

func sec(n int) time.Time { return at(time.Duration(n) * time.Second) }

func TestDeliveryLifecycle(t *testing.T) {
	t.Parallel()
	both := func(d postgres.DeliveryStatus) []postgres.DeliveryStatus {
		d1, d2 := d, d
		d1.Target, d2.Target = am1, am2
		return []postgres.DeliveryStatus{d1, d2}
	}

	tests := []struct {
		name string
		run  func(s *outboxScenario)
		want []postgres.DeliveryStatus
	}{
		{
			name: "firing is sent, then again after the resend interval",
			run: func(s *outboxScenario) {
				d := s.claimN(sec(2), 2)
				require.False(t, d[0].Resolved)
				s.sent(d, sec(3), sec(63))
				s.claimN(sec(62), 0)
				d = s.claimN(sec(63), 2)
				s.sent(d, sec(64), sec(124))
			},
			want: both(postgres.DeliveryStatus{State: postgres.DeliveryFiring, NextAttemptAt: sec(124), LastSentAt: sec(64)}),
		},
		{
			name: "failures count attempts until a send succeeds",
			run: func(s *outboxScenario) {
				d := s.claimN(sec(2), 2)
				s.failed(d[:1], sec(10), "dial tcp: connection refused")
				s.sent(d[1:], sec(2), sec(62))
				s.claimN(sec(9), 0)
				d = s.claimN(sec(10), 1)
				require.Equal(t, 1, d[0].Attempts)
				s.failed(d, sec(30), "503 Service Unavailable")
				d = s.claimN(sec(30), 1)
				require.Equal(t, 2, d[0].Attempts)
			},
			want: []postgres.DeliveryStatus{
				{Target: am1, State: postgres.DeliveryFiring, NextAttemptAt: sec(30), LeasedUntil: sec(90), Attempts: 2, LastError: "503 Service Unavailable"},
				{Target: am2, State: postgres.DeliveryFiring, NextAttemptAt: sec(62), LastSentAt: sec(2)},
			},
		},
		{
			name: "success clears the failures",
			run: func(s *outboxScenario) {
				s.failed(s.claimN(sec(2), 2), sec(10), "timeout")
				s.sent(s.claimN(sec(10), 2), sec(11), sec(71))
			},
			want: both(postgres.DeliveryStatus{State: postgres.DeliveryFiring, NextAttemptAt: sec(71), LastSentAt: sec(11)}),
		},
		{
			name: "resolved is sent once, then done",
			run: func(s *outboxScenario) {
				s.sent(s.claimN(sec(2), 2), sec(2), sec(62))
				s.resolve(sec(20))
				s.claimN(sec(19), 0)
				d := s.claimN(sec(20), 2)
				require.True(t, d[0].Resolved && d[1].Resolved)
				s.sent(d, sec(21), sec(81))
				s.claimN(sec(3600), 0)
			},
			want: both(postgres.DeliveryStatus{State: postgres.DeliveryDone, NextAttemptAt: sec(20), LastSentAt: sec(21)}),
		},
		{
			name: "resolved before the first send",
			run: func(s *outboxScenario) {
				s.resolve(sec(1))
				d := s.claimN(sec(2), 2)
				require.True(t, d[0].Resolved)
				s.sent(d, sec(2), sec(62))
			},
			want: both(postgres.DeliveryStatus{State: postgres.DeliveryDone, NextAttemptAt: sec(1), LastSentAt: sec(2)}),
		},
		{
			name: "resolved while a firing send is in flight: the resolve still goes out",
			run: func(s *outboxScenario) {
				d := s.claimN(sec(2), 2)
				s.resolve(sec(5))
				s.claimN(sec(6), 0) // the firing send holds the lease
				s.sent(d, sec(7), sec(67))
				d = s.claimN(sec(7), 2)
				require.True(t, d[0].Resolved && d[1].Resolved)
				s.sent(d, sec(8), sec(68))
			},
			want: both(postgres.DeliveryStatus{State: postgres.DeliveryDone, NextAttemptAt: sec(5), LastSentAt: sec(8)}),
		},
		{
			name: "resolved while a firing send is in flight that fails",
			run: func(s *outboxScenario) {
				d := s.claimN(sec(2), 2)
				s.resolve(sec(5))
				s.failed(d, sec(9), "timeout")
				s.claimN(sec(8), 0)
				d = s.claimN(sec(9), 2)
				require.True(t, d[0].Resolved)
				require.Equal(t, 1, d[0].Attempts)
			},
			want: both(postgres.DeliveryStatus{State: postgres.DeliveryResolved, NextAttemptAt: sec(9), LeasedUntil: sec(69), Attempts: 1, LastError: "timeout"}),
		},
		{
			name: "a failed resolve is retried",
			run: func(s *outboxScenario) {
				s.resolve(sec(1))
				s.failed(s.claimN(sec(2), 2), sec(10), "timeout")
				d := s.claimN(sec(10), 2)
				require.True(t, d[0].Resolved)
				s.sent(d, sec(11), sec(71))
			},
			want: both(postgres.DeliveryStatus{State: postgres.DeliveryDone, NextAttemptAt: sec(10), LastSentAt: sec(11)}),
		},
		{
			name: "dropped is never sent again, not even resolved",
			run: func(s *outboxScenario) {
				d := s.claimN(sec(2), 2)
				s.dropped(d[:1], "400 Bad Request: invalid label")
				s.sent(d[1:], sec(2), sec(62))
				s.resolve(sec(5))
				d = s.claimN(sec(5), 1)
				require.Equal(t, am2, d[0].Target)
				s.sent(d, sec(6), sec(66))
			},
			want: []postgres.DeliveryStatus{
				{Target: am1, State: postgres.DeliveryDropped, NextAttemptAt: recordedAt, LastError: "400 Bad Request: invalid label"},
				{Target: am2, State: postgres.DeliveryDone, NextAttemptAt: sec(5), LastSentAt: sec(6)},
			},
		},
		{
			name: "a lease that ended is claimed again",
			run: func(s *outboxScenario) {
				s.claim(sec(2), 10*time.Second)
				s.claimN(sec(12).Add(-time.Microsecond), 0)
				s.claimN(sec(12), 2) // a lease until 12 s has ended at 12 s
			},
			want: both(postgres.DeliveryStatus{State: postgres.DeliveryFiring, NextAttemptAt: recordedAt, LeasedUntil: sec(72)}),
		},
		{
			name: "reports on done or dropped deliveries change nothing",
			run: func(s *outboxScenario) {
				d := s.claimN(sec(2), 2)
				s.dropped(d[:1], "400")
				s.resolve(sec(3))
				s.sent(d[1:], sec(4), sec(64))
				r := s.claimN(sec(4), 1)
				s.sent(r, sec(5), sec(65))
				s.failed(d, sec(100), "late report")
				s.sent(d, sec(101), sec(161))
				s.dropped(d, "late report")
				s.claimN(sec(3600), 0)
			},
			want: []postgres.DeliveryStatus{
				{Target: am1, State: postgres.DeliveryDropped, NextAttemptAt: recordedAt, LastError: "400"},
				{Target: am2, State: postgres.DeliveryDone, NextAttemptAt: sec(3), LastSentAt: sec(5)},
			},
		},
		{
			name: "a long error is cut",
			run: func(s *outboxScenario) {
				s.failed(s.claimN(sec(2), 2), sec(10), "x"+strings.Repeat("é", 1000))
			},
			want: both(postgres.DeliveryStatus{
				State: postgres.DeliveryFiring, NextAttemptAt: sec(10), Attempts: 1,
				LastError: "x" + strings.Repeat("é", (postgres.MaxErrorLen-4)/2) + "…",
			}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := pgtest.NewDB(t)
			s := &outboxScenario{t: t, db: db, a: record(t, db, newAnomaly(AnomalyOpts{}))}
			tt.run(s)
			if diff := cmp.Diff(tt.want, withoutIDs(deliveries(t, db, s.a.Fingerprint))); diff != "" {
				t.Errorf("deliveries (-want +got):\n%s", diff)
			}
		})
	}
}

func TestClaimDeliveries(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)

	// Recorded at different times: due in that order.
	a1 := newAnomaly(AnomalyOpts{Destination: dnsUDP, Details: map[string]string{"flows": "3"}})
	a2 := newAnomaly(AnomalyOpts{Kind: egressd.AnomalyEgressVolume, App: shop})
	_, err := db.RecordAnomaly(ctx, a2, []string{am1}, sec(2))
	require.NoError(t, err)
	_, err = db.RecordAnomaly(ctx, a1, amTargets, sec(1))
	require.NoError(t, err)

	got, err := db.ClaimDeliveries(ctx, sec(1), time.Minute, 2)
	require.NoError(t, err)
	want := []egressd.Delivery{
		{Target: am1, Anomaly: a1},
		{Target: am2, Anomaly: a1},
	}
	if diff := cmp.Diff(want, got, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".ID" }, cmp.Ignore())); diff != "" {
		t.Errorf("first claim (-want +got):\n%s", diff)
	}
	require.Less(t, got[0].ID, got[1].ID)

	got, err = db.ClaimDeliveries(ctx, sec(2), time.Minute, 2)
	require.NoError(t, err)
	require.Len(t, got, 1, "the limit left one due delivery")
	require.Equal(t, a2, got[0].Anomaly)

	got, err = db.ClaimDeliveries(ctx, sec(2), time.Minute, 2)
	require.NoError(t, err)
	require.Empty(t, got)

	for _, tt := range []struct {
		name  string
		lease time.Duration
		limit int
	}{
		{name: "no lease", lease: 0, limit: 1},
		{name: "no limit", lease: time.Second, limit: 0},
	} {
		_, err := db.ClaimDeliveries(ctx, sec(2), tt.lease, tt.limit)
		require.Equal(t, egressd.EINVALID, egressd.ErrorCode(err), tt.name)
	}
}

// TestClaimDeliveriesConcurrent stands for several replicas' senders
// claiming at once: every delivery is claimed, none twice.
func TestClaimDeliveriesConcurrent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url := pgtest.URL(t)
	replicas := []*postgres.DB{open(t, url), open(t, url), open(t, url)}

	const anomalies = 150
	for i := range anomalies {
		record(t, replicas[0], newAnomaly(AnomalyOpts{Destination: egressd.Destination{
			Name: fmt.Sprintf("host-%d.example.com", i), Port: 443, Protocol: egressd.ProtoTCP,
		}}))
	}

	var (
		mu      sync.Mutex
		claimed = map[int64]int{}
		wg      sync.WaitGroup
		start   = make(chan struct{})
		errs    = make(chan error, 100)
	)
	for _, db := range replicas {
		for range 3 {
			wg.Go(func() {
				<-start
				for {
					d, err := db.ClaimDeliveries(ctx, sec(5), time.Hour, 7)
					if err != nil {
						errs <- err
						return
					}
					if len(d) == 0 {
						return
					}
					mu.Lock()
					for _, id := range ids(d) {
						claimed[id]++
					}
					mu.Unlock()
				}
			})
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Len(t, claimed, anomalies*len(amTargets), "deliveries claimed")
	for id, n := range claimed {
		require.Equal(t, 1, n, "delivery %d claimed %d times", id, n)
	}
}

// TestOutboxConcurrentWriters runs every kind of outbox writer at once on
// overlapping rows, in orders chosen to provoke deadlocks: none may fail, and
// the end state must be what the operations imply.
func TestOutboxConcurrentWriters(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url := pgtest.URL(t)
	replicas := []*postgres.DB{open(t, url), open(t, url)}
	db := replicas[0]

	const n = 60
	var all []egressd.Anomaly
	for i := range n {
		all = append(all, record(t, db, newAnomaly(AnomalyOpts{
			Time: sec(-i), Destination: egressd.Destination{Name: fmt.Sprintf("host-%d.example.com", i), Port: 443, Protocol: egressd.ProtoTCP},
		})))
	}
	claimedDeliveries, err := db.ClaimDeliveries(ctx, sec(2), time.Minute, 1000)
	require.NoError(t, err)
	require.Len(t, claimedDeliveries, n*len(amTargets))
	allIDs := ids(claimedDeliveries)

	shuffled := func(seed uint64) []int64 {
		s := slices.Clone(allIDs)
		rand.New(rand.NewPCG(seed, 0)).Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
		return s
	}
	reversed := slices.Clone(allIDs)
	slices.Reverse(reversed)

	ops := []func(db *postgres.DB) error{
		func(db *postgres.DB) error { return db.DeliveryFailed(ctx, shuffled(1), sec(3), "timeout") },
		func(db *postgres.DB) error { return db.DeliveryFailed(ctx, reversed, sec(3), "timeout") },
		func(db *postgres.DB) error { return db.DeliverySent(ctx, shuffled(2), sec(3), sec(63)) },
		func(db *postgres.DB) error { _, err := db.ExpireNovel(ctx, sec(-n/2), sec(3)); return err },
		func(db *postgres.DB) error { _, err := db.ExpireNovel(ctx, sec(1), sec(3)); return err },
		func(db *postgres.DB) error {
			for i := n - 1; i >= 0; i-- {
				if _, err := db.ResolveAnomaly(ctx, all[i].Fingerprint, sec(3)); err != nil {
					return err
				}
			}
			return nil
		},
		func(db *postgres.DB) error {
			for i := range n {
				if i%3 == 0 {
					err := db.Accept(ctx, egressd.Accepted{App: recyclarr, Destination: all[i].Destination, By: "ops", At: sec(3)})
					if err != nil {
						return err
					}
				}
			}
			return nil
		},
		func(db *postgres.DB) error { _, err := db.ClaimDeliveries(ctx, sec(100), time.Minute, 50); return err },
	}
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make(chan error, len(ops)*len(replicas))
	)
	for _, r := range replicas {
		for _, op := range ops {
			wg.Go(func() {
				<-start
				if err := op(r); err != nil {
					errs <- err
				}
			})
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	// Every anomaly resolved exactly once, at sec(3), and every delivery
	// resolved or (a resolve claimed and sent) done; none lost.
	list, err := db.Anomalies(ctx, postgres.AnomalyFilter{Limit: 1000})
	require.NoError(t, err)
	require.Len(t, list, n)
	for _, a := range list {
		require.Equal(t, sec(3), a.ResolvedAt, a.Destination.Name)
		for _, d := range deliveries(t, db, a.Fingerprint) {
			require.Contains(t, []postgres.DeliveryState{postgres.DeliveryResolved, postgres.DeliveryDone}, d.State, "%s %s", a.Destination.Name, d.Target)
		}
	}
}

func TestOutboxDepth(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)

	depth, err := db.OutboxDepth(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{"firing": 0, "resolved": 0}, depth)

	record(t, db, newAnomaly(AnomalyOpts{}))
	record(t, db, newAnomaly(AnomalyOpts{Destination: dnsUDP}))
	gone := record(t, db, newAnomaly(AnomalyOpts{Destination: rawIP}))
	resolved := record(t, db, newAnomaly(AnomalyOpts{Destination: blocked}))
	_, err = db.ResolveAnomaly(ctx, gone.Fingerprint, sec(2))
	require.NoError(t, err)
	_, err = db.ResolveAnomaly(ctx, resolved.Fingerprint, sec(2))
	require.NoError(t, err)
	// gone's resolve is sent to both; one of resolved's is dropped.
	for _, d := range deliveries(t, db, gone.Fingerprint) {
		require.NoError(t, db.DeliverySent(ctx, []int64{d.ID}, sec(3), sec(63))) // unclaimed: stays
	}
	d, err := db.ClaimDeliveries(ctx, sec(3), time.Minute, 100)
	require.NoError(t, err)
	for _, d := range d {
		switch {
		case d.Anomaly.Fingerprint == gone.Fingerprint:
			require.NoError(t, db.DeliverySent(ctx, []int64{d.ID}, sec(3), sec(63)))
		case d.Anomaly.Fingerprint == resolved.Fingerprint && d.Target == am1:
			require.NoError(t, db.DeliveryDropped(ctx, []int64{d.ID}, "400"))
		}
	}
	depth, err = db.OutboxDepth(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{"firing": 4, "resolved": 1}, depth)
}
