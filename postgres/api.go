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

// AppSummary is an app as the HTTP API lists it.
type AppSummary struct {
	App       egressd.App
	FirstSeen time.Time
	LastSeen  time.Time
	// Destinations counts the app's destinations (any verdict) last seen
	// at or after the since argument of AppSummaries.
	Destinations int
	// Firing counts the app's anomalies that have not resolved.
	Firing int
}

// AppSummaries returns every app with its number of destinations last seen
// at or after since (a zero since counts them all) and its number of firing
// anomalies, sorted by cluster, namespace and name.
func (db *DB) AppSummaries(ctx context.Context, since time.Time) ([]AppSummary, error) {
	// Aggregating each table once and joining scales with the number of
	// apps better than a correlated count per app.
	rows, err := db.pool.Query(ctx, `
SELECT a.cluster, a.namespace, a.name, a.first_seen, a.last_seen,
       coalesce(d.n, 0), coalesce(f.n, 0)
FROM apps a
LEFT JOIN (SELECT app_id, count(*) AS n FROM destinations WHERE last_seen >= $1 GROUP BY app_id) d
       ON d.app_id = a.id
LEFT JOIN (SELECT app_id, count(*) AS n FROM anomalies WHERE resolved_at IS NULL GROUP BY app_id) f
       ON f.app_id = a.id`, since)
	if err != nil {
		return nil, wrap(err, "read app summaries")
	}
	var (
		out           []AppSummary
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
	slices.SortFunc(out, func(a, b AppSummary) int { return cmpApp(a.App, b.App) })
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

// AppDestinations returns the stored totals of the destinations of the app
// namespace/name (in app.Cluster only when it is set, else in every
// cluster, each rollup's App naming its cluster) last seen at or after
// since, sorted by cluster, name, port and protocol. It returns an error
// matching egressd.ErrNotFound when no such app was seen.
func (db *DB) AppDestinations(ctx context.Context, app egressd.App, since time.Time) ([]egressd.DestinationRollup, error) {
	// One statement answers both questions: an app without destinations in
	// the window is one row of NULLs, an unknown app no row at all.
	rows, err := db.pool.Query(ctx, `
SELECT a.cluster, d.name, d.port, d.protocol, d.first_seen, d.last_seen, d.flows, d.dropped_flows,
       d.verdicts, d.example_pod, d.name_source
FROM apps a
LEFT JOIN destinations d ON d.app_id = a.id AND d.last_seen >= $4
WHERE a.namespace = $1 AND a.name = $2 AND ($3 = '' OR a.cluster = $3)`,
		app.Namespace, app.Name, app.Cluster, since)
	if err != nil {
		return nil, wrap(err, "read destinations of %s", appName(app))
	}
	var (
		dests       = []egressd.DestinationRollup{}
		found       bool
		cluster     string
		name, proto *string
		first, last *time.Time
		port, verds *int32
		flows, drop *int64
		pod         *string
		nameSource  *int16
	)
	_, err = pgx.ForEachRow(rows, []any{&cluster, &name, &port, &proto, &first, &last, &flows, &drop, &verds, &pod, &nameSource}, func() error {
		found = true
		if name == nil {
			return nil
		}
		dests = append(dests, egressd.DestinationRollup{
			App:          egressd.App{Cluster: cluster, Namespace: app.Namespace, Name: app.Name},
			Destination:  egressd.Destination{Name: *name, Port: uint16(*port), Protocol: *proto},
			FirstSeen:    first.UTC(),
			LastSeen:     last.UTC(),
			Flows:        *flows,
			DroppedFlows: *drop,
			Verdicts:     egressd.VerdictSet(*verds),
			ExamplePod:   *pod,
			NameSource:   egressd.NameSource(*nameSource),
		})
		return nil
	})
	if err != nil {
		return nil, wrap(err, "read destinations of %s", appName(app))
	}
	if !found {
		return nil, egressd.Errorf(egressd.ENOTFOUND, "app %s not found", appName(app))
	}
	slices.SortFunc(dests, func(a, b egressd.DestinationRollup) int {
		return cmpDest(a.App, a.Destination, b.App, b.Destination)
	})
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
		return nil, wrap(err, "read window of %s", appName(app))
	}
	entries, err := scanWindowEntries(rows, "read window of "+appName(app))
	if err != nil || len(entries) > 0 {
		return entries, err
	}
	var exists bool
	err = db.pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM apps WHERE namespace = $1 AND name = $2 AND ($3 = '' OR cluster = $3))`,
		app.Namespace, app.Name, app.Cluster).Scan(&exists)
	if err != nil {
		return nil, wrap(err, "read window of %s", appName(app))
	}
	if !exists {
		return nil, egressd.Errorf(egressd.ENOTFOUND, "app %s not found", appName(app))
	}
	return []egressd.WindowEntry{}, nil
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

// appName names an app in messages: "namespace/name", with the cluster
// when one is selected.
func appName(a egressd.App) string {
	if a.Cluster == "" {
		return a.String()
	}
	return a.String() + " in cluster " + a.Cluster
}
