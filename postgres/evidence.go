package postgres

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/egressd/egressd"
)

// maxEvidenceRows bounds the rows read for one name: one per app, port and
// protocol that reached it, so only a name every app of a huge cluster
// reaches on many ports comes near it.
const maxEvidenceRows = 10_000

// evidenceLists bounds the siblings and pods the evidence names.
const (
	evidenceSiblings = 5
	evidencePods     = 10
)

// DestinationEvidence returns what the stored destinations tell about dst
// for app: it implements detector.EvidenceStore. Only destinations with
// allowed flows (last_allowed set) first seen before at count, so that the
// evidence is that of the anomaly's time even when it is gathered later
// (a replay stores flows faster than the detector records anomalies), and
// a destination other apps only tried and were refused counts for nothing.
// Stored destinations are those of the retention period.
//
// From the rows of dst's name: the other apps, and those in other clusters
// than app's, that reached it on any port; when app's cluster first reached
// it (app's own row for dst itself left out); app's other ports on it and
// the pods it reached it from. With a domain (dst's registrable domain):
// how many other apps reached the domain or a name under it, and app's
// names under it (dst's own left out) last allowed at or after since: its
// live window. Three statements in one round trip, each served by the
// index on the reversed name (migration 006) or the primary key.
func (db *DB) DestinationEvidence(ctx context.Context, app egressd.App, dst egressd.Destination, domain string, since, at time.Time) (egressd.Evidence, error) {
	var e egressd.Evidence
	b := &pgx.Batch{}
	b.Queue(`
SELECT p.cluster, p.namespace, p.name, d.port, d.protocol, d.first_seen, d.example_pod
FROM destinations d JOIN apps p ON p.id = d.app_id
WHERE reverse(d.name) = reverse($1) AND d.name = $1 AND d.last_allowed IS NOT NULL AND d.first_seen < $2
ORDER BY d.first_seen
LIMIT $3`, dst.Name, at, maxEvidenceRows)
	if domain != "" {
		under := likeEscape(reverse("."+domain)) + "%"
		b.Queue(`
SELECT count(DISTINCT d.app_id)
FROM destinations d
WHERE (reverse(d.name) = reverse($1) OR reverse(d.name) LIKE $2)
  AND d.last_allowed IS NOT NULL AND d.first_seen < $3
  AND d.app_id IS DISTINCT FROM (SELECT id FROM apps WHERE cluster = $4 AND namespace = $5 AND name = $6)`, domain, under, at, app.Cluster, app.Namespace, app.Name)
		b.Queue(`
SELECT d.name
FROM destinations d JOIN apps p ON p.id = d.app_id
WHERE p.cluster = $4 AND p.namespace = $5 AND p.name = $6
  AND (reverse(d.name) = reverse($1) OR reverse(d.name) LIKE $2)
  AND d.name <> $7 AND d.last_allowed >= $8 AND d.first_seen < $3
GROUP BY d.name
ORDER BY d.name
LIMIT $9`, domain, under, at, app.Cluster, app.Namespace, app.Name, dst.Name, since, evidenceSiblings)
	}
	br := db.pool.SendBatch(ctx, b)
	defer br.Close()

	rows, err := br.Query()
	if err != nil {
		return e, wrap(err, "evidence for %s of %s", dst.Name, app)
	}
	others, clusters := map[egressd.App]struct{}{}, map[string]struct{}{}
	var (
		r       egressd.App
		port    int32
		proto   string
		first   time.Time
		example string
	)
	_, err = pgx.ForEachRow(rows, []any{&r.Cluster, &r.Namespace, &r.Name, &port, &proto, &first, &example}, func() error {
		self := r == app
		if self && uint16(port) == dst.Port && proto == dst.Protocol {
			return nil // the anomaly's own destination
		}
		if r.Cluster == app.Cluster && (e.ClusterFirstSeen.IsZero() || first.Before(e.ClusterFirstSeen)) {
			e.ClusterFirstSeen = first.UTC()
		}
		if !self {
			others[r] = struct{}{}
			if r.Cluster != app.Cluster {
				clusters[r.Cluster] = struct{}{}
			}
			return nil
		}
		e.KnownPorts = append(e.KnownPorts, egressd.FormatPort(uint16(port), proto))
		if example != "" && len(e.Pods) < evidencePods && !slices.Contains(e.Pods, example) {
			e.Pods = append(e.Pods, example)
		}
		return nil
	})
	if err != nil {
		return e, wrap(err, "evidence for %s of %s", dst.Name, app)
	}
	e.OtherApps, e.OtherClusters = len(others), len(clusters)
	slices.Sort(e.KnownPorts)
	if domain == "" {
		return e, nil
	}
	if err := br.QueryRow().Scan(&e.DomainApps); err != nil {
		return e, wrap(err, "evidence for %s of %s: domain %s", dst.Name, app, domain)
	}
	rows, err = br.Query()
	if err != nil {
		return e, wrap(err, "evidence for %s of %s: siblings under %s", dst.Name, app, domain)
	}
	siblings, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return e, wrap(err, "evidence for %s of %s: siblings under %s", dst.Name, app, domain)
	}
	if len(siblings) > 0 {
		e.Siblings = siblings
	}
	return e, nil
}

// reverse returns s with its characters in reverse order, as PostgreSQL's
// reverse() does.
func reverse(s string) string {
	r := []rune(s)
	slices.Reverse(r)
	return string(r)
}

// likeEscape escapes LIKE's wildcards and its escape character.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}
