package baseline_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/baseline"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./baseline -update to create the golden file")
	require.Equal(t, string(want), string(got), "golden file %s differs; run go test ./baseline -update if the change is intended", path)
}

// ports parses "443/TCP" strings.
func ports(t testing.TB, ss ...string) []egressd.Port {
	t.Helper()
	out := make([]egressd.Port, len(ss))
	for i, s := range ss {
		n, proto, err := egressd.ParsePort(s)
		require.NoError(t, err)
		out[i] = egressd.Port{Number: n, Protocol: proto}
	}
	return out
}

// dest builds a destination from a name and ports.
func dest(t testing.TB, name string, ps ...string) egressd.BaselineDestination {
	t.Helper()
	return egressd.BaselineDestination{Name: name, Ports: ports(t, ps...)}
}

// noted builds a destination with a note.
func noted(t testing.TB, note, name string, ps ...string) egressd.BaselineDestination {
	t.Helper()
	d := dest(t, name, ps...)
	d.Note = note
	return d
}

// writeFiles creates files under dir, keyed by slash-separated path.
func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(dir, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	}
}

// mustMarshal marshals b or fails the test.
func mustMarshal(t testing.TB, b egressd.Baseline) []byte {
	t.Helper()
	data, err := baseline.Marshal(b)
	require.NoError(t, err)
	return data
}
