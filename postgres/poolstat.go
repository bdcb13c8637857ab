package postgres

// PoolStat is a snapshot of one connection pool.
type PoolStat struct {
	// Max is the most connections the pool opens.
	Max int32
	// Acquired is how many connections are in use.
	Acquired int32
	// Waits counts the acquires so far that found no idle connection and
	// waited for one to be released or opened.
	Waits int64
}

// PoolStat returns a snapshot of db's pool: the main one, or the API's for
// what API returns. With both, a test can tell which of them a load takes.
func (db *DB) PoolStat() PoolStat {
	s := db.pool.Stat()
	return PoolStat{Max: s.MaxConns(), Acquired: s.AcquiredConns(), Waits: s.EmptyAcquireCount()}
}
