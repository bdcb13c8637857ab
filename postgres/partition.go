package postgres

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Advisory lock keys ("egressd" in ASCII, then a number). Transaction-scoped,
// so a crashed writer never leaves one behind.
const (
	// lockHourlyRetention is held shared by every writer from its partition
	// check to its commit, and exclusively by retention: a partition a
	// writer found cannot be dropped before the writer's rows are in it.
	lockHourlyRetention int64 = 0x6567726573736401
	// lockHourlyCreate serializes partition creation: two writers creating
	// the same day at once would otherwise fail on a duplicate catalog row,
	// which CREATE TABLE IF NOT EXISTS does not prevent.
	lockHourlyCreate int64 = 0x6567726573736402
)

const (
	hourlyTable     = "destination_hourly"
	partitionPrefix = hourlyTable + "_p"
	partitionLayout = "20060102"
)

// dayOf returns the start of t's UTC day.
func dayOf(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

func partitionName(day time.Time) string {
	return partitionPrefix + day.Format(partitionLayout)
}

// ensureHourlyPartitions makes sure destination_hourly has a partition for
// each UTC day in days, and that none of them is dropped before tx ends.
// It must run before tx takes any row lock (see WriteRollup).
func ensureHourlyPartitions(ctx context.Context, tx pgx.Tx, days []time.Time) error {
	if len(days) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock_shared($1)`, lockHourlyRetention); err != nil {
		return wrap(err, "lock hourly partitions")
	}
	names := make([]string, len(days))
	for i, d := range days {
		names[i] = partitionName(d)
	}
	// Read the catalog rather than ask to_regclass: its cache may predate a
	// drop by retention that committed while this transaction waited for
	// the lock, whereas each statement reads the catalog afresh.
	rows, err := tx.Query(ctx, `
SELECT n FROM unnest($1::text[]) AS n
WHERE NOT EXISTS (
    SELECT FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = $2::regclass AND c.relname = n)`, names, hourlyTable)
	if err != nil {
		return wrap(err, "check hourly partitions")
	}
	missing, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return wrap(err, "check hourly partitions")
	}
	if len(missing) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockHourlyCreate); err != nil {
		return wrap(err, "lock hourly partitions")
	}
	for _, name := range missing {
		day, err := time.Parse(partitionLayout, strings.TrimPrefix(name, partitionPrefix))
		if err != nil {
			return fmt.Errorf("hourly partition name %q: %v", name, err) // cannot happen: we built it
		}
		// DDL takes no parameters; both values are formatted here from a
		// time.Time, never from input text.
		// fillfactor as for destinations (see 007_flush.sql): a flush
		// updates every bucket of its hour, and half of each page free
		// keeps all of those updates HOT. Partitions do not inherit it.
		sql := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s PARTITION OF %s FOR VALUES FROM ('%s') TO ('%s') WITH (fillfactor = 50)`,
			pgx.Identifier{name}.Sanitize(), hourlyTable,
			day.Format(time.RFC3339), day.AddDate(0, 0, 1).Format(time.RFC3339))
		if _, err := tx.Exec(ctx, sql); err != nil {
			return wrap(err, "create hourly partition %s", name)
		}
	}
	return nil
}

// partition is one day partition of destination_hourly.
type partition struct {
	schema, name string
	day          time.Time
}

// hourlyPartitions lists the day partitions of destination_hourly, oldest
// first. Partitions not named by egressd are left out, and so are never
// dropped by retention.
func hourlyPartitions(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) ([]partition, error) {
	rows, err := q.Query(ctx, `
SELECT n.nspname, c.relname
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.inhparent = $1::regclass`, hourlyTable)
	if err != nil {
		return nil, wrap(err, "list hourly partitions")
	}
	var parts []partition
	var p partition
	_, err = pgx.ForEachRow(rows, []any{&p.schema, &p.name}, func() error {
		suffix, ok := strings.CutPrefix(p.name, partitionPrefix)
		if !ok {
			return nil
		}
		day, err := time.Parse(partitionLayout, suffix)
		if err != nil {
			return nil
		}
		p.day = day
		parts = append(parts, p)
		return nil
	})
	if err != nil {
		return nil, wrap(err, "list hourly partitions")
	}
	slices.SortFunc(parts, func(a, b partition) int { return a.day.Compare(b.day) })
	return parts, nil
}

// HourlyPartitions returns the UTC days that have an hourly-bucket partition,
// oldest first.
func (db *DB) HourlyPartitions(ctx context.Context) ([]time.Time, error) {
	parts, err := hourlyPartitions(ctx, db.pool)
	if err != nil {
		return nil, err
	}
	var days []time.Time
	for _, p := range parts {
		days = append(days, p.day)
	}
	return days, nil
}

// DropBucketsBefore is retention: it drops the hourly-bucket partitions of
// the UTC days that end at or before t, and returns how many it dropped. A
// day that t falls inside is kept whole. Destinations, apps and DNS rows keep
// their lifetime totals.
//
// It waits for writers in flight to commit, and writers wait for it, so a
// rollup never loses its partition between checking and inserting; a rollup
// with hours older than t recreates the partition it needs.
func (db *DB) DropBucketsBefore(ctx context.Context, t time.Time) (dropped int, err error) {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return 0, wrap(err, "drop hourly buckets: begin")
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after Commit

	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockHourlyRetention); err != nil {
		return 0, wrap(err, "drop hourly buckets: lock")
	}
	parts, err := hourlyPartitions(ctx, tx)
	if err != nil {
		return 0, fmt.Errorf("drop hourly buckets: %w", err)
	}
	var names []string
	for _, p := range parts {
		if !p.day.AddDate(0, 0, 1).After(t) {
			names = append(names, pgx.Identifier{p.schema, p.name}.Sanitize())
		}
	}
	if len(names) == 0 {
		return 0, nil
	}
	if _, err := tx.Exec(ctx, `DROP TABLE `+strings.Join(names, ", ")); err != nil {
		return 0, wrap(err, "drop hourly buckets before %s", t.UTC().Format(time.RFC3339))
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, wrap(err, "drop hourly buckets: commit")
	}
	return len(names), nil
}
