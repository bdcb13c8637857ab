package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5"

	"github.com/egressd/egressd"
)

// What the detector reads at start so that a restart changes none of its
// verdicts (detector.Detector.Prime).

// AppHours returns every app's flows per hour from the hour containing from
// up to, not including, to, sorted by app and hour: one row per app and
// hour (migration 005), whatever the number of destinations.
func (db *DB) AppHours(ctx context.Context, from, to time.Time) ([]egressd.AppHour, error) {
	rows, err := db.pool.Query(ctx, `
SELECT a.cluster, a.namespace, a.name, h.hour, h.flows
FROM app_hourly h JOIN apps a ON a.id = h.app_id
WHERE h.hour >= $1 AND h.hour < $2`, from.UTC().Truncate(time.Hour), to)
	if err != nil {
		return nil, wrap(err, "read app hours")
	}
	var (
		out []egressd.AppHour
		h   egressd.AppHour
	)
	_, err = pgx.ForEachRow(rows, []any{&h.App.Cluster, &h.App.Namespace, &h.App.Name, &h.Hour, &h.Flows}, func() error {
		h.Hour = h.Hour.UTC()
		out = append(out, h)
		return nil
	})
	if err != nil {
		return nil, wrap(err, "read app hours")
	}
	slices.SortFunc(out, func(a, b egressd.AppHour) int {
		if c := cmpApp(a.App, b.App); c != 0 {
			return c
		}
		return a.Hour.Compare(b.Hour)
	})
	return out, nil
}

// AppPods returns the pods reported for each app at or after since, sorted
// by app and pod.
func (db *DB) AppPods(ctx context.Context, since time.Time) ([]egressd.AppPod, error) {
	rows, err := db.pool.Query(ctx, `
SELECT a.cluster, a.namespace, a.name, p.pod, p.last_seen
FROM app_pods p JOIN apps a ON a.id = p.app_id
WHERE p.last_seen >= $1`, since)
	if err != nil {
		return nil, wrap(err, "read app pods")
	}
	var (
		out []egressd.AppPod
		p   egressd.AppPod
	)
	_, err = pgx.ForEachRow(rows, []any{&p.App.Cluster, &p.App.Namespace, &p.App.Name, &p.Pod, &p.LastSeen}, func() error {
		p.LastSeen = p.LastSeen.UTC()
		out = append(out, p)
		return nil
	})
	if err != nil {
		return nil, wrap(err, "read app pods")
	}
	slices.SortFunc(out, func(a, b egressd.AppPod) int {
		if c := cmpApp(a.App, b.App); c != 0 {
			return c
		}
		return strings.Compare(a.Pod, b.Pod)
	})
	return out, nil
}

// NewDestinations returns the destinations first seen at or after since,
// once their app's first learning period had passed (apps.first_seen +
// learning): those the detector judged when they appeared. It orders them
// by first-seen time, as the detector met them.
func (db *DB) NewDestinations(ctx context.Context, since time.Time, learning time.Duration) ([]egressd.DestinationRollup, error) {
	rows, err := db.pool.Query(ctx, `
SELECT a.cluster, a.namespace, a.name, d.name, d.port, d.protocol, d.first_seen, d.last_seen,
       d.flows, d.dropped_flows, d.verdicts, d.example_pod, d.name_source
FROM destinations d JOIN apps a ON a.id = d.app_id
WHERE d.first_seen >= $1 AND d.first_seen >= a.first_seen + $2::bigint * interval '1 microsecond'`, since, learning.Microseconds())
	if err != nil {
		return nil, wrap(err, "read destinations first seen since %s", since.UTC().Format(time.RFC3339))
	}
	out, err := collectAppDestinations(rows)
	if err != nil {
		return nil, wrap(err, "read destinations first seen since %s", since.UTC().Format(time.RFC3339))
	}
	slices.SortStableFunc(out, func(a, b egressd.DestinationRollup) int {
		if c := a.FirstSeen.Compare(b.FirstSeen); c != 0 {
			return c
		}
		return cmpDest(a.App, a.Destination, b.App, b.Destination)
	})
	return out, nil
}

// DetectorAnomalies returns the anomalies that started at or after since,
// and the egress volume anomalies still firing whenever they started: what
// the detector must not raise again after a restart.
func (db *DB) DetectorAnomalies(ctx context.Context, since time.Time) ([]egressd.Anomaly, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+anomalyColumns+` FROM anomalies a JOIN apps p ON p.id = a.app_id
WHERE a.started_at >= $1 OR (a.kind = $2 AND a.resolved_at IS NULL)
ORDER BY a.started_at, a.fingerprint`, since, string(egressd.AnomalyEgressVolume))
	if err != nil {
		return nil, wrap(err, "read anomalies since %s", since.UTC().Format(time.RFC3339))
	}
	out, err := collectAnomalies(rows)
	if err != nil {
		return nil, wrap(err, "read anomalies since %s", since.UTC().Format(time.RFC3339))
	}
	return out, nil
}

// DNSQueriesSince returns the DNS names each app asked last at or after
// since, ordered by that time.
func (db *DB) DNSQueriesSince(ctx context.Context, since time.Time) ([]egressd.DNSQueryRollup, error) {
	rows, err := db.pool.Query(ctx, `
SELECT a.cluster, a.namespace, a.name, q.name, q.first_seen, q.last_seen, q.queries
FROM dns_queries q JOIN apps a ON a.id = q.app_id
WHERE q.last_seen >= $1`, since)
	if err != nil {
		return nil, wrap(err, "read dns queries since %s", since.UTC().Format(time.RFC3339))
	}
	var (
		out []egressd.DNSQueryRollup
		q   egressd.DNSQueryRollup
	)
	_, err = pgx.ForEachRow(rows, []any{&q.App.Cluster, &q.App.Namespace, &q.App.Name, &q.Name, &q.FirstSeen, &q.LastSeen, &q.Queries}, func() error {
		q.FirstSeen, q.LastSeen = q.FirstSeen.UTC(), q.LastSeen.UTC()
		out = append(out, q)
		return nil
	})
	if err != nil {
		return nil, wrap(err, "read dns queries since %s", since.UTC().Format(time.RFC3339))
	}
	slices.SortStableFunc(out, func(a, b egressd.DNSQueryRollup) int {
		if c := a.LastSeen.Compare(b.LastSeen); c != 0 {
			return c
		}
		if c := cmpApp(a.App, b.App); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

// EachSeenDestination calls fn for every destination last seen at or after
// since, with any verdict, in no particular order: the detector's live
// window at start. It builds no slice of them and reads the names without
// copying, so that a million destinations load in about a second: dst's
// strings are valid only during the call (apps are not; they are shared).
// An error from fn stops the read and is returned.
func (db *DB) EachSeenDestination(ctx context.Context, since time.Time, fn func(app egressd.App, dst egressd.Destination) error) error {
	apps := make(map[int64]egressd.App)
	rows, err := db.pool.Query(ctx, `SELECT id, cluster, namespace, name FROM apps`)
	if err != nil {
		return wrap(err, "read apps")
	}
	var (
		id int64
		a  egressd.App
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &a.Cluster, &a.Namespace, &a.Name}, func() error {
		apps[id] = a
		return nil
	}); err != nil {
		return wrap(err, "read apps")
	}

	rows, err = db.pool.Query(ctx, `SELECT app_id, name, port, protocol FROM destinations WHERE last_seen >= $1`, since)
	if err != nil {
		return wrap(err, "read destinations seen since %s", since.UTC().Format(time.RFC3339))
	}
	defer rows.Close()
	fds := rows.FieldDescriptions()
	for rows.Next() {
		v := rows.RawValues()
		appID, err1 := rawInt(v[0], fds[0].Format)
		port, err2 := rawInt(v[2], fds[2].Format)
		if err := errors.Join(err1, err2); err != nil {
			return fmt.Errorf("read destinations seen since %s: %w", since.UTC().Format(time.RFC3339), err)
		}
		dst := egressd.Destination{Name: unsafeString(v[1]), Port: uint16(port), Protocol: unsafeString(v[3])}
		if err := fn(apps[appID], dst); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return wrap(err, "read destinations seen since %s", since.UTC().Format(time.RFC3339))
	}
	return nil
}

// rawInt decodes an integer column of a row's raw values, in the binary
// format pgx asks for, or in text.
func rawInt(b []byte, format int16) (int64, error) {
	if format == pgx.TextFormatCode {
		return strconv.ParseInt(string(b), 10, 64)
	}
	switch len(b) {
	case 8:
		return int64(binary.BigEndian.Uint64(b)), nil
	case 4:
		return int64(int32(binary.BigEndian.Uint32(b))), nil
	case 2:
		return int64(int16(binary.BigEndian.Uint16(b))), nil
	}
	return 0, fmt.Errorf("integer of %d bytes", len(b))
}

// unsafeString views b as a string without copying: only for values that
// do not outlive the row they were read from.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// DNSAnswers returns the stored DNS answers that expire at or after since,
// or, with a zero since, at or after the newest flow stored (replay's
// "now"): what a restarted collector loads into its DNS cache.
func (db *DB) DNSAnswers(ctx context.Context, since time.Time) ([]egressd.DNSAnswer, error) {
	var arg any
	if !since.IsZero() {
		arg = since
	}
	rows, err := db.pool.Query(ctx, `
SELECT namespace, pod, addr, name, expires_at FROM dns_answers
WHERE expires_at >= coalesce($1::timestamptz, (SELECT max(last_seen) FROM apps), '-infinity')`, arg)
	if err != nil {
		return nil, wrap(err, "read dns answers")
	}
	var (
		out  []egressd.DNSAnswer
		a    egressd.DNSAnswer
		addr string
	)
	_, err = pgx.ForEachRow(rows, []any{&a.Namespace, &a.Pod, &addr, &a.Name, &a.Expires}, func() error {
		ip, err := netip.ParseAddr(addr)
		if err != nil {
			return nil // not written by egressd: ignored
		}
		a.Addr, a.Expires = ip, a.Expires.UTC()
		out = append(out, a)
		return nil
	})
	if err != nil {
		return nil, wrap(err, "read dns answers")
	}
	return out, nil
}

// EachApp calls fn for every stored app; a's strings need only be valid
// during the call. The collector keeps the apps stored, whatever its
// bound on apps (collector.Options.MaxApps).
func (db *DB) EachApp(ctx context.Context, fn func(a egressd.App)) error {
	rows, err := db.pool.Query(ctx, `SELECT cluster, namespace, name FROM apps`)
	if err != nil {
		return wrap(err, "read apps")
	}
	defer rows.Close()
	for rows.Next() {
		v := rows.RawValues()
		fn(egressd.App{Cluster: unsafeString(v[0]), Namespace: unsafeString(v[1]), Name: unsafeString(v[2])})
	}
	if err := rows.Err(); err != nil {
		return wrap(err, "read apps")
	}
	return nil
}
