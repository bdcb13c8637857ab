package postgres

import "context"

// HoldAPIConn takes a connection of db's API pool until release is called,
// for tests of what a full API pool leaves to the rest of the service.
func HoldAPIConn(ctx context.Context, db *DB) (release func(), err error) {
	c, err := db.apiPool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	return c.Release, nil
}
