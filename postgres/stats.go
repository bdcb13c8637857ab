package postgres

import "context"

// FlowTotal returns the flows counted over every destination, dropped ones
// included. egressd bench checks it against what it streamed.
func (db *DB) FlowTotal(ctx context.Context) (int64, error) {
	var n int64
	if err := db.pool.QueryRow(ctx, `SELECT coalesce(sum(flows), 0)::bigint FROM destinations`).Scan(&n); err != nil {
		return 0, wrap(err, "sum destination flows")
	}
	return n, nil
}
