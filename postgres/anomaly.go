package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/egressd/egressd"
)

// RecordAnomaly stores a, unless an anomaly with its fingerprint is already
// stored, and reports whether it did. Only the call that stores it also
// queues one delivery per target (an Alertmanager base URL), firing and due
// at now; so replicas that raise the same anomaly at once create it, and
// alert on it, exactly once. An anomaly recorded already resolved (ResolvedAt
// set) gets no deliveries.
//
// now is the wall time (recorded_at); a.Time is the flow time the anomaly
// started. The app's row is created when missing, with a.Time as its first
// and last seen; an existing row is left as it is (the collector's rollups
// move its times), so recording does not wait for a flush that holds it.
//
// Values read from flows are bounded before they are stored: the summary to
// MaxSummaryLen, details to MaxDetailKeyLen, MaxDetailValueLen and
// MaxDetailsLen, pod, node and destination names to 253 bytes, the
// evidence's lists to MaxEvidenceList entries of 253 bytes, and invalid
// UTF-8 and NUL bytes are replaced or removed. Times are stored with
// microsecond precision.
func (db *DB) RecordAnomaly(ctx context.Context, a egressd.Anomaly, targets []string, now time.Time) (inserted bool, err error) {
	if err := validateAnomaly(&a); err != nil {
		return false, err
	}
	targets, err = cleanTargets(targets)
	if err != nil {
		return false, fmt.Errorf("record anomaly %s: %w", a.Fingerprint, err)
	}
	a = boundAnomaly(a)

	tx, err := db.pool.BeginTx(ctx, readCommitted)
	if err != nil {
		return false, wrap(err, "record anomaly %s: begin", a.Fingerprint)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after Commit

	appID, err := ensureApp(ctx, tx, a.App, a.Time)
	if err != nil {
		return false, fmt.Errorf("record anomaly %s: %w", a.Fingerprint, err)
	}
	var resolvedAt *time.Time
	if !a.ResolvedAt.IsZero() {
		resolvedAt = &a.ResolvedAt
	}
	// A concurrent insert of the same fingerprint makes this statement
	// wait for that transaction: DO NOTHING once it commits, insert if it
	// rolls back. Either way exactly one transaction inserts.
	tag, err := tx.Exec(ctx, `
INSERT INTO anomalies (fingerprint, kind, app_id, destination, port, protocol, started_at, recorded_at,
    pod, node, verdict, name_source, baseline_source, summary, details, resolved_at, severity, evidence)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
ON CONFLICT (fingerprint) DO NOTHING`,
		a.Fingerprint, string(a.Kind), appID, a.Destination.Name, int32(a.Destination.Port), a.Destination.Protocol,
		a.Time, now, a.Pod, a.Node, int16(a.Verdict), int16(a.NameSource), a.BaselineSource, a.Summary,
		detailsJSON(a.Details), resolvedAt, string(a.Severity), a.Evidence)
	if err != nil {
		return false, wrap(err, "record anomaly %s", a.Fingerprint)
	}
	if tag.RowsAffected() == 0 {
		return false, nil // stored before; its deliveries were queued then
	}
	if len(targets) > 0 && resolvedAt == nil {
		_, err := tx.Exec(ctx, `
INSERT INTO alert_outbox (fingerprint, target, state, next_attempt_at)
SELECT $1, t, 'firing', $3 FROM unnest($2::text[]) AS t`, a.Fingerprint, targets, now)
		if err != nil {
			return false, wrap(err, "record anomaly %s: queue %d deliveries", a.Fingerprint, len(targets))
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return false, wrap(err, "record anomaly %s: commit", a.Fingerprint)
	}
	return true, nil
}

// readCommitted is the isolation every multi-statement transaction of this
// file relies on, whatever the server's default: a statement sees rows
// committed after the transaction began (ensureApp), and a row locked after
// a concurrent update is checked again against the WHERE clause.
var readCommitted = pgx.TxOptions{IsoLevel: pgx.ReadCommitted}

// ensureApp returns the id of app's row, creating it with first and last
// seen at seen when missing. It neither locks nor waits for an existing row:
// a flush that is updating it holds it for its whole transaction, and a
// plain read does not wait for that (an INSERT ... ON CONFLICT would).
func ensureApp(ctx context.Context, tx pgx.Tx, app egressd.App, seen time.Time) (int64, error) {
	const find = `SELECT id FROM apps WHERE cluster = $1 AND namespace = $2 AND name = $3`
	var id int64
	err := tx.QueryRow(ctx, find, app.Cluster, app.Namespace, app.Name).Scan(&id)
	if err == nil {
		return id, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return 0, wrap(err, "find app %s", app)
	}
	err = tx.QueryRow(ctx, `
INSERT INTO apps (cluster, namespace, name, first_seen, last_seen) VALUES ($1, $2, $3, $4, $4)
ON CONFLICT (cluster, namespace, name) DO NOTHING
RETURNING id`, app.Cluster, app.Namespace, app.Name, seen).Scan(&id)
	if err == nil {
		return id, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return 0, wrap(err, "create app %s", app)
	}
	// Another transaction created it since the first read, and the insert
	// waited for it to commit; a new statement sees it (read committed).
	if err := tx.QueryRow(ctx, find, app.Cluster, app.Namespace, app.Name).Scan(&id); err != nil {
		return 0, wrap(err, "find app %s", app)
	}
	return id, nil
}

func validateAnomaly(a *egressd.Anomaly) error {
	if a.Fingerprint == "" || len(a.Fingerprint) > maxFingerprintLen || !printableASCII(a.Fingerprint) {
		return egressd.Errorf(egressd.EINVALID, "record anomaly: invalid fingerprint %q: want 1 to %d printable ASCII characters", bound(a.Fingerprint, 64), maxFingerprintLen)
	}
	if a.Kind == "" || len(a.Kind) > maxKindLen || !printableASCII(string(a.Kind)) {
		return egressd.Errorf(egressd.EINVALID, "record anomaly %s: invalid kind %q", a.Fingerprint, bound(string(a.Kind), 64))
	}
	if err := a.App.Validate(); err != nil {
		return fmt.Errorf("record anomaly %s: %w", a.Fingerprint, err)
	}
	if a.Time.IsZero() {
		return egressd.Errorf(egressd.EINVALID, "record anomaly %s: Time is zero", a.Fingerprint)
	}
	return nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// cleanTargets sorts and deduplicates Alertmanager URLs.
func cleanTargets(targets []string) ([]string, error) {
	out := make([]string, 0, len(targets))
	for _, t := range targets {
		t = strings.TrimSpace(t)
		if t == "" {
			return nil, egressd.Errorf(egressd.EINVALID, "empty Alertmanager target")
		}
		out = append(out, t)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// boundAnomaly applies the length bounds documented on RecordAnomaly.
func boundAnomaly(a egressd.Anomaly) egressd.Anomaly {
	a.Destination.Name = bound(a.Destination.Name, maxNameLen)
	a.Destination.Protocol = bound(a.Destination.Protocol, 16)
	a.Pod = bound(a.Pod, maxNameLen)
	a.Node = bound(a.Node, maxNameLen)
	a.BaselineSource = bound(a.BaselineSource, maxNameLen)
	a.Summary = bound(a.Summary, MaxSummaryLen)
	a.Details = boundDetails(a.Details)
	a.Severity = egressd.Severity(bound(string(a.Severity), 16))
	a.Evidence = boundEvidence(a.Evidence)
	return a
}

// detailsJSON is what the details column stores: never NULL.
func detailsJSON(d map[string]string) map[string]string {
	if d == nil {
		return map[string]string{}
	}
	return d
}

// ResolveAnomaly marks a firing anomaly resolved at at and reports whether
// it did; it returns false for one already resolved, and an error matching
// egressd.ErrNotFound for an unknown fingerprint.
//
// Its deliveries that were not dropped become resolved deliveries due at at
// (so at should come from the sender's clock), with their attempts reset: each
// Alertmanager is sent the resolve once. A delivery a sender holds keeps its
// lease, so the send in flight reports before the resolve goes out.
func (db *DB) ResolveAnomaly(ctx context.Context, fingerprint string, at time.Time) (bool, error) {
	n, err := db.resolve(ctx, at, "a.fingerprint = $1", fingerprint)
	if err != nil {
		return false, fmt.Errorf("resolve anomaly %s: %w", fingerprint, err)
	}
	if n > 0 {
		return true, nil
	}
	var exists bool
	if err := db.pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM anomalies WHERE fingerprint = $1)`, fingerprint).Scan(&exists); err != nil {
		return false, wrap(err, "resolve anomaly %s", fingerprint)
	}
	if !exists {
		return false, egressd.Errorf(egressd.ENOTFOUND, "resolve anomaly %s: not found", fingerprint)
	}
	return false, nil
}

// ExpireNovel resolves, at at, every firing novel-destination anomaly (single
// or flood) and DNS tunnel that started before before: the alert's time to
// live. It returns
// how many it resolved. Their fingerprints stay stored, so the same app
// reaching the same destination never raises it again.
func (db *DB) ExpireNovel(ctx context.Context, before, at time.Time) (int, error) {
	n, err := db.resolve(ctx, at, "a.kind IN ($1, $2, $3) AND a.started_at < $4",
		string(egressd.AnomalyNovelDestination), string(egressd.AnomalyNovelFlood), string(egressd.AnomalyDNSTunnel), before)
	if err != nil {
		return 0, fmt.Errorf("expire novel anomalies started before %s: %w", before.UTC().Format(time.RFC3339), err)
	}
	return n, nil
}

// resolve resolves the firing anomalies matching where (a condition on
// anomalies a, with parameters args) in its own transaction.
func (db *DB) resolve(ctx context.Context, at time.Time, where string, args ...any) (int, error) {
	tx, err := db.pool.BeginTx(ctx, readCommitted)
	if err != nil {
		return 0, wrap(err, "begin")
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after Commit
	n, err := resolveTx(ctx, tx, at, where, args...)
	if err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, wrap(err, "commit")
	}
	return n, nil
}

// resolveTx resolves the firing anomalies matching where and moves their
// deliveries to resolved.
//
// Lock order, shared by every writer of these tables: anomalies by
// fingerprint, then deliveries by id. Senders lock deliveries only (by id),
// so nothing waits in a cycle.
func resolveTx(ctx context.Context, tx pgx.Tx, at time.Time, where string, args ...any) (int, error) {
	// FOR UPDATE re-checks resolved_at on rows another transaction changed
	// meanwhile, so concurrent resolves each take a row at most once.
	rows, err := tx.Query(ctx, `
SELECT a.fingerprint FROM anomalies a
WHERE a.resolved_at IS NULL AND `+where+`
ORDER BY a.fingerprint
FOR UPDATE`, args...)
	if err != nil {
		return 0, wrap(err, "lock firing anomalies")
	}
	fps, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, wrap(err, "lock firing anomalies")
	}
	if len(fps) == 0 {
		return 0, nil
	}
	b := &pgx.Batch{}
	b.Queue(`UPDATE anomalies SET resolved_at = $2 WHERE fingerprint = ANY($1)`, fps, at)
	b.Queue(`
WITH locked AS (
    SELECT id FROM alert_outbox
    WHERE fingerprint = ANY($1) AND state <> 'dropped'
    ORDER BY id
    FOR UPDATE
)
UPDATE alert_outbox o
SET state = 'resolved', next_attempt_at = $2, attempts = 0
FROM locked WHERE o.id = locked.id`, fps, at)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return 0, wrap(err, "resolve %d anomalies", len(fps))
	}
	return len(fps), nil
}

// Anomaly returns the anomaly stored under fingerprint, or an error matching
// egressd.ErrNotFound.
func (db *DB) Anomaly(ctx context.Context, fingerprint string) (egressd.Anomaly, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+anomalyColumns+` FROM anomalies a JOIN apps p ON p.id = a.app_id
WHERE a.fingerprint = $1`, fingerprint)
	if err != nil {
		return egressd.Anomaly{}, wrap(err, "read anomaly %s", fingerprint)
	}
	a, err := pgx.CollectExactlyOneRow(rows, func(row pgx.CollectableRow) (egressd.Anomaly, error) {
		var s anomalyScan
		if err := row.Scan(s.dest()...); err != nil {
			return egressd.Anomaly{}, err
		}
		return s.anomaly(), nil
	})
	if err != nil {
		return egressd.Anomaly{}, wrap(err, "read anomaly %s", fingerprint)
	}
	return a, nil
}

// The listing's filter and cursor are read models of the root package;
// these aliases keep the names callers of this package know.
type (
	// AnomalyState is egressd.AnomalyState.
	AnomalyState = egressd.AnomalyState
	// AnomalyFilter is egressd.AnomalyFilter.
	AnomalyFilter = egressd.AnomalyFilter
	// AnomalyCursor is egressd.AnomalyCursor.
	AnomalyCursor = egressd.AnomalyCursor
)

// Anomaly states a listing can select.
const (
	AnomaliesAll      = egressd.AnomaliesAll
	AnomaliesFiring   = egressd.AnomaliesFiring
	AnomaliesResolved = egressd.AnomaliesResolved
)

// Listing limits.
const (
	// DefaultAnomalyLimit is the page size of a filter without a Limit.
	DefaultAnomalyLimit = egressd.DefaultPageSize
	// MaxAnomalyLimit is the largest page; a larger Limit is lowered to it.
	MaxAnomalyLimit = egressd.MaxPageSize
)

// Anomalies returns the anomalies f selects, newest first (by start time,
// then by fingerprint, descending). Pages never skip or repeat an anomaly,
// whatever is recorded between two calls.
func (db *DB) Anomalies(ctx context.Context, f AnomalyFilter) ([]egressd.Anomaly, error) {
	limit, err := egressd.PageSize("list anomalies", f.Limit)
	if err != nil {
		return nil, err
	}
	var (
		conds []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	switch f.State {
	case AnomaliesAll:
	case AnomaliesFiring:
		conds = append(conds, "a.resolved_at IS NULL")
	case AnomaliesResolved:
		conds = append(conds, "a.resolved_at IS NOT NULL")
	default:
		return nil, egressd.Errorf(egressd.EINVALID, "list anomalies: unknown state %d", f.State)
	}
	if f.App != nil {
		conds = append(conds, fmt.Sprintf("p.cluster = %s AND p.namespace = %s AND p.name = %s",
			arg(f.App.Cluster), arg(f.App.Namespace), arg(f.App.Name)))
	}
	if f.Kind != "" {
		conds = append(conds, "a.kind = "+arg(string(f.Kind)))
	}
	if !f.Since.IsZero() {
		conds = append(conds, "a.started_at >= "+arg(f.Since))
	}
	if f.After != nil {
		conds = append(conds, fmt.Sprintf("(a.started_at, a.fingerprint) < (%s, %s)", arg(f.After.Time), arg(f.After.Fingerprint)))
	}
	sql := `SELECT ` + anomalyColumns + ` FROM anomalies a JOIN apps p ON p.id = a.app_id`
	if len(conds) > 0 {
		sql += "\nWHERE " + strings.Join(conds, " AND ")
	}
	sql += "\nORDER BY a.started_at DESC, a.fingerprint DESC LIMIT " + arg(limit)

	rows, err := db.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, wrap(err, "list anomalies")
	}
	out, err := collectAnomalies(rows)
	if err != nil {
		return nil, wrap(err, "list anomalies")
	}
	return out, nil
}

// anomalyColumns reads an anomaly from anomalies a joined with apps p, in
// the order of anomalyScan.dest.
const anomalyColumns = `a.fingerprint, a.kind, p.cluster, p.namespace, p.name,
    a.destination, a.port, a.protocol, a.started_at, a.pod, a.node, a.verdict, a.name_source,
    a.baseline_source, a.summary, a.details, a.resolved_at, a.severity, a.evidence`

// collectAnomalies reads rows of anomalyColumns and closes rows.
func collectAnomalies(rows pgx.Rows) ([]egressd.Anomaly, error) {
	var (
		out []egressd.Anomaly
		s   anomalyScan
	)
	_, err := pgx.ForEachRow(rows, s.dest(), func() error {
		out = append(out, s.anomaly())
		return nil
	})
	return out, err
}

// anomalyScan holds one row of anomalyColumns.
type anomalyScan struct {
	a          egressd.Anomaly
	kind       string
	port       int32
	verdict    int16
	nameSource int16
	details    map[string]string
	resolvedAt *time.Time
	severity   string
	evidence   *egressd.Evidence
}

func (s *anomalyScan) dest() []any {
	return []any{
		&s.a.Fingerprint, &s.kind, &s.a.App.Cluster, &s.a.App.Namespace, &s.a.App.Name,
		&s.a.Destination.Name, &s.port, &s.a.Destination.Protocol, &s.a.Time, &s.a.Pod, &s.a.Node,
		&s.verdict, &s.nameSource, &s.a.BaselineSource, &s.a.Summary, &s.details, &s.resolvedAt,
		&s.severity, &s.evidence,
	}
}

// anomaly returns the scanned anomaly, with times in UTC and no empty
// details map.
func (s *anomalyScan) anomaly() egressd.Anomaly {
	a := s.a
	a.Kind = egressd.AnomalyKind(s.kind)
	a.Destination.Port = uint16(s.port)
	a.Verdict = egressd.Verdict(s.verdict)
	a.NameSource = egressd.NameSource(s.nameSource)
	a.Time = a.Time.UTC()
	a.Details = nil
	if len(s.details) > 0 {
		a.Details = s.details
	}
	a.ResolvedAt = time.Time{}
	if s.resolvedAt != nil {
		a.ResolvedAt = s.resolvedAt.UTC()
	}
	a.Severity = egressd.Severity(s.severity)
	a.Evidence = egressd.Evidence{}
	if s.evidence != nil {
		a.Evidence = *s.evidence
		a.Evidence.ClusterFirstSeen = utc(a.Evidence.ClusterFirstSeen)
		a.Evidence.AppFirstSeen = utc(a.Evidence.AppFirstSeen)
	}
	// Scanning into the same map or struct again would reuse it.
	s.details, s.evidence = nil, nil
	return a
}
