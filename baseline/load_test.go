package baseline_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/baseline"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
)

func file(namespace, app string, body string) string {
	return `{
  "apiVersion": "egressd.io/v1",
  "kind": "EgressBaseline",
  "namespace": "` + namespace + `",
  "app": "` + app + `",
  "destinations": [` + body + `]
}
`
}

func TestLoadDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"media/recyclarr.json": file("media", "recyclarr", `{"name": "api.github.com", "ports": ["443/TCP"]}`),
		"media/sonarr.json":    file("media", "sonarr", ``),
		"default/web.json":     file("default", "web", `{"name": "1.1.1.1", "ports": ["853/TCP"]}`),
		// Ignored.
		".git/config":               "[core]",
		".git/refs/x.json":          "not json",
		".github/renovate.json":     "{}",
		"renovate.json":             "{}",
		"README.md":                 "# baselines",
		"media/README.md":           "notes",
		"media/.recyclarr.json.swp": "swap",
		"media/.egressd-0123.tmp":   "half",
		"media/.hidden.json":        "{",
		"media/sub/deep.json":       "{",
		"media/recyclarr.json.orig": "{",
		// Errors, each naming its file.
		"media/broken.json":   "{\n  \"apiVersion\": \"egressd.io/v1\",\n  \"kind\": nope\n}\n",
		"media/mismatch.json": file("media", "other", ``),
		"other/moved.json":    file("media", "moved", ``),
		"Media/x.json":        file("media", "x", ``),
		"media/-x.json":       file("media", "-x", ``),
	})
	got, err := baseline.LoadDir(dir)
	want := []egressd.Baseline{
		{Namespace: "default", App: "web", Destinations: []egressd.BaselineDestination{dest(t, "1.1.1.1", "853/TCP")}},
		{Namespace: "media", App: "recyclarr", Destinations: []egressd.BaselineDestination{dest(t, "api.github.com", "443/TCP")}},
		{Namespace: "media", App: "sonarr"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LoadDir mismatch (-want +got):\n%s", diff)
	}
	require.Error(t, err)
	require.Equal(t, egressd.EINVALID, egressd.ErrorCode(err))
	msgs := strings.Split(err.Error(), "\n")
	wantMsgs := []string{
		filepath.Join(dir, "Media/x.json") + `: not a baseline file name: want <namespace>/<app>.json: invalid namespace "Media"`,
		filepath.Join(dir, "media/-x.json") + `: not a baseline file name: want <namespace>/<app>.json: invalid app name "-x"`,
		filepath.Join(dir, "media/broken.json") + `:3:12: invalid JSON: invalid character 'o' in literal null (expecting 'u')`,
		filepath.Join(dir, "media/mismatch.json") + `:5:10: app "other" does not match the file name "mismatch.json"`,
		filepath.Join(dir, "other/moved.json") + `:4:16: namespace "media" does not match the file's directory "other"`,
	}
	require.Len(t, msgs, len(wantMsgs), "errors:\n%s", err)
	for i, w := range wantMsgs {
		require.True(t, strings.HasPrefix(msgs[i], w), "error %d\n  %s\nwant prefix\n  %s", i, msgs[i], w)
	}
}

func TestLoadDirMissing(t *testing.T) {
	t.Parallel()
	_, err := baseline.LoadDir(filepath.Join(t.TempDir(), "nope"))
	require.ErrorContains(t, err, "open baseline directory")
}

func TestLoadDirEmpty(t *testing.T) {
	t.Parallel()
	got, err := baseline.LoadDir(t.TempDir())
	require.NoError(t, err)
	require.Empty(t, got)
}
