package postgres

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/egressd/egressd"
)

// WriteRollup adds a flush's rollup to the store in one transaction.
//
// Each table gets one set-based upsert whose rows travel as arrays, so the
// number of statements does not grow with the number of keys. Rows merge
// commutatively with what is stored: counts add, first_seen takes the
// minimum, last_seen the maximum, verdict sets OR, the example pod is the one
// reported with the latest last_seen (ties: the smallest name), the name
// source the lowest non-zero, cursors the maximum. Writing rollups in any
// order, or from several collectors at once, gives the same rows.
//
// Concurrent writers never deadlock: every transaction takes its locks in
// the same order, partition lock, then apps, destinations, hourly buckets,
// DNS questions and cursors, each table's rows sorted by key. Rows that
// repeat a key within the rollup are merged first.
//
// A rollup with an ID is written at most once: writing it again after its
// commit landed (a retry after an error that hid the commit's outcome)
// changes nothing and succeeds.
func (db *DB) WriteRollup(ctx context.Context, r *egressd.Rollup) error {
	return db.writeRollup(ctx, r, nil)
}

// writeRollup is WriteRollup; fence, when set, runs first in the
// transaction, and its error rolls the whole rollup back
// (WriteRollupFenced).
func (db *DB) writeRollup(ctx context.Context, r *egressd.Rollup, fence func(context.Context, pgx.Tx) error) error {
	if r == nil || r.Empty() {
		return nil
	}
	w := newRollupWriter(r)

	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return wrap(err, "write rollup: begin")
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after Commit

	if fence != nil {
		if err := fence(ctx, tx); err != nil {
			return err
		}
	}
	if r.ID != "" {
		// A concurrent write of the same ID waits here for the other
		// transaction: nothing to do once it commits, write if it rolls
		// back.
		tag, err := tx.Exec(ctx, `INSERT INTO rollup_ids (id) VALUES ($1) ON CONFLICT (id) DO NOTHING`, r.ID)
		if err != nil {
			return wrap(err, "write rollup %s: record its id", r.ID)
		}
		if tag.RowsAffected() == 0 {
			return nil // written before: its commit landed
		}
	}

	// Partitions first: creating one takes an ACCESS EXCLUSIVE lock on
	// destination_hourly, which must not be requested while this
	// transaction holds row locks other writers wait for.
	if err := ensureHourlyPartitions(ctx, tx, w.days); err != nil {
		return fmt.Errorf("write rollup: %w", err)
	}

	// Apps next, in their own statement: the rows of the other tables
	// refer to them by id.
	if err := w.upsertApps(ctx, tx); err != nil {
		return fmt.Errorf("write rollup: %w", err)
	}

	b := &pgx.Batch{}
	var stmts []string
	queue := func(name, sql string, args ...any) {
		b.Queue(sql, args...)
		stmts = append(stmts, name)
	}
	if len(w.dests.name) > 0 {
		queue("upsert destinations", upsertDestinations, w.dests.args(w.appIDs)...)
	}
	if len(w.hourly.name) > 0 {
		queue("upsert hourly buckets", upsertHourly, w.hourly.args(w.appIDs)...)
		queue("upsert app hours", upsertAppHourly, ids(w.appHours.app, w.appIDs), w.appHours.hour, w.appHours.flows)
	}
	if len(w.appPods.pod) > 0 {
		queue("upsert app pods", upsertAppPods, ids(w.appPods.app, w.appIDs), w.appPods.pod, w.appPods.seen)
	}
	if len(w.dns.name) > 0 {
		queue("upsert dns queries", upsertDNSQueries, w.dns.args(w.appIDs)...)
	}
	if len(w.answers.pod) > 0 {
		c := &w.answers
		queue("upsert dns answers", upsertDNSAnswers, c.namespace, c.pod, c.addr, c.name, c.expires)
	}
	w.queuePodFacts(queue)
	if c := &w.lost; len(c.node) > 0 {
		queue("upsert lost events", upsertLost, c.node, c.time, c.source, c.events)
	}
	if len(w.cursors.source) > 0 {
		queue("upsert cursors", upsertCursors, w.cursors.source, w.cursors.timeNS, w.cursors.time)
	}
	br := tx.SendBatch(ctx, b)
	for _, name := range stmts {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return wrap(err, "write rollup: %s (%d destinations, %d hourly, %d dns)", name, len(w.dests.name), len(w.hourly.name), len(w.dns.name))
		}
	}
	if err := br.Close(); err != nil {
		return wrap(err, "write rollup")
	}
	if err := tx.Commit(ctx); err != nil {
		return wrap(err, "write rollup: commit")
	}
	return nil
}

// upsertApps updates every row it touches, even when no time widens:
// RETURNING must give the id of each app, and a flush normally moves every
// app's last_seen anyway.
const upsertApps = `
INSERT INTO apps AS a (cluster, namespace, name, first_seen, last_seen)
SELECT u.cluster, u.namespace, u.name, u.first_seen, u.last_seen
FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[])
     WITH ORDINALITY AS u(cluster, namespace, name, first_seen, last_seen, ord)
ORDER BY u.ord
ON CONFLICT (cluster, namespace, name) DO UPDATE
SET first_seen = least(a.first_seen, excluded.first_seen),
    last_seen = greatest(a.last_seen, excluded.last_seen)
RETURNING a.id, a.cluster, a.namespace, a.name`

// first_allowed_hour and last_allowed_hour are the first and last hourly
// buckets with allowed flows among the rollup's own buckets of the key
// (NULL when none): least and greatest ignore NULL, so the columns always
// name the first and last such bucket ever written (WindowDestinations).
//
// The example pod is the one reported with the latest last_seen, ties broken
// by the smallest name in byte order (COLLATE "C", as Go compares), so the
// choice does not depend on the order of writes. last_allowed is the
// last_seen of the latest rollup with allowed flows (greatest ignores NULL).
const upsertDestinations = `
INSERT INTO destinations AS d (app_id, name, port, protocol, first_seen, last_seen,
    flows, dropped_flows, verdicts, example_pod, example_pod_seen, name_source, last_allowed,
    first_allowed_hour, last_allowed_hour)
SELECT u.app_id, u.name, u.port, u.protocol, u.first_seen, u.last_seen,
    u.flows, u.dropped_flows, u.verdicts, u.example_pod,
    CASE WHEN u.example_pod = '' THEN NULL ELSE u.example_pod_seen END, u.name_source,
    CASE WHEN u.flows > u.dropped_flows THEN u.last_seen END,
    u.first_allowed_hour, u.last_allowed_hour
FROM unnest($1::int8[], $2::text[], $3::int4[], $4::text[], $5::timestamptz[], $6::timestamptz[],
            $7::int8[], $8::int8[], $9::int4[], $10::text[], $11::timestamptz[], $12::int2[],
            $13::timestamptz[], $14::timestamptz[])
     WITH ORDINALITY AS u(app_id, name, port, protocol, first_seen, last_seen,
            flows, dropped_flows, verdicts, example_pod, example_pod_seen, name_source,
            first_allowed_hour, last_allowed_hour, ord)
ORDER BY u.ord
ON CONFLICT (app_id, name, port, protocol) DO UPDATE
SET first_seen = least(d.first_seen, excluded.first_seen),
    last_seen = greatest(d.last_seen, excluded.last_seen),
    flows = d.flows + excluded.flows,
    dropped_flows = d.dropped_flows + excluded.dropped_flows,
    verdicts = d.verdicts | excluded.verdicts,
    example_pod = CASE
        WHEN excluded.example_pod <> '' AND (d.example_pod = ''
            OR excluded.example_pod_seen > d.example_pod_seen
            OR (excluded.example_pod_seen = d.example_pod_seen
                AND excluded.example_pod COLLATE "C" < d.example_pod COLLATE "C"))
        THEN excluded.example_pod ELSE d.example_pod END,
    example_pod_seen = CASE
        WHEN excluded.example_pod <> '' AND (d.example_pod = ''
            OR excluded.example_pod_seen > d.example_pod_seen
            OR (excluded.example_pod_seen = d.example_pod_seen
                AND excluded.example_pod COLLATE "C" < d.example_pod COLLATE "C"))
        THEN excluded.example_pod_seen ELSE d.example_pod_seen END,
    name_source = coalesce(least(nullif(d.name_source, 0), nullif(excluded.name_source, 0)), 0),
    last_allowed = greatest(d.last_allowed, excluded.last_allowed),
    first_allowed_hour = least(d.first_allowed_hour, excluded.first_allowed_hour),
    last_allowed_hour = greatest(d.last_allowed_hour, excluded.last_allowed_hour)`

const upsertHourly = `
INSERT INTO destination_hourly AS h (app_id, name, port, protocol, hour, flows, dropped_flows)
SELECT u.app_id, u.name, u.port, u.protocol, u.hour, u.flows, u.dropped_flows
FROM unnest($1::int8[], $2::text[], $3::int4[], $4::text[], $5::timestamptz[], $6::int8[], $7::int8[])
     WITH ORDINALITY AS u(app_id, name, port, protocol, hour, flows, dropped_flows, ord)
ORDER BY u.ord
ON CONFLICT (app_id, name, port, protocol, hour) DO UPDATE
SET flows = h.flows + excluded.flows,
    dropped_flows = h.dropped_flows + excluded.dropped_flows`

// upsertAppHourly adds the rollup's flows per app and hour (summed by
// newRollupWriter): the volume rule's history (migration 005).
const upsertAppHourly = `
INSERT INTO app_hourly AS h (app_id, hour, flows)
SELECT u.app_id, u.hour, u.flows
FROM unnest($1::int8[], $2::timestamptz[], $3::int8[]) WITH ORDINALITY AS u(app_id, hour, flows, ord)
ORDER BY u.ord
ON CONFLICT (app_id, hour) DO UPDATE
SET flows = h.flows + excluded.flows`

// upsertAppPods records the rollup's example pods per app (one row each,
// by newRollupWriter), with the latest time each was reported (migration
// 005), to the minute: a pod seen again within a minute is not rewritten,
// which spares most flushes a row version per pod.
const upsertAppPods = `
INSERT INTO app_pods AS p (app_id, pod, last_seen)
SELECT u.app_id, u.pod, u.seen
FROM unnest($1::int8[], $2::text[], $3::timestamptz[]) WITH ORDINALITY AS u(app_id, pod, seen, ord)
ORDER BY u.ord
ON CONFLICT (app_id, pod) DO UPDATE
SET last_seen = excluded.last_seen
WHERE p.last_seen < excluded.last_seen - interval '1 minute'`

// upsertDNSAnswers keeps, per pod and address, the answer that expires
// last (migration 005): commutative, whatever the order of flushes.
const upsertDNSAnswers = `
INSERT INTO dns_answers AS d (namespace, pod, addr, name, expires_at)
SELECT u.namespace, u.pod, u.addr, u.name, u.expires_at
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
     WITH ORDINALITY AS u(namespace, pod, addr, name, expires_at, ord)
ORDER BY u.ord
ON CONFLICT (namespace, pod, addr) DO UPDATE
SET name = CASE WHEN excluded.expires_at > d.expires_at
                  OR (excluded.expires_at = d.expires_at AND excluded.name < d.name)
                THEN excluded.name ELSE d.name END,
    expires_at = greatest(d.expires_at, excluded.expires_at)`

const upsertDNSQueries = `
INSERT INTO dns_queries AS q (app_id, name, first_seen, last_seen, queries)
SELECT u.app_id, u.name, u.first_seen, u.last_seen, u.queries
FROM unnest($1::int8[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::int8[])
     WITH ORDINALITY AS u(app_id, name, first_seen, last_seen, queries, ord)
ORDER BY u.ord
ON CONFLICT (app_id, name) DO UPDATE
SET first_seen = least(q.first_seen, excluded.first_seen),
    last_seen = greatest(q.last_seen, excluded.last_seen),
    queries = q.queries + excluded.queries`

const upsertCursors = `
INSERT INTO collector_cursors AS c (source, time_ns, time, updated_at)
SELECT u.source, u.time_ns, u.time, now()
FROM unnest($1::text[], $2::bigint[], $3::timestamptz[]) WITH ORDINALITY AS u(source, time_ns, time, ord)
ORDER BY u.ord
ON CONFLICT (source) DO UPDATE
SET time_ns = greatest(c.time_ns, excluded.time_ns),
    time = greatest(c.time, excluded.time),
    updated_at = excluded.updated_at`

// rollupWriter holds a rollup as column arrays, one set per statement, with
// duplicate keys merged and rows sorted by key. Rows refer to their app by
// its index in apps until upsertApps has learnt the ids.
type rollupWriter struct {
	apps    appColumns
	appIDs  []int64 // by index in apps, once upserted
	dests   destColumns
	hourly  hourlyColumns
	dns     dnsColumns
	answers answerColumns
	cursors cursorColumns
	// labelSets and resolvers are the pods' facts (pods.go).
	labelSets labelSetColumns
	resolvers resolverColumns
	lost      lostColumns // Hubble's lost_events records (lost.go)
	days      []time.Time
	// appHours and appPods summarise hourly and dests per app.
	appHours appHourColumns
	appPods  appPodColumns // UTC days the hourly rows fall in, sorted
}

type appColumns struct {
	keys                     []egressd.App
	cluster, namespace, name []string
	firstSeen, lastSeen      []time.Time
}

// ids maps each app's index to its id.
func ids(appIdx []int32, appIDs []int64) []int64 {
	out := make([]int64, len(appIdx))
	for i, a := range appIdx {
		out[i] = appIDs[a]
	}
	return out
}

type destColumns struct {
	app                 []int32
	name, protocol, pod []string
	port, verdicts      []int32
	firstSeen, lastSeen []time.Time
	podSeen             []time.Time
	flows, droppedFlows []int64
	nameSource          []int16
	// The first and last of the key's hourly rows with allowed flows;
	// nil when it has none.
	firstAllowedHour, lastAllowedHour []*time.Time
}

func (c *destColumns) args(appIDs []int64) []any {
	return []any{ids(c.app, appIDs), c.name, c.port, c.protocol,
		c.firstSeen, c.lastSeen, c.flows, c.droppedFlows, c.verdicts, c.pod, c.podSeen, c.nameSource,
		c.firstAllowedHour, c.lastAllowedHour}
}

type hourlyColumns struct {
	app                 []int32
	name, protocol      []string
	port                []int32
	hour                []time.Time
	flows, droppedFlows []int64
}

func (c *hourlyColumns) args(appIDs []int64) []any {
	return []any{ids(c.app, appIDs), c.name, c.port, c.protocol, c.hour, c.flows, c.droppedFlows}
}

type dnsColumns struct {
	app                 []int32
	name                []string
	firstSeen, lastSeen []time.Time
	queries             []int64
}

func (c *dnsColumns) args(appIDs []int64) []any {
	return []any{ids(c.app, appIDs), c.name, c.firstSeen, c.lastSeen, c.queries}
}

type appHourColumns struct {
	app   []int32
	hour  []time.Time
	flows []int64
}

type appPodColumns struct {
	app  []int32
	pod  []string
	seen []time.Time
}

type answerColumns struct {
	namespace, pod, addr, name []string
	expires                    []time.Time
}

type cursorColumns struct {
	source []string
	timeNS []int64
	time   []time.Time
}

// upsertApps upserts the rollup's apps and learns their ids.
func (w *rollupWriter) upsertApps(ctx context.Context, tx pgx.Tx) error {
	if len(w.apps.keys) == 0 {
		return nil
	}
	a := &w.apps
	rows, err := tx.Query(ctx, upsertApps, a.cluster, a.namespace, a.name, a.firstSeen, a.lastSeen)
	if err != nil {
		return wrap(err, "upsert %d apps", len(a.keys))
	}
	index := make(map[egressd.App]int, len(a.keys))
	for i, k := range a.keys {
		index[k] = i
	}
	w.appIDs = make([]int64, len(a.keys))
	found := 0
	var (
		id  int64
		app egressd.App
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &app.Cluster, &app.Namespace, &app.Name}, func() error {
		if i, ok := index[app]; ok {
			w.appIDs[i] = id
			found++
		}
		return nil
	})
	if err != nil {
		return wrap(err, "upsert %d apps", len(a.keys))
	}
	if found != len(a.keys) {
		return fmt.Errorf("upsert %d apps: %d ids returned", len(a.keys), found)
	}
	return nil
}

// destRow is a destination rollup with the time its example pod was seen.
type destRow struct {
	egressd.DestinationRollup
	podSeen time.Time
}

func newRollupWriter(r *egressd.Rollup) *rollupWriter {
	w := &rollupWriter{}

	// Merge rows that share a key, then sort by key: the sort fixes the
	// order in which every writer locks rows. Pointers are sorted, not the
	// rows: a row is some 200 bytes, and moving rows was a third of the
	// Go side of a 10k-key flush.
	rows := make([]destRow, len(r.Destinations))
	dests := make([]*destRow, len(r.Destinations))
	for i, d := range r.Destinations {
		rows[i].DestinationRollup = d
		if d.ExamplePod != "" {
			rows[i].podSeen = d.LastSeen
		}
		dests[i] = &rows[i]
	}
	dests = mergeSorted(dests, func(a, b *destRow) int {
		return cmpDest(a.App, a.Destination, b.App, b.Destination)
	}, func(a, b *destRow) *destRow {
		*a = mergeDest(*a, *b)
		return a
	})

	hours := make([]egressd.HourlyRollup, len(r.Hourly))
	hourly := make([]*egressd.HourlyRollup, len(r.Hourly))
	for i, h := range r.Hourly {
		h.Hour = h.Hour.UTC().Truncate(time.Hour)
		hours[i] = h
		hourly[i] = &hours[i]
	}
	hourly = mergeSorted(hourly, func(a, b *egressd.HourlyRollup) int {
		return cmp.Or(cmpDest(a.App, a.Destination, b.App, b.Destination), a.Hour.Compare(b.Hour))
	}, func(a, b *egressd.HourlyRollup) *egressd.HourlyRollup {
		a.Flows += b.Flows
		a.DroppedFlows += b.DroppedFlows
		return a
	})

	dns := mergeSorted(slices.Clone(r.DNSQueries), func(a, b egressd.DNSQueryRollup) int {
		return cmp.Or(cmpApp(a.App, b.App), strings.Compare(a.Name, b.Name))
	}, func(a, b egressd.DNSQueryRollup) egressd.DNSQueryRollup {
		a.FirstSeen = minTime(a.FirstSeen, b.FirstSeen)
		a.LastSeen = maxTime(a.LastSeen, b.LastSeen)
		a.Queries += b.Queries
		return a
	})

	cursors := mergeSorted(slices.Clone(r.Cursors), func(a, b egressd.Cursor) int {
		return strings.Compare(a.Source, b.Source)
	}, func(a, b egressd.Cursor) egressd.Cursor {
		a.Time = maxTime(a.Time, b.Time)
		return a
	})

	// Apps: first and last seen from destination and DNS rows. An app that
	// only has hourly rows (not something the collector sends) still needs
	// a row, which its rows refer to; its hours stand in for its times.
	type seen struct{ first, last time.Time }
	apps := make(map[egressd.App]seen)
	see := func(a egressd.App, first, last time.Time) {
		s, ok := apps[a]
		if !ok {
			apps[a] = seen{first, last}
			return
		}
		apps[a] = seen{minTime(s.first, first), maxTime(s.last, last)}
	}
	for _, d := range dests {
		see(d.App, d.FirstSeen, d.LastSeen)
	}
	for _, q := range dns {
		see(q.App, q.FirstSeen, q.LastSeen)
	}
	for _, l := range r.LabelSets {
		see(l.App, l.FirstSeen, l.LastSeen)
	}
	for _, v := range r.Resolvers {
		see(v.App, v.LastSeen, v.LastSeen)
	}
	hourlyOnly := make(map[egressd.App]seen)
	for _, h := range hourly {
		if _, ok := apps[h.App]; ok {
			continue
		}
		s, ok := hourlyOnly[h.App]
		if !ok {
			s = seen{h.Hour, h.Hour}
		}
		hourlyOnly[h.App] = seen{minTime(s.first, h.Hour), maxTime(s.last, h.Hour)}
	}
	for a, s := range hourlyOnly {
		apps[a] = s
	}
	appKeys := make([]egressd.App, 0, len(apps))
	for a := range apps {
		appKeys = append(appKeys, a)
	}
	slices.SortFunc(appKeys, cmpApp)
	appIndex := make(map[egressd.App]int32, len(appKeys))
	w.apps = appColumns{
		keys:      appKeys,
		cluster:   make([]string, len(appKeys)),
		namespace: make([]string, len(appKeys)),
		name:      make([]string, len(appKeys)),
		firstSeen: make([]time.Time, len(appKeys)),
		lastSeen:  make([]time.Time, len(appKeys)),
	}
	for i, a := range appKeys {
		appIndex[a] = int32(i)
		w.apps.cluster[i], w.apps.namespace[i], w.apps.name[i] = a.Cluster, a.Namespace, a.Name
		w.apps.firstSeen[i], w.apps.lastSeen[i] = apps[a].first, apps[a].last
	}
	w.podFactRows(r, appIndex)
	w.lostRows(r)

	n := len(dests)
	w.dests = destColumns{
		app: make([]int32, n), name: make([]string, n), protocol: make([]string, n), pod: make([]string, n),
		port: make([]int32, n), verdicts: make([]int32, n),
		firstSeen: make([]time.Time, n), lastSeen: make([]time.Time, n), podSeen: make([]time.Time, n),
		flows: make([]int64, n), droppedFlows: make([]int64, n), nameSource: make([]int16, n),
		firstAllowedHour: make([]*time.Time, n), lastAllowedHour: make([]*time.Time, n),
	}
	// Both lists are sorted by key, hourly rows then by hour: one walk
	// finds each destination's first and last hour with allowed flows.
	h := 0
	for i, d := range dests {
		for ; h < len(hourly) && cmpDest(hourly[h].App, hourly[h].Destination, d.App, d.Destination) < 0; h++ {
		}
		for ; h < len(hourly) && cmpDest(hourly[h].App, hourly[h].Destination, d.App, d.Destination) == 0; h++ {
			if hourly[h].Flows > hourly[h].DroppedFlows {
				if w.dests.firstAllowedHour[i] == nil {
					w.dests.firstAllowedHour[i] = &hourly[h].Hour
				}
				w.dests.lastAllowedHour[i] = &hourly[h].Hour
			}
		}
	}
	for i, d := range dests {
		c := &w.dests
		c.app[i] = appIndex[d.App]
		c.name[i], c.port[i], c.protocol[i] = d.Destination.Name, int32(d.Destination.Port), d.Destination.Protocol
		c.firstSeen[i], c.lastSeen[i] = d.FirstSeen, d.LastSeen
		c.flows[i], c.droppedFlows[i] = d.Flows, d.DroppedFlows
		c.verdicts[i] = int32(d.Verdicts)
		c.pod[i], c.podSeen[i] = d.ExamplePod, d.podSeen
		c.nameSource[i] = int16(d.NameSource)
	}

	// Example pods per app, each with its latest time: destinations are
	// sorted by app.
	for i := 0; i < len(w.dests.app); {
		app := w.dests.app[i]
		seen := map[string]time.Time{}
		for ; i < len(w.dests.app) && w.dests.app[i] == app; i++ {
			if p := w.dests.pod[i]; p != "" && w.dests.podSeen[i].After(seen[p]) {
				seen[p] = w.dests.podSeen[i]
			}
		}
		pods := make([]string, 0, len(seen))
		for p := range seen {
			pods = append(pods, p)
		}
		slices.Sort(pods)
		for _, p := range pods {
			c := &w.appPods
			c.app, c.pod, c.seen = append(c.app, app), append(c.pod, p), append(c.seen, seen[p])
		}
	}

	n = len(hourly)
	w.hourly = hourlyColumns{
		app: make([]int32, n), name: make([]string, n), protocol: make([]string, n),
		port: make([]int32, n), hour: make([]time.Time, n),
		flows: make([]int64, n), droppedFlows: make([]int64, n),
	}
	for i, h := range hourly {
		c := &w.hourly
		c.app[i] = appIndex[h.App]
		c.name[i], c.port[i], c.protocol[i] = h.Destination.Name, int32(h.Destination.Port), h.Destination.Protocol
		c.hour[i] = h.Hour
		c.flows[i], c.droppedFlows[i] = h.Flows, h.DroppedFlows
		day := dayOf(h.Hour)
		if k := len(w.days); k == 0 || !w.days[k-1].Equal(day) {
			w.days = append(w.days, day)
		}
	}
	// Per app and hour: hourly rows are sorted by app first, then by
	// destination and hour, so an app's hours repeat; they are summed here
	// and written sorted, in lock order.
	for i := 0; i < len(w.hourly.app); {
		app := w.hourly.app[i]
		sums := map[time.Time]int64{}
		for ; i < len(w.hourly.app) && w.hourly.app[i] == app; i++ {
			sums[w.hourly.hour[i]] += w.hourly.flows[i]
		}
		hours := make([]time.Time, 0, len(sums))
		for h := range sums {
			hours = append(hours, h)
		}
		slices.SortFunc(hours, time.Time.Compare)
		for _, h := range hours {
			c := &w.appHours
			c.app, c.hour, c.flows = append(c.app, app), append(c.hour, h), append(c.flows, sums[h])
		}
	}
	// Hourly rows are sorted by app first, so days repeat out of order.
	slices.SortFunc(w.days, time.Time.Compare)
	w.days = slices.CompactFunc(w.days, time.Time.Equal)

	n = len(dns)
	w.dns = dnsColumns{
		app: make([]int32, n), name: make([]string, n),
		firstSeen: make([]time.Time, n), lastSeen: make([]time.Time, n), queries: make([]int64, n),
	}
	for i, q := range dns {
		c := &w.dns
		c.app[i] = appIndex[q.App]
		c.name[i] = q.Name
		c.firstSeen[i], c.lastSeen[i] = q.FirstSeen, q.LastSeen
		c.queries[i] = q.Queries
	}
	// Answers: one per pod and address (the one expiring last), sorted,
	// with the values PostgreSQL holds (bounded, printable).
	answers := make(map[[3]string]egressd.DNSAnswer, len(r.DNSAnswers))
	for _, a := range r.DNSAnswers {
		if !a.Addr.IsValid() || a.Namespace == "" || a.Pod == "" || a.Name == "" {
			continue
		}
		a.Namespace, a.Pod, a.Name = bound(a.Namespace, maxNameLen), bound(a.Pod, maxNameLen), bound(a.Name, maxNameLen)
		k := [3]string{a.Namespace, a.Pod, a.Addr.String()}
		if old, ok := answers[k]; !ok || a.Expires.After(old.Expires) {
			answers[k] = a
		}
	}
	akeys := make([][3]string, 0, len(answers))
	for k := range answers {
		akeys = append(akeys, k)
	}
	slices.SortFunc(akeys, func(a, b [3]string) int {
		return cmp.Or(strings.Compare(a[0], b[0]), strings.Compare(a[1], b[1]), strings.Compare(a[2], b[2]))
	})
	for _, k := range akeys {
		c := &w.answers
		c.namespace, c.pod, c.addr = append(c.namespace, k[0]), append(c.pod, k[1]), append(c.addr, k[2])
		c.name, c.expires = append(c.name, answers[k].Name), append(c.expires, answers[k].Expires)
	}
	for _, cur := range cursors {
		w.cursors.source = append(w.cursors.source, cur.Source)
		w.cursors.timeNS = append(w.cursors.timeNS, cur.Time.UnixNano())
		w.cursors.time = append(w.cursors.time, cur.Time)
	}
	return w
}

// mergeDest merges two rollups of the same destination the way the upsert
// merges a rollup into a stored row.
func mergeDest(a, b destRow) destRow {
	a.FirstSeen = minTime(a.FirstSeen, b.FirstSeen)
	a.LastSeen = maxTime(a.LastSeen, b.LastSeen)
	a.Flows += b.Flows
	a.DroppedFlows += b.DroppedFlows
	a.Verdicts |= b.Verdicts
	if b.ExamplePod != "" && (a.ExamplePod == "" || b.podSeen.After(a.podSeen) ||
		(b.podSeen.Equal(a.podSeen) && b.ExamplePod < a.ExamplePod)) {
		a.ExamplePod, a.podSeen = b.ExamplePod, b.podSeen
	}
	if a.NameSource == 0 || (b.NameSource != 0 && b.NameSource < a.NameSource) {
		a.NameSource = b.NameSource
	}
	return a
}

// mergeSorted sorts s by compare and merges runs of equal keys with merge.
func mergeSorted[T any](s []T, compare func(a, b T) int, merge func(a, b T) T) []T {
	slices.SortFunc(s, compare)
	out := s[:0]
	for _, v := range s {
		if n := len(out); n > 0 && compare(out[n-1], v) == 0 {
			out[n-1] = merge(out[n-1], v)
			continue
		}
		out = append(out, v)
	}
	return out
}

func cmpApp(a, b egressd.App) int {
	if c := strings.Compare(a.Cluster, b.Cluster); c != 0 {
		return c
	}
	if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

func cmpDest(aa egressd.App, a egressd.Destination, ba egressd.App, b egressd.Destination) int {
	if c := cmpApp(aa, ba); c != 0 {
		return c
	}
	if c := strings.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Port, b.Port); c != 0 {
		return c
	}
	return strings.Compare(a.Protocol, b.Protocol)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
