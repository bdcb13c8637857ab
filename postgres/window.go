package postgres

import (
	"context"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/egressd/egressd"
)

// WindowDestinations returns the keys WindowEntries returns for the same
// window, the (app, destination) pairs with allowed traffic in the hourly
// buckets from the hour containing from up to, not including, to, sorted
// the same way; FirstSeen, LastSeen and Flows are left zero. It is what a
// baseline build needs (baseline.Build reads only the keys).
//
// It reads one row per destination instead of aggregating every bucket of
// the window: each destination keeps the first and last hour whose bucket
// had allowed flows (first_allowed_hour, last_allowed_hour, written with the
// buckets in the flush's transaction). With lo the window's first hour, a
// destination is in the window when the last such hour is in [lo, to) or
// the first one is, and out when the last is before lo or the first at or
// after to: both answers are exact, because the hours named are buckets
// that hold allowed flows. The one case those two hours cannot settle, the
// first before lo and the last at or after to (an export pinned with --at
// before the newest data), is answered from the buckets as WindowEntries
// answers it. So are the hours of the window in the oldest hourly
// partition's day: retention may have dropped the buckets before that day
// and kept their destinations' rows, or deleted rows and kept that day's
// buckets, so there the columns may name buckets that are gone or miss some
// that are not. (Partitions are dropped oldest first; a rollup that brings
// hours older than retention's cutoff, from a replayed old capture, creates
// an older partition again until the next retention round, and with it
// a day of this kind that is read from the columns.)
//
// Every bucket WriteRollup writes comes with its destination's row in the
// same rollup (the collector's rollups always do); a bucket written without
// one would be seen by WindowEntries only.
func (db *DB) WindowDestinations(ctx context.Context, from, to time.Time) ([]egressd.WindowEntry, error) {
	lo := from.UTC().Truncate(time.Hour)
	parts, err := hourlyPartitions(ctx, db.pool)
	if err != nil {
		return nil, err
	}
	if len(parts) == 0 {
		return nil, nil // no buckets, so nothing in any window
	}
	// The oldest day's buckets are read as they are: retention may have
	// dropped the buckets before it while keeping their destinations, and
	// deleted destinations while keeping that day's buckets.
	settled := parts[0].day.AddDate(0, 0, 1)
	var early []egressd.WindowEntry
	if lo.Before(settled) {
		if early, err = db.windowKeysFromBuckets(ctx, lo, minTime(to, settled)); err != nil {
			return nil, err
		}
		lo = settled
	}
	if !lo.Before(to) {
		return early, nil
	}
	rows, err := db.pool.Query(ctx, `
SELECT a.cluster, a.namespace, a.name, d.name, d.port, d.protocol,
       d.first_allowed_hour < $1 AND d.last_allowed_hour >= $2
FROM destinations d
JOIN apps a ON a.id = d.app_id
WHERE d.last_allowed_hour >= $1 AND d.first_allowed_hour < $2`, lo, to)
	if err != nil {
		return nil, wrap(err, "read window destinations %s to %s", lo.Format(time.RFC3339), to.UTC().Format(time.RFC3339))
	}
	entries := early
	var (
		e         egressd.WindowEntry
		port      int32
		straddles bool
		unsettled bool
	)
	_, err = pgx.ForEachRow(rows, []any{
		&e.App.Cluster, &e.App.Namespace, &e.App.Name,
		&e.Destination.Name, &port, &e.Destination.Protocol, &straddles,
	}, func() error {
		if straddles {
			unsettled = true
		}
		e.Destination.Port = uint16(port)
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return nil, wrap(err, "read window destinations")
	}
	if unsettled {
		// Rare outside a pinned export, and then most long-lived
		// destinations straddle the window: one aggregation of its
		// buckets answers for all of them.
		return db.windowKeysFromBuckets(ctx, from, to)
	}
	slices.SortFunc(entries, func(a, b egressd.WindowEntry) int {
		return cmpDest(a.App, a.Destination, b.App, b.Destination)
	})
	return slices.CompactFunc(entries, func(a, b egressd.WindowEntry) bool {
		return a.App == b.App && a.Destination == b.Destination
	}), nil
}

// windowKeysFromBuckets is WindowEntries with only the keys kept.
func (db *DB) windowKeysFromBuckets(ctx context.Context, from, to time.Time) ([]egressd.WindowEntry, error) {
	entries, err := db.WindowEntries(ctx, from, to)
	for i := range entries {
		entries[i] = egressd.WindowEntry{App: entries[i].App, Destination: entries[i].Destination}
	}
	return entries, err
}
