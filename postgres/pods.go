package postgres

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/egressd/egressd"
)

// labelSetColumns and resolverColumns are the rollup's pod facts as column
// arrays, sorted by key (see rollupWriter).
type labelSetColumns struct {
	app                 []int32
	labels, nameFrom    []string
	firstSeen, lastSeen []time.Time
}

type resolverColumns struct {
	app        []int32
	kind, addr []string
	lastSeen   []time.Time
}

// upsertLabelSets keeps each label set's first and last sighting and the
// name source seen last (migration 009).
const upsertLabelSets = `
INSERT INTO app_label_sets AS l (app_id, labels, name_from, first_seen, last_seen)
SELECT u.app_id, u.labels, u.name_from, u.first_seen, u.last_seen
FROM unnest($1::int8[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[])
     WITH ORDINALITY AS u(app_id, labels, name_from, first_seen, last_seen, ord)
ORDER BY u.ord
ON CONFLICT (app_id, labels) DO UPDATE
SET name_from = CASE WHEN excluded.last_seen > l.last_seen THEN excluded.name_from ELSE l.name_from END,
    first_seen = least(l.first_seen, excluded.first_seen),
    last_seen = greatest(l.last_seen, excluded.last_seen)`

const upsertResolvers = `
INSERT INTO app_resolvers AS r (app_id, kind, addr, last_seen)
SELECT u.app_id, u.kind, u.addr, u.last_seen
FROM unnest($1::int8[], $2::text[], $3::text[], $4::timestamptz[])
     WITH ORDINALITY AS u(app_id, kind, addr, last_seen, ord)
ORDER BY u.ord
ON CONFLICT (app_id, kind, addr) DO UPDATE
SET last_seen = greatest(r.last_seen, excluded.last_seen)`

// podFactRows adds the rollup's label sets and resolvers to w, merged per
// key and sorted; appIndex gives each app's index in w.apps.
func (w *rollupWriter) podFactRows(r *egressd.Rollup, appIndex map[egressd.App]int32) {
	type setRow struct {
		egressd.AppLabelSet
		key string
	}
	sets := make([]setRow, 0, len(r.LabelSets))
	for _, l := range r.LabelSets {
		if len(l.Labels) > egressd.MaxLabelsPerSet {
			l.Labels = l.Labels[:egressd.MaxLabelsPerSet]
		}
		sets = append(sets, setRow{AppLabelSet: l, key: egressd.LabelLines(l.Labels)})
	}
	sets = mergeSorted(sets, func(a, b setRow) int {
		return cmp.Or(cmpApp(a.App, b.App), strings.Compare(a.key, b.key))
	}, func(a, b setRow) setRow {
		if b.LastSeen.After(a.LastSeen) {
			a.NameFrom = b.NameFrom
		}
		a.FirstSeen = minTime(a.FirstSeen, b.FirstSeen)
		a.LastSeen = maxTime(a.LastSeen, b.LastSeen)
		return a
	})
	for _, s := range sets {
		c := &w.labelSets
		c.app = append(c.app, appIndex[s.App])
		c.labels = append(c.labels, s.key)
		c.nameFrom = append(c.nameFrom, bound(s.NameFrom, maxNameLen))
		c.firstSeen, c.lastSeen = append(c.firstSeen, s.FirstSeen), append(c.lastSeen, s.LastSeen)
	}
	res := mergeSorted(slices.Clone(r.Resolvers), func(a, b egressd.AppResolver) int {
		return cmp.Or(cmpApp(a.App, b.App), strings.Compare(string(a.Kind), string(b.Kind)), strings.Compare(a.Addr, b.Addr))
	}, func(a, b egressd.AppResolver) egressd.AppResolver {
		a.LastSeen = maxTime(a.LastSeen, b.LastSeen)
		return a
	})
	for _, v := range res {
		switch v.Kind {
		case egressd.ResolverCluster, egressd.ResolverNodeLocal, egressd.ResolverExternal:
		default:
			continue
		}
		c := &w.resolvers
		c.app = append(c.app, appIndex[v.App])
		c.kind, c.addr = append(c.kind, string(v.Kind)), append(c.addr, bound(v.Addr, maxNameLen))
		c.lastSeen = append(c.lastSeen, v.LastSeen)
	}
}

// queuePodFacts queues the upserts of the rollup's pod facts.
func (w *rollupWriter) queuePodFacts(queue func(name, sql string, args ...any)) {
	if c := &w.labelSets; len(c.app) > 0 {
		queue("upsert label sets", upsertLabelSets, ids(c.app, w.appIDs), c.labels, c.nameFrom, c.firstSeen, c.lastSeen)
	}
	if c := &w.resolvers; len(c.app) > 0 {
		queue("upsert resolvers", upsertResolvers, ids(c.app, w.appIDs), c.kind, c.addr, c.lastSeen)
	}
}

// PodFacts are what the store knows of the pods of apps seen in a window:
// their label sets and the DNS servers they asked.
type PodFacts struct {
	LabelSets []egressd.AppLabelSet
	Resolvers []egressd.AppResolver
}

// WindowPodFacts returns the label sets and resolvers of every app seen in
// [from, to), at most egressd.MaxLabelSetsPerApp sets and
// egressd.MaxResolversPerApp resolvers per app (the most recently seen),
// sorted by app, then labels or kind and address.
func (db *DB) WindowPodFacts(ctx context.Context, from, to time.Time) (PodFacts, error) {
	var f PodFacts
	rows, err := db.pool.Query(ctx, `
SELECT a.cluster, a.namespace, a.name, l.labels, l.name_from, l.first_seen, l.last_seen
FROM (SELECT *, row_number() OVER (PARTITION BY app_id ORDER BY last_seen DESC, labels) AS n
      FROM app_label_sets WHERE last_seen >= $1 AND first_seen < $2) l
JOIN apps a ON a.id = l.app_id
WHERE l.n <= $3`, from, to, egressd.MaxLabelSetsPerApp)
	if err != nil {
		return f, wrap(err, "read label sets")
	}
	var (
		l      egressd.AppLabelSet
		labels string
	)
	_, err = pgx.ForEachRow(rows, []any{&l.App.Cluster, &l.App.Namespace, &l.App.Name, &labels, &l.NameFrom, &l.FirstSeen, &l.LastSeen}, func() error {
		l.Labels = egressd.ParseLabelLines(labels)
		l.FirstSeen, l.LastSeen = l.FirstSeen.UTC(), l.LastSeen.UTC()
		f.LabelSets = append(f.LabelSets, l)
		return nil
	})
	if err != nil {
		return f, wrap(err, "read label sets")
	}
	slices.SortFunc(f.LabelSets, func(a, b egressd.AppLabelSet) int {
		return cmp.Or(cmpApp(a.App, b.App), strings.Compare(egressd.LabelLines(a.Labels), egressd.LabelLines(b.Labels)))
	})
	rows, err = db.pool.Query(ctx, `
SELECT a.cluster, a.namespace, a.name, r.kind, r.addr, r.last_seen
FROM (SELECT *, row_number() OVER (PARTITION BY app_id ORDER BY last_seen DESC, kind, addr) AS n
      FROM app_resolvers WHERE last_seen >= $1 AND last_seen < $2) r
JOIN apps a ON a.id = r.app_id
WHERE r.n <= $3`, from, to, egressd.MaxResolversPerApp)
	if err != nil {
		return f, wrap(err, "read resolvers")
	}
	var r egressd.AppResolver
	_, err = pgx.ForEachRow(rows, []any{&r.App.Cluster, &r.App.Namespace, &r.App.Name, &r.Kind, &r.Addr, &r.LastSeen}, func() error {
		r.LastSeen = r.LastSeen.UTC()
		f.Resolvers = append(f.Resolvers, r)
		return nil
	})
	if err != nil {
		return f, wrap(err, "read resolvers")
	}
	slices.SortFunc(f.Resolvers, func(a, b egressd.AppResolver) int {
		return cmp.Or(cmpApp(a.App, b.App), strings.Compare(string(a.Kind), string(b.Kind)), strings.Compare(a.Addr, b.Addr))
	})
	return f, nil
}
