package postgres

import (
	"context"
	"fmt"
	"maps"
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
	var entries []egressd.WindowEntry
	err := db.EachWindowDestination(ctx, from, to, func(e egressd.WindowEntry) error {
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(entries, func(a, b egressd.WindowEntry) int {
		return cmpDest(a.App, a.Destination, b.App, b.Destination)
	})
	return slices.CompactFunc(entries, func(a, b egressd.WindowEntry) bool {
		return a.App == b.App && a.Destination == b.Destination
	}), nil
}

// EachWindowDestination calls fn with each key of WindowDestinations as
// rows arrive, in no particular order; a key may come twice. It holds no
// list of the window, so a build can consume it as it streams
// (baseline.Builder). An error from fn stops it and is returned.
func (db *DB) EachWindowDestination(ctx context.Context, from, to time.Time, fn func(egressd.WindowEntry) error) error {
	return db.eachWindowKey(ctx, from, to, false, func(e egressd.WindowEntry, _ int64, _ bool) error {
		return fn(e)
	})
}

// eachWindowKey is EachWindowDestination, and tells fn more of each key:
// its app's id (0 when the key was read from the buckets) and whether
// another app has the same namespace and name (shared). With byApp, the
// keys read from the columns come sorted by app id, after any key read from
// the buckets.
func (db *DB) eachWindowKey(ctx context.Context, from, to time.Time, byApp bool, fn func(e egressd.WindowEntry, appID int64, shared bool) error) error {
	// One snapshot for every read below: apps are read apart from their
	// destinations, and a flush may commit in between.
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return wrap(err, "read window destinations: begin")
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	lo := from.UTC().Truncate(time.Hour)
	parts, err := hourlyPartitions(ctx, tx)
	if err != nil {
		return err
	}
	if len(parts) == 0 {
		return nil // no buckets, so nothing in any window
	}
	// The oldest day's buckets are read as they are: retention may have
	// dropped the buckets before it while keeping their destinations, and
	// deleted destinations while keeping that day's buckets.
	settled := parts[0].day.AddDate(0, 0, 1)
	fromBuckets := func(e egressd.WindowEntry) error { return fn(e, 0, false) }
	colFrom := lo // where the columns answer
	if colFrom.Before(settled) {
		colFrom = settled
	}
	if colFrom.Before(to) {
		// A destination whose allowed hours straddle the window cannot be
		// settled from them: rare outside a pinned export, and then most
		// long-lived destinations do, so one aggregation of the window's
		// buckets answers for all of them. The check stops at the first
		// such row, and is not needed when the window ends after the
		// newest data (an export at the present, the usual case): no
		// allowed hour is later than its app's last_seen.
		var straddles bool
		if err := tx.QueryRow(ctx, `
SELECT CASE WHEN (SELECT max(last_seen) FROM apps) >= $2
    THEN EXISTS (SELECT FROM destinations WHERE first_allowed_hour < $1 AND last_allowed_hour >= $2)
    ELSE false END`,
			colFrom, to).Scan(&straddles); err != nil {
			return wrap(err, "read window destinations")
		}
		if straddles {
			return eachWindowKeyFromBuckets(ctx, tx, from, to, fromBuckets)
		}
	}
	if lo.Before(settled) {
		if err := eachWindowKeyFromBuckets(ctx, tx, lo, minTime(to, settled), fromBuckets); err != nil {
			return err
		}
	}
	if !colFrom.Before(to) {
		return nil
	}
	// Apps apart, by id: sending each app's names with every one of its
	// destinations was a third of the bytes, and a join.
	apps := map[int64]egressd.App{}
	rows, err := tx.Query(ctx, `SELECT id, cluster, namespace, name FROM apps`)
	if err != nil {
		return wrap(err, "read window destinations: apps")
	}
	var (
		id  int64
		app egressd.App
	)
	names := map[egressd.App]int{} // apps by namespace and name, cluster left out
	if _, err := pgx.ForEachRow(rows, []any{&id, &app.Cluster, &app.Namespace, &app.Name}, func() error {
		apps[id] = app
		names[egressd.App{Namespace: app.Namespace, Name: app.Name}]++
		return nil
	}); err != nil {
		return wrap(err, "read window destinations: apps")
	}
	shared := map[int64]bool{}
	for id, app := range apps {
		if names[egressd.App{Namespace: app.Namespace, Name: app.Name}] > 1 {
			shared[id] = true
		}
	}
	query := `
SELECT app_id, name, port, protocol FROM destinations
WHERE last_allowed_hour >= $1 AND first_allowed_hour < $2`
	if byApp {
		// The primary key's index gives the order without a sort.
		query += `
ORDER BY app_id`
	}
	rows, err = tx.Query(ctx, query, colFrom, to)
	if err != nil {
		return wrap(err, "read window destinations %s to %s", colFrom.Format(time.RFC3339), to.UTC().Format(time.RFC3339))
	}
	var (
		e    egressd.WindowEntry
		port int32
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &e.Destination.Name, &port, &e.Destination.Protocol}, func() error {
		var ok bool
		if e.App, ok = apps[id]; !ok {
			// The writer upserts a row's app in the row's transaction,
			// and the snapshot is one.
			return fmt.Errorf("destination %q of app id %d: no such app", e.Destination.Name, id)
		}
		e.Destination.Port = uint16(port)
		return fn(e, id, shared[id])
	})
	if err != nil {
		return wrap(err, "read window destinations")
	}
	return nil
}

// eachWindowKeyFromBuckets calls fn with the keys WindowEntries returns,
// read in tx.
func eachWindowKeyFromBuckets(ctx context.Context, tx pgx.Tx, from, to time.Time, fn func(egressd.WindowEntry) error) error {
	rows, err := tx.Query(ctx, windowQuery(""), from.UTC().Truncate(time.Hour), to)
	if err != nil {
		return wrap(err, "read window %s to %s", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
	}
	entries, err := scanWindowEntries(rows, "read window")
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := fn(egressd.WindowEntry{App: e.App, Destination: e.Destination}); err != nil {
			return err
		}
	}
	return nil
}

// EachWindowApp calls fn with the keys of WindowDestinations one app at a
// time, so that a consumer can finish an app's baseline before the next
// app's rows arrive: every key of one namespace and name (the same workload
// in several clusters) in one call, each key once. Apps come sorted by
// their first id, then the apps read from the hourly buckets (see
// WindowDestinations) or sharing their namespace and name with another app,
// sorted by namespace and name. fn must not keep the slice, which is
// reused for the next app. An error from fn stops it and is returned.
func (db *DB) EachWindowApp(ctx context.Context, from, to time.Time, fn func([]egressd.WindowEntry) error) error {
	// held are the keys whose app cannot be finished before the end:
	// read from the buckets (which come first, in no order), or of an app
	// whose namespace and name another app has.
	held := map[egressd.App][]egressd.WindowEntry{}
	var (
		cur   []egressd.WindowEntry
		curID int64
	)
	err := db.eachWindowKey(ctx, from, to, true, func(e egressd.WindowEntry, appID int64, shared bool) error {
		k := egressd.App{Namespace: e.App.Namespace, Name: e.App.Name}
		if appID == 0 || shared {
			held[k] = append(held[k], e)
			return nil
		}
		if len(held) > 0 {
			if keys, ok := held[k]; ok {
				held[k] = append(keys, e)
				return nil
			}
		}
		if appID != curID && len(cur) > 0 {
			if err := fn(cur); err != nil {
				return err
			}
			cur = cur[:0]
		}
		curID = appID
		cur = append(cur, e)
		return nil
	})
	if err != nil {
		return err
	}
	if len(cur) > 0 {
		if err := fn(cur); err != nil {
			return err
		}
	}
	for _, k := range slices.SortedFunc(maps.Keys(held), cmpApp) {
		keys := held[k]
		slices.SortFunc(keys, func(a, b egressd.WindowEntry) int {
			return cmpDest(a.App, a.Destination, b.App, b.Destination)
		})
		keys = slices.CompactFunc(keys, func(a, b egressd.WindowEntry) bool {
			return a.App == b.App && a.Destination == b.Destination
		})
		if err := fn(keys); err != nil {
			return err
		}
	}
	return nil
}
