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

type lostColumns struct {
	node, source []string
	time         []time.Time
	events       []int64
}

// upsertLost stores each lost_events record once (migration 009): the same
// record written again, by a retry or a replay, changes nothing but keeps
// the larger count.
const upsertLost = `
INSERT INTO hubble_lost_events AS l (node, time, source, events)
SELECT u.node, u.time, u.source, u.events
FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::int8[]) WITH ORDINALITY AS u(node, time, source, events, ord)
ORDER BY u.ord
ON CONFLICT (node, time, source) DO UPDATE
SET events = greatest(l.events, excluded.events)`

// lostRows adds the rollup's lost_events records to w, one per key, sorted.
func (w *rollupWriter) lostRows(r *egressd.Rollup) {
	lost := mergeSorted(slices.Clone(r.Lost), func(a, b egressd.LostEvents) int {
		return cmp.Or(strings.Compare(a.Node, b.Node), a.Time.Compare(b.Time), strings.Compare(a.Source, b.Source))
	}, func(a, b egressd.LostEvents) egressd.LostEvents {
		a.Events = max(a.Events, b.Events)
		return a
	})
	for _, l := range lost {
		if l.Events <= 0 {
			continue
		}
		c := &w.lost
		c.node = append(c.node, bound(l.Node, maxNameLen))
		c.time = append(c.time, l.Time)
		c.source = append(c.source, bound(l.Source, maxNameLen))
		c.events = append(c.events, l.Events)
	}
}

// WindowLostEvents returns, per node, the events Hubble reported lost in
// [from, to) and the first and last record's times, sorted by node.
func (db *DB) WindowLostEvents(ctx context.Context, from, to time.Time) ([]egressd.NodeLoss, error) {
	rows, err := db.pool.Query(ctx, `
SELECT node, sum(events)::int8, min(time), max(time)
FROM hubble_lost_events WHERE time >= $1 AND time < $2
GROUP BY node`, from, to)
	if err != nil {
		return nil, wrap(err, "read lost events")
	}
	var (
		out []egressd.NodeLoss
		l   egressd.NodeLoss
	)
	_, err = pgx.ForEachRow(rows, []any{&l.Node, &l.Events, &l.First, &l.Last}, func() error {
		l.First, l.Last = l.First.UTC(), l.Last.UTC()
		out = append(out, l)
		return nil
	})
	if err != nil {
		return nil, wrap(err, "read lost events")
	}
	slices.SortFunc(out, func(a, b egressd.NodeLoss) int { return strings.Compare(a.Node, b.Node) })
	return out, nil
}
