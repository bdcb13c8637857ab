package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/egressd/egressd"
)

// Lease is a replica's hold on a flow source (egressd.Lease).
type Lease = egressd.Lease

// LeaseLost reports whether err says that a lease is not, or no longer,
// held by the caller: AcquireLease found another holder, or RenewLease and
// WriteRollupFenced found that another replica has taken the source over.
func LeaseLost(err error) bool {
	return egressd.LeaseLost(err)
}

// leaseError is an egressd.ECONFLICT error that also matches
// egressd.ErrLeaseLost, so that callers tell it apart from other conflicts.
type leaseError struct{ err *egressd.Error }

func (e *leaseError) Error() string { return e.err.Error() }
func (e *leaseError) Unwrap() error { return e.err }

// Is makes errors.Is(err, egressd.ErrLeaseLost) hold.
func (e *leaseError) Is(target error) bool { return target == egressd.ErrLeaseLost }

func errLeaseLost(format string, args ...any) error {
	return &leaseError{egressd.Errorf(egressd.ECONFLICT, format, args...)}
}

// acquireLease takes the source when nobody holds it, when the lease has
// expired, or when holder already holds it; every acquisition gets a new
// token, so rollups fenced by an older lease value are refused.
const acquireLease = `
INSERT INTO source_leases AS l (source, holder, token, acquired_at, expires_at)
VALUES ($1, $2, 1, clock_timestamp(), clock_timestamp() + $3 * interval '1 microsecond')
ON CONFLICT (source) DO UPDATE
SET holder = excluded.holder, token = l.token + 1,
    acquired_at = excluded.acquired_at, expires_at = excluded.expires_at
WHERE l.expires_at <= clock_timestamp() OR l.holder = excluded.holder
RETURNING token, expires_at`

// AcquireLease makes holder the collector of source for ttl. When another
// replica holds an unexpired lease, it returns that lease (its holder and
// expiry, for the log) with an error for which LeaseLost holds.
func (db *DB) AcquireLease(ctx context.Context, source, holder string, ttl time.Duration) (Lease, error) {
	if ttl <= 0 {
		return Lease{}, egressd.Errorf(egressd.EINVALID, "lease of source %q: ttl must be > 0, got %s", source, ttl)
	}
	l := Lease{Source: source, Holder: holder}
	err := db.pool.QueryRow(ctx, acquireLease, source, holder, ttl.Microseconds()).Scan(&l.Token, &l.Expires)
	if err == nil {
		return l, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return Lease{}, wrap(err, "acquire lease of source %q", source)
	}
	other := Lease{Source: source}
	err = db.pool.QueryRow(ctx, `SELECT holder, token, expires_at FROM source_leases WHERE source = $1`, source).
		Scan(&other.Holder, &other.Token, &other.Expires)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return Lease{}, wrap(err, "read lease of source %q", source)
	}
	return other, errLeaseLost("source %q is collected by replica %s until %s", source, other.Holder, other.Expires.UTC().Format(time.RFC3339Nano))
}

// RenewLease extends l by ttl from now (database clock). A lease that has
// expired but that nobody took over is still renewed: no other replica has
// written under it. It fails with an error for which LeaseLost holds when
// another replica has acquired the source since l was.
func (db *DB) RenewLease(ctx context.Context, l Lease, ttl time.Duration) (Lease, error) {
	if ttl <= 0 {
		return l, egressd.Errorf(egressd.EINVALID, "lease of source %q: ttl must be > 0, got %s", l.Source, ttl)
	}
	err := db.pool.QueryRow(ctx, `
UPDATE source_leases SET expires_at = clock_timestamp() + $4 * interval '1 microsecond'
WHERE source = $1 AND holder = $2 AND token = $3
RETURNING expires_at`, l.Source, l.Holder, l.Token, ttl.Microseconds()).Scan(&l.Expires)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return l, errLeaseLost("lease of source %q lost by replica %s: another replica took it over", l.Source, l.Holder)
	case err != nil:
		return l, wrap(err, "renew lease of source %q", l.Source)
	}
	return l, nil
}

// ReleaseLease gives l up, so that a standby acquires the source at once
// instead of after the TTL. Releasing a lease already lost does nothing.
func (db *DB) ReleaseLease(ctx context.Context, l Lease) error {
	_, err := db.pool.Exec(ctx, `
UPDATE source_leases SET expires_at = clock_timestamp()
WHERE source = $1 AND holder = $2 AND token = $3`, l.Source, l.Holder, l.Token)
	if err != nil {
		return wrap(err, "release lease of source %q", l.Source)
	}
	return nil
}

// WriteRollupFenced is WriteRollup for the holder of l: in the same
// transaction, it first locks the source's lease row (FOR SHARE) and checks
// that it still names l's holder and token; if not, nothing is written and
// the error satisfies LeaseLost.
//
// The row lock makes the check hold until commit: a takeover (an UPDATE of
// that row) waits for this transaction, and the new holder reads the cursor
// after acquiring the lease, so it resumes after what this rollup counted.
// Expiry alone does not refuse the write: a lease that lapsed (a database
// outage longer than the TTL) but that nobody took over has had no other
// writer, and refusing would lose what the outage kept in memory.
//
// The lock is taken before anything else in the transaction: taking it
// after the hourly partitions could close a cycle of waits with a renewal
// queued on the row and another fenced writer.
func (db *DB) WriteRollupFenced(ctx context.Context, r *egressd.Rollup, l Lease) error {
	return db.writeRollup(ctx, r, func(ctx context.Context, tx pgx.Tx) error {
		var held bool
		err := tx.QueryRow(ctx, `
SELECT holder = $2 AND token = $3 FROM source_leases WHERE source = $1 FOR SHARE`,
			l.Source, l.Holder, l.Token).Scan(&held)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			held = false
		case err != nil:
			return wrap(err, "write rollup: check lease of source %q", l.Source)
		}
		if !held {
			return fmt.Errorf("write rollup: %w",
				errLeaseLost("lease of source %q lost by replica %s: rollup not written", l.Source, l.Holder))
		}
		return nil
	})
}
