package baseline_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/baseline"
)

// TestLoadDirErrorsNameFileAndField: an operator fixing a committed file
// reads, in each error, the file, the line and column, and the field.
func TestLoadDirErrorsNameFileAndField(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body string
		want       []string // in the message, after the file's path
	}{
		{"bad port", `{"name": "api.github.com", "ports": ["70000/TCP"]}`, []string{":6:", "70000/TCP"}},
		{"bad protocol", `{"name": "api.github.com", "ports": ["443/FTP"]}`, []string{":6:", "443/FTP"}},
		{"ports not a list", `{"name": "api.github.com", "ports": "443/TCP"}`, []string{":6:", "ports"}},
		{"bad name", `{"name": "../../etc/passwd", "ports": ["443/TCP"]}`, []string{":6:", "../../etc/passwd"}},
		{"name not a string", `{"name": 7}`, []string{":6:", "name"}},
		{"unknown field", `{"name": "a.example", "prots": ["443/TCP"]}`, []string{":6:", "prots"}},
		{"note not a string", `{"name": "a.example", "note": true}`, []string{":6:", "note"}},
		{"control character", "{\"name\": \"a\u0000.example\"}", []string{":6:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"media/app.json": file("media", "app", tt.body)})
			_, err := baseline.LoadDir(dir)
			require.Error(t, err)
			path := filepath.Join(dir, "media", "app.json")
			require.True(t, strings.HasPrefix(err.Error(), path+":"), "the error names the file: %v", err)
			for _, w := range tt.want {
				require.Contains(t, strings.TrimPrefix(err.Error(), path), w)
			}
		})
	}
}

func TestLoadDirMissingNamesTheDirectory(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "nope")
	_, err := baseline.LoadDir(dir)
	require.ErrorContains(t, err, dir)
	f := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(f, nil, 0o644))
	_, err = baseline.LoadDir(f)
	require.ErrorContains(t, err, f)
}
