package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/egressd/egressd"
)

// Reasons ClusterKnows gives for a destination that is not novel for the
// cluster.
const (
	// KnownLearning: the app is in its learning period at that time,
	// counted from its first sight by any collector (or it has no row yet:
	// no collector stored it, so it is new).
	KnownLearning = "learning"
	// KnownSeen: another collector stored a flow of the app to the
	// destination before that time, within the window.
	KnownSeen = "seen"
)

// ClusterKnows reports why app reaching dst at at is not novel for the
// cluster, or "" when it is: what collectors of other sources (one per
// node) stored into the same database decides, so that an app learns once
// for the whole cluster and a destination another node's collector knows
// is known here too.
//
// The app is learning when it has no row, or when at is before its first
// sight plus learning. The destination is known when its row was first
// seen before at (pgx sends at to the microsecond, as rollups store it, so
// the collector's own flush of that very flow is not "before") and it was
// seen within window before at: first or last seen there, or an hourly
// bucket there before at's hour (last seen may already be this
// collector's own later flows). A destination that returns after window
// is novel again, as the live window of one collector judges it.
func (db *DB) ClusterKnows(ctx context.Context, app egressd.App, dst egressd.Destination, at time.Time, learning, window time.Duration) (string, error) {
	var (
		firstSeen time.Time
		seen      bool
	)
	err := db.pool.QueryRow(ctx, `
SELECT a.first_seen, EXISTS (
    SELECT FROM destinations d
    WHERE d.app_id = a.id AND d.name = $4 AND d.port = $5 AND d.protocol = $6 AND d.first_seen < $7
      AND (d.first_seen >= $8 OR (d.last_seen >= $8 AND d.last_seen < $7) OR EXISTS (
          SELECT FROM destination_hourly h
          WHERE h.app_id = a.id AND h.name = $4 AND h.port = $5 AND h.protocol = $6
            AND h.hour >= date_trunc('hour', $8::timestamptz, 'UTC') AND h.hour < date_trunc('hour', $7::timestamptz, 'UTC'))))
FROM apps a
WHERE a.cluster = $1 AND a.namespace = $2 AND a.name = $3`,
		app.Cluster, app.Namespace, app.Name, dst.Name, int32(dst.Port), dst.Protocol, at, at.Add(-window)).Scan(&firstSeen, &seen)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if learning > 0 {
			return KnownLearning, nil
		}
		return "", nil
	case err != nil:
		return "", wrap(err, "judge %s -> %s for the cluster", app, dst)
	case at.Before(firstSeen.Add(learning)):
		return KnownLearning, nil
	case seen:
		return KnownSeen, nil
	}
	return "", nil
}
