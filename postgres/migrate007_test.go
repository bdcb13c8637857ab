package postgres_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/migrations"
	"github.com/egressd/egressd/postgres/pgtest"
)

// TestMigrationWithoutAppKeys upgrades a database written at schema 5 in
// place: the window read from the destinations' allowed hours matches the
// buckets at once, and deleting apps still deletes their destinations,
// buckets and DNS questions (a trigger now, not foreign keys), and only
// theirs.
func TestMigrationWithoutAppKeys(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url := pgtest.EmptyURL(t)

	conn, err := pgx.Connect(ctx, string(url))
	require.NoError(t, err)
	defer conn.Close(ctx)
	m, err := migrate.NewMigrator(ctx, conn, "schema_version")
	require.NoError(t, err)
	require.NoError(t, m.LoadMigrations(migrations.FS))
	require.NoError(t, m.MigrateTo(ctx, 5))

	// Rows as the schema-5 writer left them.
	day := t0.Truncate(24 * time.Hour)
	for _, sql := range []string{
		`INSERT INTO apps (id, cluster, namespace, name, first_seen, last_seen) OVERRIDING SYSTEM VALUE
         VALUES (1, '', 'media', 'recyclarr', $1, $1), (2, 'prod', 'web', 'shop', $1, $1)`,
		`INSERT INTO destinations (app_id, name, port, protocol, first_seen, last_seen, flows, dropped_flows, last_allowed)
         VALUES (1, 'api.github.com', 443, 'TCP', $1, $1::timestamptz + interval '3 hours', 3, 0, $1::timestamptz + interval '3 hours'),
                (1, 'evil.example', 443, 'TCP', $1, $1, 2, 2, NULL),
                (2, 'dns.google', 53, 'UDP', $1::timestamptz - interval '2 days', $1::timestamptz + interval '2 hours', 3, 1, $1::timestamptz + interval '2 hours')`,
		// An older day, so that t0's day is read from the columns.
		`CREATE TABLE destination_hourly_p` + day.AddDate(0, 0, -2).Format("20060102") + ` PARTITION OF destination_hourly
         FOR VALUES FROM ('` + day.AddDate(0, 0, -2).Format(time.RFC3339) + `') TO ('` + day.AddDate(0, 0, -1).Format(time.RFC3339) + `')`,
		`CREATE TABLE destination_hourly_p` + day.Format("20060102") + ` PARTITION OF destination_hourly
         FOR VALUES FROM ('` + day.Format(time.RFC3339) + `') TO ('` + day.AddDate(0, 0, 1).Format(time.RFC3339) + `')`,
		`INSERT INTO destination_hourly (app_id, name, port, protocol, hour, flows, dropped_flows)
         VALUES (1, 'api.github.com', 443, 'TCP', $1, 1, 0), (1, 'api.github.com', 443, 'TCP', $1::timestamptz + interval '3 hours', 2, 0),
                (1, 'evil.example', 443, 'TCP', $1, 2, 2),
                (2, 'dns.google', 53, 'UDP', $1::timestamptz + interval '1 hour', 1, 1), (2, 'dns.google', 53, 'UDP', $1::timestamptz + interval '2 hours', 1, 0),
                (2, 'dns.google', 53, 'UDP', $1::timestamptz - interval '2 days', 1, 0)`,
		`INSERT INTO dns_queries (app_id, name, first_seen, last_seen, queries)
         VALUES (1, 'api.github.com', $1, $1, 1), (2, 'dns.google', $1, $1, 1)`,
	} {
		var args []any
		if strings.Contains(sql, "$1") {
			args = append(args, at(0))
		}
		_, err := conn.Exec(ctx, sql, args...)
		require.NoError(t, err, sql)
	}

	db := open(t, url)
	require.NoError(t, db.Migrate(ctx))
	// The oldest partition is two days before t0's: windows from the next
	// day on read the columns, the backfilled ones included.
	tomorrow := t0.Truncate(24*time.Hour).AddDate(0, 0, 1)
	require.NoError(t, db.WriteRollup(ctx, &egressd.Rollup{
		Destinations: []egressd.DestinationRollup{destRollup(DestOpts{App: shop, Destination: rawIP, FirstSeen: tomorrow})},
		Hourly:       []egressd.HourlyRollup{hourly(shop, rawIP, tomorrow, 1, 0)},
	}))
	for _, w := range [][2]time.Time{
		{at(0), at(time.Hour)},
		{at(time.Hour), at(3 * time.Hour)},
		{at(2 * time.Hour), tomorrow.Add(time.Hour)},
		{tomorrow, tomorrow.Add(24 * time.Hour)},
		{at(-time.Hour), tomorrow.Add(24 * time.Hour)},
		{day.AddDate(0, 0, -2), at(0)}, // the oldest day, from its buckets
	} {
		requireWindowKeys(t, db, w[0], w[1])
	}

	count := func(table string) (n int) {
		t.Helper()
		require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{table}.Sanitize()+
			` WHERE app_id = (SELECT id FROM apps WHERE name = 'recyclarr')`).Scan(&n))
		return n
	}
	require.Equal(t, 2, count("destinations"))
	require.Equal(t, 3, count("destination_hourly"))
	require.Equal(t, 1, count("dns_queries"))
	var otherRows int
	require.NoError(t, conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM destinations) + (SELECT count(*) FROM destination_hourly)
        + (SELECT count(*) FROM dns_queries)`).Scan(&otherRows))

	tag, err := conn.Exec(ctx, `DELETE FROM apps WHERE name = 'recyclarr'`)
	require.NoError(t, err)
	require.EqualValues(t, 1, tag.RowsAffected())
	var left int
	require.NoError(t, conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM destinations) + (SELECT count(*) FROM destination_hourly)
        + (SELECT count(*) FROM dns_queries)`).Scan(&left))
	require.Equal(t, otherRows-6, left, "rows of the deleted app left, or other apps' rows deleted")
	var orphans int
	require.NoError(t, conn.QueryRow(ctx, `
SELECT (SELECT count(*) FROM destinations d WHERE NOT EXISTS (SELECT FROM apps a WHERE a.id = d.app_id))
     + (SELECT count(*) FROM destination_hourly h WHERE NOT EXISTS (SELECT FROM apps a WHERE a.id = h.app_id))
     + (SELECT count(*) FROM dns_queries q WHERE NOT EXISTS (SELECT FROM apps a WHERE a.id = q.app_id))`).Scan(&orphans))
	require.Zero(t, orphans)
}
