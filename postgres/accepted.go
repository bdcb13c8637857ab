package postgres

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/egressd/egressd"
)

// Accept records that an operator accepted a destination for an app (again
// accepting it updates who and when) and, in the same transaction, resolves
// at a.At the app's firing novel-destination anomalies it covers: same name
// (exactly: a wildcard pattern is stored, but resolves nothing), and same
// port and protocol, where port 0 means every port and protocol ANY every
// protocol.
//
// The name is lower-cased without its trailing dot; it must be a DNS name,
// an IP address or a toFQDNs pattern. The app need not have been seen yet.
// An empty cluster accepts the destination for the app in every cluster.
func (db *DB) Accept(ctx context.Context, a egressd.Accepted) error {
	dest, err := acceptedKey(a.App, a.Destination)
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	if a.At.IsZero() {
		return egressd.Errorf(egressd.EINVALID, "accept %s for %s: Accepted.At is zero", dest, a.App)
	}
	tx, err := db.pool.BeginTx(ctx, readCommitted)
	if err != nil {
		return wrap(err, "accept %s for %s: begin", dest, a.App)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after Commit

	_, err = tx.Exec(ctx, `
INSERT INTO accepted_destinations (cluster, namespace, app, name, port, protocol, accepted_by, accepted_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (cluster, namespace, app, name, port, protocol) DO UPDATE
SET accepted_by = excluded.accepted_by, accepted_at = excluded.accepted_at`,
		a.App.Cluster, a.App.Namespace, a.App.Name, dest.Name, int32(dest.Port), dest.Protocol,
		bound(a.By, maxNameLen), a.At)
	if err != nil {
		return wrap(err, "accept %s for %s", dest, a.App)
	}
	_, err = resolveTx(ctx, tx, a.At, `a.kind = $1
    AND a.app_id IN (SELECT id FROM apps WHERE ($2 = '' OR cluster = $2) AND namespace = $3 AND name = $4)
    AND a.destination = $5 AND ($6 = 0 OR a.port = $6) AND ($7 = 'ANY' OR a.protocol = $7)`,
		string(egressd.AnomalyNovelDestination), a.App.Cluster, a.App.Namespace, a.App.Name,
		dest.Name, int32(dest.Port), dest.Protocol)
	if err != nil {
		return fmt.Errorf("accept %s for %s: %w", dest, a.App, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return wrap(err, "accept %s for %s: commit", dest, a.App)
	}
	return nil
}

// Unaccept takes back the acceptance of dest for app (the same name, port
// and protocol that Accept stored) and reports whether there was one.
// Anomalies it resolved stay resolved.
func (db *DB) Unaccept(ctx context.Context, app egressd.App, dest egressd.Destination) (bool, error) {
	dest, err := acceptedKey(app, dest)
	if err != nil {
		return false, fmt.Errorf("unaccept: %w", err)
	}
	tag, err := db.pool.Exec(ctx, `
DELETE FROM accepted_destinations
WHERE cluster = $1 AND namespace = $2 AND app = $3 AND name = $4 AND port = $5 AND protocol = $6`,
		app.Cluster, app.Namespace, app.Name, dest.Name, int32(dest.Port), dest.Protocol)
	if err != nil {
		return false, wrap(err, "unaccept %s for %s", dest, app)
	}
	return tag.RowsAffected() > 0, nil
}

// AcceptedAll returns every accepted destination, sorted by app and
// destination.
func (db *DB) AcceptedAll(ctx context.Context) ([]egressd.Accepted, error) {
	rows, err := db.pool.Query(ctx, `
SELECT cluster, namespace, app, name, port, protocol, accepted_by, accepted_at
FROM accepted_destinations`)
	if err != nil {
		return nil, wrap(err, "read accepted destinations")
	}
	var (
		out  []egressd.Accepted
		a    egressd.Accepted
		port int32
	)
	_, err = pgx.ForEachRow(rows, []any{
		&a.App.Cluster, &a.App.Namespace, &a.App.Name,
		&a.Destination.Name, &port, &a.Destination.Protocol, &a.By, &a.At,
	}, func() error {
		a.Destination.Port = uint16(port)
		a.At = a.At.UTC()
		out = append(out, a)
		return nil
	})
	if err != nil {
		return nil, wrap(err, "read accepted destinations")
	}
	slices.SortFunc(out, func(a, b egressd.Accepted) int {
		return cmpDest(a.App, a.Destination, b.App, b.Destination)
	})
	return out, nil
}

// acceptedKey validates an accepted destination and returns it as stored.
func acceptedKey(app egressd.App, d egressd.Destination) (egressd.Destination, error) {
	if err := app.Validate(); err != nil {
		return d, err
	}
	name := strings.ToLower(strings.TrimSuffix(d.Name, "."))
	if !egressd.ValidPattern(name) {
		return d, egressd.Errorf(egressd.EINVALID, "invalid destination %q for %s: want a DNS name, an IP address or a pattern such as *.example.com", bound(d.Name, 64), app)
	}
	proto, ok := egressd.CanonicalProtocol(d.Protocol)
	if !ok {
		return d, egressd.Errorf(egressd.EINVALID, "invalid protocol %q for %s: want TCP, UDP, SCTP, ICMPv4, ICMPv6 or ANY", bound(d.Protocol, 16), app)
	}
	return egressd.Destination{Name: name, Port: d.Port, Protocol: proto}, nil
}
