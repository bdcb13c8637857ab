package postgres_test

import (
	"testing"

	"github.com/egressd/egressd/postgres/pgtest"
)

func TestMain(m *testing.M) {
	pgtest.Main(m)
}
