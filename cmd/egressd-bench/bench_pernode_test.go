package main

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/postgres/pgtest"
)

// TestBenchPerNode runs the per-node figures small: 1, 2 and 4 collectors
// each ingest the flows (the harness fails when the database counted other
// than what they observed), and every figure is printed positive, min to
// max.
func TestBenchPerNode(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": string(pgtest.URL(t))}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--only", "pernode", "--runs", "1", "--flows", "5000", "--apps", "20"},
		&stdout, &stderr, func(k string) string { return env[k] })
	require.Equal(t, 0, code, stderr.String())
	positive := `[0-9.]*[1-9][0-9.]*`
	for _, n := range []int{1, 2, 4} {
		names := []string{"ingest", "rows written", "rows/1k flows", "flush p50", "flush max"}
		if n > 1 {
			names = append(names, "/1 ingest", "/1 rows")
		}
		for _, name := range names {
			full := fmt.Sprintf("pernode %d %s", n, name)
			if name[0] == '/' {
				full = fmt.Sprintf("pernode %d%s", n, name)
			}
			require.Regexp(t, `(?m)^`+regexp.QuoteMeta(full)+` +median +`+positive+` +min +`+positive+` +max +`+positive+` `, stdout.String(), "figure %q", full)
		}
	}
	require.Regexp(t, `(?m)^     run 1: 5000 flows in .*, [1-9][0-9]* flushes`, stdout.String())
}
