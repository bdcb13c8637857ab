package postgres

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/egressd/egressd"
)

// CursorsWithPrefix returns the cursors whose source starts with prefix,
// sorted by source: a replay's spans of flow time (collector.ReplayFrom).
func (db *DB) CursorsWithPrefix(ctx context.Context, prefix string) ([]egressd.Cursor, error) {
	rows, err := db.pool.Query(ctx, `
SELECT source, time_ns FROM collector_cursors WHERE starts_with(source, $1) ORDER BY source`, prefix)
	if err != nil {
		return nil, wrap(err, "read cursors %q*", prefix)
	}
	var out []egressd.Cursor
	var c egressd.Cursor
	var ns int64
	_, err = pgx.ForEachRow(rows, []any{&c.Source, &ns}, func() error {
		c.Time = time.Unix(0, ns).UTC()
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, wrap(err, "read cursors %q*", prefix)
	}
	return out, nil
}

// ResumeCursor returns where a collector of source resumes: its cursor
// (an error matching egressd.ErrNotFound when there is none), repaired
// first when it lies after bound (the receiving clock plus the allowed
// skew). A cursor in the future can only come from a flow stamped in the
// future, stored by a version that did not refuse those: resuming from it
// would skip every real flow until then. It is set back to the newest
// destination or DNS question stored that is not after bound, or deleted
// when there is none (the collector then starts from now), and the repair
// is logged.
func (db *DB) ResumeCursor(ctx context.Context, source string, bound time.Time, log *slog.Logger) (time.Time, error) {
	cur, err := db.Cursor(ctx, source)
	if err != nil || !cur.After(bound) {
		return cur, err
	}
	var newest *time.Time
	err = db.pool.QueryRow(ctx, `
SELECT greatest((SELECT max(last_seen) FROM destinations WHERE last_seen <= $1),
                (SELECT max(last_seen) FROM dns_queries WHERE last_seen <= $1))`, bound).Scan(&newest)
	if err != nil {
		return time.Time{}, wrap(err, "repair cursor of source %q", source)
	}
	if newest == nil {
		if _, err := db.pool.Exec(ctx, `DELETE FROM collector_cursors WHERE source = $1`, source); err != nil {
			return time.Time{}, wrap(err, "repair cursor of source %q", source)
		}
		log.Warn("cursor_in_future_repaired", "source", source, "cursor", cur, "bound", bound, "resume_from", "now")
		return time.Time{}, egressd.Errorf(egressd.ENOTFOUND, "cursor of source %q: in the future, deleted", source)
	}
	to := newest.UTC()
	// Set, not merged with greatest(): the stored value is the poison.
	if _, err := db.pool.Exec(ctx, `
UPDATE collector_cursors SET time_ns = $2, time = $3, updated_at = now() WHERE source = $1`,
		source, to.UnixNano(), to); err != nil {
		return time.Time{}, wrap(err, "repair cursor of source %q", source)
	}
	log.Warn("cursor_in_future_repaired", "source", source, "cursor", cur, "bound", bound, "resume_from", to)
	return to, nil
}

// RetentionCutoff returns the time before which retention deletes:
// period before the newest flow stored (the newest last_seen of an app),
// or before now when that is later. Retention follows the data: a replayed
// capture older than period survives until newer flows are stored, and a
// collector stopped for a while finds the period before it stopped still
// there. Times after now (stored by a version that accepted future-dated
// flows) are not the newest flow.
func (db *DB) RetentionCutoff(ctx context.Context, now time.Time, period time.Duration) (time.Time, error) {
	var newest *time.Time
	if err := db.pool.QueryRow(ctx, `SELECT max(last_seen) FROM apps WHERE last_seen <= $1`, now).Scan(&newest); err != nil {
		return time.Time{}, wrap(err, "newest stored flow")
	}
	if newest == nil {
		return now.UTC().Add(-period), nil
	}
	return newest.UTC().Add(-period), nil
}
