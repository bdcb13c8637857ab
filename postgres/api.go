package postgres

import (
	"context"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/egressd/egressd"
)

// The read models of the HTTP API (package httpapi). They select an app by
// namespace and name in every cluster unless the app's Cluster is set: the
// API's paths name an app as NAMESPACE/APP, as baseline files and alerts do,
// and a cluster is an optional filter.

// AppSummary is egressd.AppSummary.
type AppSummary = egressd.AppSummary

// AppSummaries returns the page of apps f selects, sorted by cluster,
// namespace and name, each with its number of destinations last seen at or
// after f.Since (a zero Since counts them all) and its number of firing
// anomalies. A page costs the same wherever it starts: it walks the apps'
// unique index from the cursor and counts each app's rows through its own
// index, so a listing of a million apps never holds more than a page.
func (db *DB) AppSummaries(ctx context.Context, f egressd.AppFilter) ([]AppSummary, error) {
	limit, err := egressd.PageSize("list apps", f.Limit)
	if err != nil {
		return nil, err
	}
	args := []any{f.Since, limit}
	after := ""
	if f.After != nil {
		// The key columns are COLLATE "C": the row comparison and the
		// order are bytewise, as Go compares strings, and use the index.
		after = "WHERE (a.cluster, a.namespace, a.name) > ($3, $4, $5)"
		args = append(args, f.After.Cluster, f.After.Namespace, f.After.Name)
	}
	rows, err := db.pool.Query(ctx, `
SELECT a.cluster, a.namespace, a.name, a.first_seen, a.last_seen,
       (SELECT count(*) FROM destinations d WHERE d.app_id = a.id AND d.last_seen >= $1),
       (SELECT count(*) FROM anomalies f WHERE f.app_id = a.id AND f.resolved_at IS NULL)
FROM apps a
`+after+`
ORDER BY a.cluster, a.namespace, a.name
LIMIT $2`, args...)
	if err != nil {
		return nil, wrap(err, "read app summaries")
	}
	var (
		out           = make([]AppSummary, 0, min(limit, 64))
		s             AppSummary
		dests, firing int64
	)
	_, err = pgx.ForEachRow(rows, []any{&s.App.Cluster, &s.App.Namespace, &s.App.Name, &s.FirstSeen, &s.LastSeen, &dests, &firing}, func() error {
		s.FirstSeen, s.LastSeen = s.FirstSeen.UTC(), s.LastSeen.UTC()
		s.Destinations, s.Firing = int(dests), int(firing)
		out = append(out, s)
		return nil
	})
	if err != nil {
		return nil, wrap(err, "read app summaries")
	}
	return out, nil
}

// AppClusters returns the clusters in which the app namespace/name was
// seen, sorted; none for an unknown app. A single-cluster installation
// has one, usually "default" or "".
func (db *DB) AppClusters(ctx context.Context, namespace, name string) ([]string, error) {
	rows, err := db.pool.Query(ctx, `SELECT cluster FROM apps WHERE namespace = $1 AND name = $2`, namespace, name)
	if err != nil {
		return nil, wrap(err, "read clusters of %s/%s", namespace, name)
	}
	clusters, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, wrap(err, "read clusters of %s/%s", namespace, name)
	}
	slices.Sort(clusters)
	return clusters, nil
}

// AppDestinations returns the page of the stored totals of an app's
// destinations that f selects: those of the app f.App names by namespace
// and name (in f.App.Cluster only when it is set, else in every cluster,
// each rollup's App naming its cluster) last seen at or after f.Since,
// sorted by cluster, name, port and protocol. It returns an error matching
// egressd.ErrNotFound when no such app was seen; a known app may have an
// empty page.
func (db *DB) AppDestinations(ctx context.Context, f egressd.DestinationFilter) ([]egressd.DestinationRollup, error) {
	app := f.App
	limit, err := egressd.PageSize("list destinations of "+app.InCluster(), f.Limit)
	if err != nil {
		return nil, err
	}
	args := []any{app.Namespace, app.Name, app.Cluster, f.Since, limit}
	after := ""
	if f.After != nil {
		after = "\n  AND (a.cluster, d.name, d.port, d.protocol) > ($6, $7, $8, $9)"
		args = append(args, f.After.Cluster, f.After.Destination.Name, int32(f.After.Destination.Port), f.After.Destination.Protocol)
	}
	rows, err := db.pool.Query(ctx, `
SELECT a.cluster, d.name, d.port, d.protocol, d.first_seen, d.last_seen, d.flows, d.dropped_flows,
       d.verdicts, d.example_pod, d.name_source
FROM apps a
JOIN destinations d ON d.app_id = a.id
WHERE a.namespace = $1 AND a.name = $2 AND ($3 = '' OR a.cluster = $3) AND d.last_seen >= $4`+after+`
ORDER BY a.cluster, d.name, d.port, d.protocol
LIMIT $5`, args...)
	if err != nil {
		return nil, wrap(err, "read destinations of %s", app.InCluster())
	}
	var (
		dests = []egressd.DestinationRollup{}
		s     = destinationScan{d: egressd.DestinationRollup{App: app}}
	)
	_, err = pgx.ForEachRow(rows, append([]any{&s.d.App.Cluster}, s.dest()...), func() error {
		dests = append(dests, s.rollup())
		return nil
	})
	if err != nil {
		return nil, wrap(err, "read destinations of %s", app.InCluster())
	}
	if len(dests) > 0 {
		return dests, nil
	}
	if err := db.appExists(ctx, app); err != nil {
		return nil, err
	}
	return dests, nil
}

// AppWindowEntries is WindowEntries for the app namespace/name alone (in
// app.Cluster only when it is set, else in every cluster): the same rows,
// values and order that WindowEntries returns for that app, so
// baseline.Build gives the app the baseline an export writes. It returns an
// error matching egressd.ErrNotFound when no such app was seen; a known app
// without allowed traffic in the window has no entries.
func (db *DB) AppWindowEntries(ctx context.Context, app egressd.App, from, to time.Time) ([]egressd.WindowEntry, error) {
	rows, err := db.pool.Query(ctx,
		windowQuery(`app_id IN (SELECT id FROM apps WHERE namespace = $3 AND name = $4 AND ($5 = '' OR cluster = $5))`),
		from.UTC().Truncate(time.Hour), to, app.Namespace, app.Name, app.Cluster)
	if err != nil {
		return nil, wrap(err, "read window of %s", app.InCluster())
	}
	entries, err := scanWindowEntries(rows, "read window of "+app.InCluster())
	if err != nil || len(entries) > 0 {
		return entries, err
	}
	if err := db.appExists(ctx, app); err != nil {
		return nil, err
	}
	return []egressd.WindowEntry{}, nil
}

// appExists returns nil when the app namespace/name was seen (in
// app.Cluster only when it is set), else an error matching
// egressd.ErrNotFound.
func (db *DB) appExists(ctx context.Context, app egressd.App) error {
	var exists bool
	err := db.pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM apps WHERE namespace = $1 AND name = $2 AND ($3 = '' OR cluster = $3))`,
		app.Namespace, app.Name, app.Cluster).Scan(&exists)
	if err != nil {
		return wrap(err, "look up app %s", app.InCluster())
	}
	if !exists {
		return egressd.Errorf(egressd.ENOTFOUND, "app %s not found", app.InCluster())
	}
	return nil
}

// IsAccepted reports whether dest is accepted for app as Accept stores it:
// the same cluster (an empty one is the acceptance for every cluster),
// name, port and protocol.
func (db *DB) IsAccepted(ctx context.Context, app egressd.App, dest egressd.Destination) (bool, error) {
	dest, err := acceptedKey(app, dest)
	if err != nil {
		return false, err
	}
	var ok bool
	err = db.pool.QueryRow(ctx, `
SELECT EXISTS (SELECT FROM accepted_destinations
WHERE cluster = $1 AND namespace = $2 AND app = $3 AND name = $4 AND port = $5 AND protocol = $6)`,
		app.Cluster, app.Namespace, app.Name, dest.Name, int32(dest.Port), dest.Protocol).Scan(&ok)
	if err != nil {
		return false, wrap(err, "read acceptance of %s for %s", dest, app)
	}
	return ok, nil
}
