package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/cilium/api/v1/observer"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/alerts/amtest"
	"github.com/egressd/egressd/collector/hubbletest"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgserver"
)

// perNode is one node of TestPerNodeCollectorsShareOneDatabase: its agent
// (a Hubble server on a unix socket, as the agent's hubble.sock) and the
// egressd that reads it.
type perNode struct {
	name   string
	source string
	hubble *hubbletest.Server
	m      *Main
	stop   func()
	logs   *faultLog
	// streamed counts the flows added to the node's agent, newest last.
	streamed []*observer.GetFlowsResponse
}

// add streams n flows of app in namespace media to name at ip:443, from
// start a millisecond apart, from this node's pods.
func (n *perNode) add(count int, app, name, ip string, start time.Time) {
	resps := make([]*observer.GetFlowsResponse, 0, count)
	for i := range count {
		f := egressFlow(start.Add(time.Duration(i)*time.Millisecond), app, name, ip)
		f.NodeName = "homelab/" + n.name
		f.Uuid = n.name + "-" + f.Uuid
		f.Source.PodName = app + "-7d9f8b6c5d-" + n.name
		resps = append(resps, hubbletest.Response(f))
	}
	n.hubble.Add(resps...)
	n.streamed = append(n.streamed, resps...)
}

// storedAll reports whether the node's cursor covers its newest flow.
func (n *perNode) storedAll(t *testing.T, db *postgres.DB) bool {
	t.Helper()
	if len(n.streamed) == 0 {
		return true
	}
	cur, err := db.Cursor(context.Background(), n.source)
	if egressd.ErrorCode(err) == egressd.ENOTFOUND {
		return false
	}
	require.NoError(t, err)
	newest := n.streamed[0].GetFlow().GetTime().AsTime()
	for _, r := range n.streamed {
		if ft := r.GetFlow().GetTime().AsTime(); ft.After(newest) {
			newest = ft
		}
	}
	return !cur.Before(newest)
}

// TestPerNodeCollectorsShareOneDatabase runs egressd the way the per-node
// DaemonSet does: four collectors, each reading its own node's agent
// socket as its own source, all writing one PostgreSQL and sending to the
// same two Alertmanagers. An app learns once for the cluster (what it
// reached on node 1 during its learning period is not novel on nodes 2-4,
// which first see it after that period), a novel destination reached from
// three nodes is one anomaly with one delivery per Alertmanager, an app
// that appears on every node at once is learning everywhere, the stored
// counts are exactly the flows streamed, and neither egressd nor
// PostgreSQL logged a lock error or deadlock.
func TestPerNodeCollectorsShareOneDatabase(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pgLog := &faultLog{}
	pg, err := pgserver.Start(ctx, pgserver.Options{Log: pgLog})
	require.NoError(t, err)
	t.Cleanup(func() { pg.Close() })
	db := openTestDB(t, pg.URL())
	require.NoError(t, db.Migrate(ctx))
	// What the server logged while starting (its readiness probes) is
	// not the collectors' doing.
	pgLogFrom := len(pgLog.String())

	recv := amtest.NewReceiver(t)
	am1 := amtest.Start(t, amtest.Options{WebhookURL: recv.URL()})
	am2 := amtest.Start(t, amtest.Options{WebhookURL: recv.URL()})
	ams := []string{am1.URL(), am2.URL()}

	const learning = time.Hour
	nodes := make([]*perNode, 4)
	for i := range nodes {
		n := &perNode{name: fmt.Sprintf("k8s-node-%d", i+1), logs: &faultLog{}}
		n.source = "node/" + n.name
		n.hubble = hubbletest.NewServer(hubbletest.Options{})
		addr, err := n.hubble.StartAt("unix://" + filepath.Join(t.TempDir(), "hubble.sock"))
		require.NoError(t, err)
		t.Cleanup(n.hubble.Stop)

		cfg := alertingConfig(db, addr, ams...)
		cfg.PerNode, cfg.Source, cfg.ReplicaID = true, n.source, "egressd-"+n.name
		cfg.Detect.LearningPeriod = learning
		cfg.Aggregate.FlushInterval = 20 * time.Millisecond
		n.m, n.stop = runMainLog(t, cfg, slog.New(slog.NewJSONHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
		nodes[i] = n
	}
	for _, n := range nodes {
		waitUntil(t, n.name+" collects its own source", n.m.Active)
		require.NoError(t, n.hubble.WaitStreams(ctx, 1))
	}
	storedAll := func() bool {
		for _, n := range nodes {
			if !n.storedAll(t, db) {
				return false
			}
		}
		return true
	}

	// Learning, on node 1 only: recyclarr reaches GitHub.
	base := time.Now().Add(-3 * time.Hour).Truncate(time.Second)
	nodes[0].add(100, "recyclarr", "api.github.com", "140.82.112.6", base)
	waitUntil(t, "node 1's learning flows are stored", storedAll)

	// Two hours later, on every node at once: recyclarr reaches GitHub
	// from nodes 2-4 (known, learnt on node 1), a new destination from
	// nodes 2-4 and another from node 4 only; sonarr appears on all four
	// nodes (learning, for the cluster as for each node).
	later := base.Add(2 * time.Hour)
	for round := range 5 {
		at := later.Add(time.Duration(round) * time.Second)
		for i, n := range nodes {
			if i > 0 {
				n.add(40, "recyclarr", "api.github.com", "140.82.112.6", at)
				n.add(2, "recyclarr", "exfil.example.net", "198.51.100.7", at.Add(100*time.Millisecond))
			}
			n.add(60, "sonarr", "api.themoviedb.org", "13.224.161.90", at.Add(200*time.Millisecond))
			n.add(3, "sonarr", "image.tmdb.org", "13.224.161.91", at.Add(300*time.Millisecond))
		}
	}
	nodes[3].add(1, "recyclarr", "second.example.org", "198.51.100.8", later.Add(10*time.Second))
	waitUntil(t, "every node's flows are stored", storedAll)

	// Exact totals, per destination and overall.
	want := map[string]int64{
		faultKey("recyclarr", "api.github.com"):     100 + 3*5*40,
		faultKey("recyclarr", "exfil.example.net"):  3 * 5 * 2,
		faultKey("recyclarr", "second.example.org"): 1,
		faultKey("sonarr", "api.themoviedb.org"):    4 * 5 * 60,
		faultKey("sonarr", "image.tmdb.org"):        4 * 5 * 3,
	}
	require.Empty(t, cmp.Diff(want, faultCountsOf(t, db)), "stored flows (-want +got)")
	var streamed int64
	for _, n := range nodes {
		streamed += int64(len(n.streamed))
	}
	require.Equal(t, streamed, storedFlows(t, db))

	// One anomaly per novel destination, whichever nodes reached it, each
	// delivered once to each Alertmanager, which lists it once.
	var anomalies []egressd.Anomaly
	waitUntil(t, "both anomalies are delivered to both Alertmanagers", func() bool {
		anomalies, err = db.Anomalies(ctx, postgres.AnomalyFilter{})
		require.NoError(t, err)
		if len(anomalies) < 2 {
			return false
		}
		for _, a := range anomalies {
			ds, err := db.Deliveries(ctx, a.Fingerprint)
			require.NoError(t, err)
			require.Len(t, ds, len(ams), "deliveries of %s", a.Destination.Name)
			for _, d := range ds {
				if d.LastSentAt.IsZero() {
					return false
				}
			}
		}
		return true
	})
	var got []string
	for _, a := range anomalies {
		got = append(got, fmt.Sprintf("%s %s %s", a.Kind, a.App, a.Destination))
	}
	require.ElementsMatch(t, []string{
		"novel_destination media/recyclarr exfil.example.net:443/TCP",
		"novel_destination media/recyclarr second.example.org:443/TCP",
	}, got)
	for _, am := range []*amtest.Alertmanager{am1, am2} {
		for _, dst := range []string{"exfil.example.net", "second.example.org"} {
			listed, err := am.Alerts(ctx, fmt.Sprintf("destination=%q", dst))
			require.NoError(t, err)
			require.Len(t, listed, 1, "alerts for %s listed by %s", dst, am.URL())
		}
	}
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.stop() }()
	}
	wg.Wait()

	// No flush failed or waited on a lock error, in egressd or in
	// PostgreSQL.
	lockTrouble := regexp.MustCompile(`(?i)deadlock|lock timeout|could not obtain lock|could not serialize|flush_failed|anomaly_store_failed|lease_lost|lease_renew_failed`)
	for _, n := range nodes {
		logs := n.logs.String()
		require.NotRegexp(t, lockTrouble, logs, "%s logged:\n%s", n.name, logs)
		require.Contains(t, logs, `"msg":"per_node_volume_rule_off"`, "%s says why the flow-rate volume rule is off", n.name)
	}
	var pgErrors []string
	for _, line := range strings.Split(pgLog.String()[pgLogFrom:], "\n") {
		if strings.Contains(line, "ERROR") || strings.Contains(line, "FATAL") || strings.Contains(line, "deadlock") {
			pgErrors = append(pgErrors, line)
		}
	}
	require.Empty(t, pgErrors, "PostgreSQL logged errors")
}
