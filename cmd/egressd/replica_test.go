package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cilium/cilium/api/v1/observer"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/alerts/amtest"
	"github.com/egressd/egressd/collector/hubbletest"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgtest"
)

// replica is one `egressd serve` running in-process.
type replica struct {
	m    *Main
	http string
	stop func()
}

type replicaOpts struct {
	id         string
	amURLs     []string
	ttl, renew time.Duration
	// keepLease skips the release at stop, as a crash would.
	keepLease bool
}

// startReplica runs serve with detection (no learning period, so any new
// destination is novel) and short lease timings.
func startReplica(t *testing.T, db *postgres.DB, hubbleAddr string, o replicaOpts) *replica {
	t.Helper()
	cfg := alertingConfig(db, hubbleAddr, o.amURLs...)
	cfg.Aggregate.FlushInterval = 50 * time.Millisecond
	cfg.ReplicaID, cfg.LeaseTTL, cfg.LeaseRenew, cfg.LeasePoll = o.id, o.ttl, o.renew, 50*time.Millisecond
	cfg.KeepLeaseOnStop = o.keepLease
	m, stop := runMain(t, cfg)
	return &replica{m: m, http: m.Addr(context.Background()), stop: stop}
}

// readyz returns the status and the Egressd-Collector header of /readyz.
func (r *replica) readyz(t *testing.T) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + r.http + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Egressd-Collector")
}

// metric returns the line of /metrics that starts with name and a space.
func (r *replica) metric(t *testing.T, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + r.http + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, name+" ") {
			return line
		}
	}
	return ""
}

// flowSeq makes egress flows with distinct, increasing times.
type flowSeq struct {
	base time.Time
	n    int
}

func (s *flowSeq) flows(n int, app, name, ip string) []*observer.GetFlowsResponse {
	var out []*observer.GetFlowsResponse
	for range n {
		s.n++
		out = append(out, hubbletest.Response(egressFlow(s.base.Add(time.Duration(s.n)*time.Millisecond), app, name, ip)))
	}
	return out
}

func storedFlows(t *testing.T, db *postgres.DB) int64 {
	t.Helper()
	n, err := db.FlowTotal(context.Background())
	require.NoError(t, err)
	return n
}

// TestReplicasCountOnceAlertOnceAndTakeOver: two replicas on one database
// and one Hubble source. One collects, the other waits ready; the flows
// are counted once, every anomaly is stored once with one delivery per
// Alertmanager. The active replica then stops without releasing its lease
// (as a crash would): the standby takes over when the lease expires,
// resumes from the stored cursor, and the counts stay exact.
func TestReplicasCountOnceAlertOnceAndTakeOver(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	recv := amtest.NewReceiver(t)
	am1 := amtest.Start(t, amtest.Options{WebhookURL: recv.URL()})
	am2 := amtest.Start(t, amtest.Options{WebhookURL: recv.URL()})
	srv, addr := startHubble(t, hubbletest.Options{})
	db := openTestDB(t, pgtest.URL(t))
	const ttl, renew = 2 * time.Second, 250 * time.Millisecond
	ams := []string{am1.URL(), am2.URL()}

	a := startReplica(t, db, addr, replicaOpts{id: "replica-a", amURLs: ams, ttl: ttl, renew: renew, keepLease: true})
	waitUntil(t, "replica-a holds the lease", a.m.Active)
	b := startReplica(t, db, addr, replicaOpts{id: "replica-b", amURLs: ams, ttl: ttl, renew: renew})
	waitUntil(t, "replica-b is a standby", func() bool { _, ok := b.m.StandbyOf(); return ok })

	// The standby is ready (a rolling update must not wait for it
	// forever) and says why; it does not stream.
	code, role := b.readyz(t)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "standby; holder=replica-a", role)
	require.Equal(t, "egressd_collector_lease_held 0", b.metric(t, "egressd_collector_lease_held"))
	require.Equal(t, "egressd_collector_lease_held 1", a.metric(t, "egressd_collector_lease_held"))
	require.NoError(t, srv.WaitStreams(ctx, 1))

	seq := &flowSeq{base: time.Now().Add(-time.Minute)}
	var streamed int64
	add := func(resps []*observer.GetFlowsResponse) {
		srv.Add(resps...)
		streamed += int64(len(resps))
	}
	add(seq.flows(150, "recyclarr", "api.github.com", "140.82.112.6"))
	add(seq.flows(1, "recyclarr", "exfil.example.net", "198.51.100.7"))
	add(seq.flows(150, "sonarr", "api.themoviedb.org", "13.224.161.90"))
	last := seq.flows(1, "sonarr", "api.themoviedb.org", "13.224.161.90")
	add(last)

	// (a) Counted once.
	waitUntil(t, "replica-a stored every flow", func() bool { return storedUpTo(t, db, addr, last[0]) })
	require.Equal(t, streamed, storedFlows(t, db))
	code, role = a.readyz(t)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "active", role)
	require.Len(t, srv.Requests(), 1, "the standby opened a stream")

	// (b) Each novel destination is one anomaly, delivered once to each
	// Alertmanager, which lists it once.
	assertAlertedOnce := func(want int) {
		t.Helper()
		waitUntil(t, "every delivery was sent", func() bool {
			as, err := db.Anomalies(ctx, postgres.AnomalyFilter{})
			require.NoError(t, err)
			if len(as) < want {
				return false
			}
			require.Len(t, as, want)
			for _, an := range as {
				ds, err := db.Deliveries(ctx, an.Fingerprint)
				require.NoError(t, err)
				require.Len(t, ds, len(ams), "deliveries of %s", an.Destination.Name)
				require.NotEqual(t, ds[0].Target, ds[1].Target)
				for _, d := range ds {
					if d.LastSentAt.IsZero() {
						return false
					}
				}
			}
			return true
		})
		for _, am := range []*amtest.Alertmanager{am1, am2} {
			listed, err := am.Alerts(ctx, `destination="exfil.example.net"`)
			require.NoError(t, err)
			require.Len(t, listed, 1, "alerts listed by %s", am.URL())
		}
	}
	assertAlertedOnce(3) // github, exfil, themoviedb: no learning period

	// (c) replica-a stops without releasing its lease. Flows arrive
	// while nobody collects; replica-b takes over once the lease expires,
	// and resumes from the stored cursor.
	stoppedAt := time.Now()
	a.stop()
	add(seq.flows(50, "recyclarr", "api.github.com", "140.82.112.6"))
	add(seq.flows(1, "recyclarr", "exfil.example.net", "198.51.100.7"))
	waitUntil(t, "replica-b took over", b.m.Active)
	took := time.Since(stoppedAt)
	require.Greater(t, took, ttl/2, "replica-b took over before the lease expired")
	require.Less(t, took, ttl+5*time.Second, "replica-b took over long after the lease expired")
	add(seq.flows(50, "sonarr", "api.themoviedb.org", "13.224.161.90"))
	add(seq.flows(1, "sonarr", "second.example.org", "198.51.100.8"))
	last = seq.flows(1, "sonarr", "api.themoviedb.org", "13.224.161.90")
	add(last)
	waitUntil(t, "replica-b stored every flow", func() bool { return storedUpTo(t, db, addr, last[0]) })
	require.Equal(t, streamed, storedFlows(t, db))
	reqs := srv.Requests()
	require.Len(t, reqs, 2)
	require.NotNil(t, reqs[1].GetSince(), "replica-b resumed from the stored cursor")
	code, role = b.readyz(t)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "active", role)

	// replica-b judged github, exfil and themoviedb novel too (its
	// detector never saw them): still one anomaly each.
	assertAlertedOnce(4)
}

// TestReplicaDiscardsFlushAfterLosingLease: a replica whose lease another
// takes over (as after a pause longer than the TTL) writes nothing more:
// its next flush is refused and discarded, it becomes a standby, and when
// it gets the lease back it re-reads those flows from the stored cursor,
// so they are counted exactly once.
func TestReplicaDiscardsFlushAfterLosingLease(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, addr := startHubble(t, hubbletest.Options{})
	db := openTestDB(t, pgtest.URL(t))
	source := "hubble:" + addr

	// Renewals far apart: only the fenced flush can find the loss.
	a := startReplica(t, db, addr, replicaOpts{id: "replica-a", ttl: time.Minute, renew: 30 * time.Second})
	waitUntil(t, "replica-a holds the lease", a.m.Active)
	require.NoError(t, srv.WaitStreams(ctx, 1))
	seq := &flowSeq{base: time.Now().Add(-time.Minute)}
	first := seq.flows(100, "recyclarr", "api.github.com", "140.82.112.6")
	srv.Add(first...)
	waitUntil(t, "the first flows are stored", func() bool { return storedUpTo(t, db, addr, first[len(first)-1]) })
	require.Equal(t, int64(len(first)), storedFlows(t, db))

	// Another replica takes the source over: replica-a's lease (token 1
	// on this fresh database) is expired for it.
	thief, err := func() (postgres.Lease, error) {
		require.NoError(t, db.ReleaseLease(ctx, postgres.Lease{Source: source, Holder: "replica-a", Token: 1}))
		return db.AcquireLease(ctx, source, "thief", time.Minute)
	}()
	require.NoError(t, err)

	second := seq.flows(100, "recyclarr", "api.github.com", "140.82.112.6")
	srv.Add(second...)
	waitUntil(t, "replica-a became a standby", func() bool {
		h, ok := a.m.StandbyOf()
		return ok && h == "thief"
	})
	require.Equal(t, int64(len(first)), storedFlows(t, db), "a flush was written after the lease was lost")
	require.Regexp(t, `^egressd_collector_flushes_fenced_total [1-9]`, a.metric(t, "egressd_collector_flushes_fenced_total"))
	require.Equal(t, "egressd_collector_lease_held 0", a.metric(t, "egressd_collector_lease_held"))

	// The thief leaves: replica-a takes over again, from the cursor.
	require.NoError(t, db.ReleaseLease(ctx, thief))
	waitUntil(t, "replica-a holds the lease again", a.m.Active)
	waitUntil(t, "the second flows are stored", func() bool { return storedUpTo(t, db, addr, second[len(second)-1]) })
	require.Equal(t, int64(len(first)+len(second)), storedFlows(t, db))
}

// TestReplicaStandsByWhenRenewalFindsLeaseTaken: with no flush to write,
// the renewal finds that another replica took the source over; the replica
// stops streaming and waits, ready, until the lease is free again.
func TestReplicaStandsByWhenRenewalFindsLeaseTaken(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, addr := startHubble(t, hubbletest.Options{})
	db := openTestDB(t, pgtest.URL(t))
	source := "hubble:" + addr

	a := startReplica(t, db, addr, replicaOpts{id: "replica-a", ttl: time.Minute, renew: 100 * time.Millisecond})
	waitUntil(t, "replica-a holds the lease", a.m.Active)
	require.NoError(t, srv.WaitStreams(ctx, 1))

	// Take it over; a renewal landing between the release and the
	// acquisition makes the lease unexpired again, so retry.
	var thief postgres.Lease
	waitUntil(t, "the thief took the lease", func() bool {
		require.NoError(t, db.ReleaseLease(ctx, postgres.Lease{Source: source, Holder: "replica-a", Token: 1}))
		var err error
		thief, err = db.AcquireLease(ctx, source, "thief", time.Minute)
		if err != nil {
			require.True(t, postgres.LeaseLost(err), "err = %v", err)
			return false
		}
		return true
	})
	waitUntil(t, "replica-a became a standby", func() bool {
		h, ok := a.m.StandbyOf()
		return ok && h == "thief"
	})
	waitUntil(t, "replica-a closed its stream", func() bool { return srv.ActiveStreams() == 0 })
	code, role := a.readyz(t)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "standby; holder=thief", role)
	require.Equal(t, "egressd_collector_lease_lost_total 1", a.metric(t, "egressd_collector_lease_lost_total"))
	require.Equal(t, "egressd_collector_flushes_fenced_total 0", a.metric(t, "egressd_collector_flushes_fenced_total"))

	require.NoError(t, db.ReleaseLease(ctx, thief))
	waitUntil(t, "replica-a holds the lease again", a.m.Active)
	require.NoError(t, srv.WaitStreams(ctx, 1))
}
