package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/egressd/egressd"
)

// ResolveBy resolves the anomaly stored under fingerprint at r.At, if it
// still fires (its deliveries become resolved ones, as ResolveAnomaly
// does), and records r as how it ended, unless an operator's resolution
// is recorded already (the first one wins: two people triaging the same
// alert do not overwrite each other). It reports whether r was recorded,
// and returns an error matching egressd.ErrNotFound for an unknown
// fingerprint.
func (db *DB) ResolveBy(ctx context.Context, fingerprint string, r egressd.Resolution) (bool, error) {
	switch r.Kind {
	case egressd.ResolutionAccepted, egressd.ResolutionAcceptedPattern, egressd.ResolutionDismissed:
	default:
		return false, egressd.Errorf(egressd.EINVALID, "resolve anomaly %s: unknown resolution %q", fingerprint, bound(string(r.Kind), 32))
	}
	if r.At.IsZero() {
		return false, egressd.Errorf(egressd.EINVALID, "resolve anomaly %s: Resolution.At is zero", fingerprint)
	}
	tx, err := db.pool.BeginTx(ctx, readCommitted)
	if err != nil {
		return false, wrap(err, "resolve anomaly %s: begin", fingerprint)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after Commit

	if _, err := resolveTx(ctx, tx, r.At, "a.fingerprint = $1", fingerprint); err != nil {
		return false, fmt.Errorf("resolve anomaly %s: %w", fingerprint, err)
	}
	tag, err := tx.Exec(ctx, `
UPDATE anomalies SET resolution = $2, resolved_by = $3, resolved_note = $4
WHERE fingerprint = $1 AND resolution = ''`,
		fingerprint, string(r.Kind), bound(r.By, maxNameLen), bound(r.Note, maxNameLen+32))
	if err != nil {
		return false, wrap(err, "resolve anomaly %s: record who", fingerprint)
	}
	if tag.RowsAffected() == 0 {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT FROM anomalies WHERE fingerprint = $1)`, fingerprint).Scan(&exists); err != nil {
			return false, wrap(err, "resolve anomaly %s", fingerprint)
		}
		if !exists {
			return false, egressd.Errorf(egressd.ENOTFOUND, "resolve anomaly %s: not found", fingerprint)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return false, wrap(err, "resolve anomaly %s: commit", fingerprint)
	}
	return tag.RowsAffected() > 0, nil
}

// Resolution returns how an operator ended the anomaly stored under
// fingerprint (ResolveBy); the zero Resolution when nobody did. It returns
// an error matching egressd.ErrNotFound for an unknown fingerprint.
func (db *DB) Resolution(ctx context.Context, fingerprint string) (egressd.Resolution, error) {
	var (
		r    egressd.Resolution
		kind string
		at   *time.Time
	)
	err := db.pool.QueryRow(ctx, `
SELECT resolution, resolved_by, resolved_note, resolved_at FROM anomalies WHERE fingerprint = $1`, fingerprint).
		Scan(&kind, &r.By, &r.Note, &at)
	if err != nil {
		return r, wrap(err, "read resolution of anomaly %s", fingerprint)
	}
	if kind == "" {
		return egressd.Resolution{}, nil
	}
	r.Kind = egressd.ResolutionKind(kind)
	if at != nil {
		r.At = at.UTC()
	}
	return r, nil
}

// DestinationUsers returns the stored totals of every app's destinations
// named name (any port and protocol), most recently seen first, at most
// limit (see egressd.PageSize): who else reaches an anomaly's destination.
func (db *DB) DestinationUsers(ctx context.Context, name string, limit int) ([]egressd.DestinationRollup, error) {
	limit, err := egressd.PageSize("list apps reaching "+bound(name, 64), limit)
	if err != nil {
		return nil, err
	}
	rows, err := db.pool.Query(ctx, `
SELECT a.cluster, a.namespace, a.name, d.name, d.port, d.protocol, d.first_seen, d.last_seen, d.flows,
       d.dropped_flows, d.verdicts, d.example_pod, d.name_source
FROM destinations d
JOIN apps a ON a.id = d.app_id
WHERE reverse(d.name) = reverse($1) AND d.name = $1
ORDER BY d.last_seen DESC, a.cluster, a.namespace, a.name, d.port, d.protocol
LIMIT $2`, name, limit)
	if err != nil {
		return nil, wrap(err, "list apps reaching %s", bound(name, 64))
	}
	out, err := collectAppDestinations(rows)
	if err != nil {
		return nil, wrap(err, "list apps reaching %s", bound(name, 64))
	}
	return out, nil
}

// collectAppDestinations reads rows of an app's cluster, namespace and
// name followed by destinationScan's columns, and closes rows.
func collectAppDestinations(rows pgx.Rows) ([]egressd.DestinationRollup, error) {
	var (
		out []egressd.DestinationRollup
		s   destinationScan
	)
	_, err := pgx.ForEachRow(rows, append([]any{&s.d.App.Cluster, &s.d.App.Namespace, &s.d.App.Name}, s.dest()...), func() error {
		out = append(out, s.rollup())
		return nil
	})
	return out, err
}

// DestinationHours returns app's hourly buckets of flows to dest (its name,
// port and protocol) from the hour containing from up to, not including,
// to, newest first.
func (db *DB) DestinationHours(ctx context.Context, app egressd.App, dest egressd.Destination, from, to time.Time) ([]egressd.HourlyRollup, error) {
	rows, err := db.pool.Query(ctx, `
SELECT h.hour, h.flows, h.dropped_flows
FROM destination_hourly h
JOIN apps a ON a.id = h.app_id
WHERE a.cluster = $1 AND a.namespace = $2 AND a.name = $3
  AND h.name = $4 AND h.port = $5 AND h.protocol = $6 AND h.hour >= $7 AND h.hour < $8
ORDER BY h.hour DESC`,
		app.Cluster, app.Namespace, app.Name, dest.Name, int32(dest.Port), dest.Protocol, from.UTC().Truncate(time.Hour), to)
	if err != nil {
		return nil, wrap(err, "read hourly flows of %s to %s", app, dest)
	}
	var (
		out []egressd.HourlyRollup
		h   = egressd.HourlyRollup{App: app, Destination: dest}
	)
	_, err = pgx.ForEachRow(rows, []any{&h.Hour, &h.Flows, &h.DroppedFlows}, func() error {
		h.Hour = h.Hour.UTC()
		out = append(out, h)
		return nil
	})
	if err != nil {
		return nil, wrap(err, "read hourly flows of %s to %s", app, dest)
	}
	return out, nil
}
