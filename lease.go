package egressd

import (
	"errors"
	"time"
)

// Lease is a replica's hold on a flow source: while it holds it, that
// replica alone streams the source and writes its rollups.
//
// Expiry is judged by the database's clock, so the replicas' clocks do not
// matter. Token grows with every acquisition of the source: a rollup written
// under a lease commits only if the lease still names this holder and
// token, so a replica that lost the lease (expired and taken over, or paused
// past its TTL) can never add its counts after another took over.
type Lease struct {
	Source string
	Holder string
	Token  int64
	// Expires is when the lease lapses unless renewed (database clock).
	Expires time.Time
}

// ErrLeaseLost is matched, with errors.Is, by every error that says a lease
// is not, or no longer, held by the caller: another replica holds the
// source, or has taken it over since the lease was acquired. Such errors
// also carry the code ECONFLICT.
var ErrLeaseLost = errors.New("lease held by another replica")

// LeaseLost reports whether err says that a lease is not, or no longer,
// held by the caller (errors.Is(err, ErrLeaseLost)).
func LeaseLost(err error) bool {
	return errors.Is(err, ErrLeaseLost)
}
