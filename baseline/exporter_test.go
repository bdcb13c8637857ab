package baseline_test

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/baseline"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
)

// sampleEntries is a small window: two namespaces, names, IPs, ports.
func sampleEntries() []egressd.WindowEntry {
	return []egressd.WindowEntry{
		entry("", "media", "recyclarr", "api.github.com", 443, "TCP"),
		entry("", "media", "recyclarr", "raw.githubusercontent.com", 443, "TCP"),
		entry("", "media", "recyclarr", "objects.githubusercontent.com", 443, "TCP"),
		entry("", "media", "recyclarr", "trash-guides.info", 443, "TCP"),
		entry("", "media", "recyclarr", "notify.example.org", 8443, "TCP"),
		entry("", "media", "sonarr", "skyhook.sonarr.tv", 443, "TCP"),
		entry("", "media", "sonarr", "api.thetvdb.com", 443, "TCP"),
		entry("", "media", "sonarr", "api.thetvdb.com", 80, "TCP"),
		entry("", "default", "web", "1.1.1.1", 853, "TCP"),
		entry("", "default", "web", "2001:db8::1", 443, "TCP"),
		entry("", "default", "web", "ntp.ubuntu.com", 123, "UDP"),
		entry("", egressd.HostNamespace, "node-1", "archive.ubuntu.com", 80, "TCP"),
	}
}

// snapshot returns every file under dir (hidden ones included) by
// slash-separated relative path.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		out[filepath.ToSlash(rel)] = string(data)
		return err
	})
	require.NoError(t, err)
	return out
}

func paths(dir string, rels ...string) []string {
	out := make([]string, len(rels))
	for i, r := range rels {
		out[i] = filepath.Join(dir, filepath.FromSlash(r))
	}
	return out
}

func TestExportGolden(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "baselines") // created by Export
	live := baseline.Build(sampleEntries())

	res, err := baseline.Export(dir, live, baseline.ExportOptions{})
	require.NoError(t, err)
	all := paths(dir, "default/web.json", "host/node-1.json", "media/recyclarr.json", "media/sonarr.json")
	if diff := cmp.Diff(baseline.ExportResult{Written: all}, res); diff != "" {
		t.Errorf("first Export result mismatch (-want +got):\n%s", diff)
	}
	files := snapshot(t, dir)
	for rel, content := range files {
		golden(t, filepath.Join("export", rel), []byte(content))
	}
	require.Len(t, files, 4)

	// Round trip: loading what was exported gives the live set back.
	loaded, err := baseline.LoadDir(dir)
	require.NoError(t, err)
	if diff := cmp.Diff(live, loaded); diff != "" {
		t.Errorf("LoadDir(Export(live)) mismatch (-want +got):\n%s", diff)
	}

	// Exporting the same window again changes no byte and writes nothing.
	res, err = baseline.Export(dir, baseline.Build(sampleEntries()), baseline.ExportOptions{})
	require.NoError(t, err)
	if diff := cmp.Diff(baseline.ExportResult{Unchanged: all}, res); diff != "" {
		t.Errorf("second Export result mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(files, snapshot(t, dir)); diff != "" {
		t.Errorf("second Export changed files (-want +got):\n%s", diff)
	}

	// Modes, whatever the umask was.
	for _, p := range all {
		fi, err := os.Stat(p)
		require.NoError(t, err)
		require.Equal(t, fs.FileMode(0o644), fi.Mode().Perm(), p)
		di, err := os.Stat(filepath.Dir(p))
		require.NoError(t, err)
		require.Equal(t, fs.FileMode(0o755), di.Mode().Perm(), filepath.Dir(p))
	}
}

// TestExportModesIgnoreUmask changes the process umask, so it must not run
// in parallel with other tests.
func TestExportModesIgnoreUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := t.TempDir()
	_, err := baseline.Export(dir, baseline.Build(sampleEntries()), baseline.ExportOptions{Sync: true})
	require.NoError(t, err)
	fi, err := os.Stat(filepath.Join(dir, "media", "recyclarr.json"))
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o644), fi.Mode().Perm())
	di, err := os.Stat(filepath.Join(dir, "media"))
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o755), di.Mode().Perm())
}

func TestExportKeepsHandEdits(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	before, err := os.ReadFile(filepath.Join("testdata", "handedit", "before.json"))
	require.NoError(t, err)
	writeFiles(t, dir, map[string]string{"media/recyclarr.json": string(before)})

	live := baseline.Build(sampleEntries())
	res, err := baseline.Export(dir, live, baseline.ExportOptions{})
	require.NoError(t, err)
	require.Contains(t, res.Written, filepath.Join(dir, "media", "recyclarr.json"))
	after, err := os.ReadFile(filepath.Join(dir, "media", "recyclarr.json"))
	require.NoError(t, err)
	golden(t, filepath.Join("handedit", "after.json"), after)

	got, err := baseline.Unmarshal(after, "after.json")
	require.NoError(t, err)
	want := egressd.Baseline{
		Namespace: "media", App: "recyclarr", Unbounded: true,
		Note: "Syncs quality profiles from TRaSH guides; may fetch anything on GitHub.",
		Destinations: []egressd.BaselineDestination{
			// Kept without traffic: trash-guides.info itself is not
			// below it, so it is listed on its own.
			dest(t, "**.trash-guides.info", "443/TCP"),
			// The pattern absorbed objects. and raw.githubusercontent.com.
			noted(t, "release assets and raw files", "*.githubusercontent.com", "443/TCP"),
			dest(t, "api.github.com", "443/TCP"),
			// Kept for its note, gaining the live port.
			noted(t, "monthly digest, rarely in the window", "notify.example.org", "443/TCP", "8443/TCP"),
			dest(t, "trash-guides.info", "443/TCP"),
			// stale.example.com left with the window.
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("re-exported hand-edited file mismatch (-want +got):\n%s", diff)
	}

	// A second export keeps everything as it is.
	res, err = baseline.Export(dir, live, baseline.ExportOptions{})
	require.NoError(t, err)
	require.Empty(t, res.Written)
	again, err := os.ReadFile(filepath.Join(dir, "media", "recyclarr.json"))
	require.NoError(t, err)
	require.Equal(t, string(after), string(again))
}

func TestExportPrune(t *testing.T) {
	t.Parallel()
	live := baseline.Build(sampleEntries())
	absent := file("gone", "old", `{"name": "ftp.example.com", "ports": ["21/TCP"]}`)
	setup := func(t *testing.T) string {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{
			"gone/old.json":         absent,
			"gone/.keep":            "",
			"solo/old.json":         file("solo", "old", ``),
			"media/retired.json":    file("media", "retired", ``),
			"media/broken.json":     "{",
			"media/notes.md":        "kept",
			"Invalid/whatever.json": "{}",
		})
		return dir
	}

	t.Run("default keeps files of absent apps", func(t *testing.T) {
		t.Parallel()
		dir := setup(t)
		res, err := baseline.Export(dir, live, baseline.ExportOptions{})
		require.NoError(t, err, "files of absent apps are not even read")
		require.Empty(t, res.Pruned)
		files := snapshot(t, dir)
		require.Equal(t, absent, files["gone/old.json"])
		require.Contains(t, files, "media/retired.json")
	})

	t.Run("prune", func(t *testing.T) {
		t.Parallel()
		dir := setup(t)
		res, err := baseline.Export(dir, live, baseline.ExportOptions{Prune: true})
		require.Error(t, err)
		msg := err.Error()
		require.Contains(t, msg, filepath.Join(dir, "media", "broken.json")+":1:2: invalid JSON: unexpected end of file (not pruned)")
		require.Contains(t, msg, filepath.Join(dir, "Invalid", "whatever.json")+": not a baseline file name")
		require.Equal(t, paths(dir, "gone/old.json", "media/retired.json", "solo/old.json"), res.Pruned)
		require.Len(t, res.Written, 4)

		files := snapshot(t, dir)
		require.NotContains(t, files, "gone/old.json")
		require.NotContains(t, files, "media/retired.json")
		require.Contains(t, files, "media/broken.json", "a broken file is never pruned")
		require.Contains(t, files, "gone/.keep")
		require.Contains(t, files, "media/notes.md")
		_, err = os.Stat(filepath.Join(dir, "solo"))
		require.ErrorIs(t, err, fs.ErrNotExist, "a namespace directory emptied by pruning is removed")
		_, err = os.Stat(filepath.Join(dir, "gone"))
		require.NoError(t, err, "a directory with other files stays")
	})
}

func TestExportBrokenFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	broken := file("media", "recyclarr", `{"name": "api.github.com", "ports": ["443/TCP"]},
    {"name": "api.github.com", "ports": ["80/TCP"]}`)
	writeFiles(t, dir, map[string]string{"media/recyclarr.json": broken})

	res, err := baseline.Export(dir, baseline.Build(sampleEntries()), baseline.ExportOptions{})
	require.Error(t, err)
	require.Equal(t, egressd.EINVALID, egressd.ErrorCode(err))
	require.Equal(t, filepath.Join(dir, "media", "recyclarr.json")+`:7:14: destination "api.github.com" is listed twice (also at 6:29): list each name once with all its ports (file left untouched)`, err.Error())
	require.Equal(t, paths(dir, "default/web.json", "host/node-1.json", "media/sonarr.json"), res.Written, "other apps are still written")
	require.Equal(t, broken, snapshot(t, dir)["media/recyclarr.json"])
}

func TestExportInvalidLive(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	live := []egressd.Baseline{
		{Namespace: "media", App: "../../escape", Destinations: []egressd.BaselineDestination{dest(t, "a.com", "443/TCP")}},
		{Namespace: "media", App: "twice", Destinations: []egressd.BaselineDestination{dest(t, "a.com", "443/TCP")}},
		{Namespace: "media", App: "twice", Destinations: []egressd.BaselineDestination{dest(t, "b.com", "443/TCP")}},
		{Namespace: "media", App: "badname", Destinations: []egressd.BaselineDestination{dest(t, "not a name", "443/TCP")}},
		{Namespace: "media", App: "ok", Destinations: []egressd.BaselineDestination{dest(t, "a.com", "443/TCP")}},
	}
	res, err := baseline.Export(dir, live, baseline.ExportOptions{Prune: true})
	require.Error(t, err)
	msg := err.Error()
	require.Contains(t, msg, `live baseline: invalid app name "../../escape"`)
	require.Contains(t, msg, filepath.Join(dir, "media", "twice.json")+": app media/twice appears 2 times in the live set (file left untouched)")
	require.Contains(t, msg, filepath.Join(dir, "media", "badname.json")+`: baseline media/badname: invalid destination name "not a name"`)
	require.Equal(t, baseline.ExportResult{Written: paths(dir, "media/ok.json")}, res)
	require.Equal(t, []string{"media/ok.json"}, keys(snapshot(t, dir)))
}

// TestExportStaysInside: a symbolic link in the directory cannot make
// Export write elsewhere.
func TestExportStaysInside(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	dir := filepath.Join(base, "baselines")
	outside := filepath.Join(base, "outside")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.MkdirAll(outside, 0o755))
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, "media")))

	res, err := baseline.Export(dir, baseline.Build(sampleEntries()), baseline.ExportOptions{})
	require.Error(t, err)
	require.Contains(t, err.Error(), filepath.Join(dir, "media", "recyclarr.json"))
	require.Empty(t, snapshot(t, outside), "nothing written through the link")
	require.Equal(t, paths(dir, "default/web.json", "host/node-1.json"), res.Written)
}

func TestExportNoTemporaryFilesLeft(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	live := baseline.Build(sampleEntries())
	_, err := baseline.Export(dir, live, baseline.ExportOptions{})
	require.NoError(t, err)
	live[0].Destinations = append(live[0].Destinations, dest(t, "new.example.com", "443/TCP"))
	_, err = baseline.Export(dir, live, baseline.ExportOptions{Sync: true})
	require.NoError(t, err)
	for rel := range snapshot(t, dir) {
		require.False(t, strings.Contains(rel, "/."), "left over: %s", rel)
	}
}

func TestExportWritesOnlyChangedFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	live := baseline.Build(sampleEntries())
	_, err := baseline.Export(dir, live, baseline.ExportOptions{})
	require.NoError(t, err)
	before, err := os.Stat(filepath.Join(dir, "media", "sonarr.json"))
	require.NoError(t, err)

	for i := range live {
		if live[i].App == "recyclarr" {
			live[i].Destinations = live[i].Destinations[1:]
		}
	}
	res, err := baseline.Export(dir, live, baseline.ExportOptions{})
	require.NoError(t, err)
	require.Equal(t, paths(dir, "media/recyclarr.json"), res.Written)
	require.Len(t, res.Unchanged, 3)
	after, err := os.Stat(filepath.Join(dir, "media", "sonarr.json"))
	require.NoError(t, err)
	require.True(t, os.SameFile(before, after), "an unchanged file is not replaced")
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestDiff(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	live := baseline.Build(sampleEntries())
	_, err := baseline.Export(dir, live, baseline.ExportOptions{})
	require.NoError(t, err)

	// Drift: sonarr changes destinations and ports, web is reformatted by
	// hand, node-1 leaves the window, a new app appears.
	writeFiles(t, dir, map[string]string{
		"default/web.json": file("default", "web", `
    {"name": "NTP.ubuntu.com", "ports": ["123/udp"]}, {"name": "2001:db8::1", "ports": ["443"]},
    {"name": "1.1.1.1", "ports": ["853/TCP"]}`),
	})
	var next []egressd.Baseline
	for _, b := range live {
		switch b.App {
		case "node-1":
			continue
		case "sonarr":
			b.Destinations = []egressd.BaselineDestination{
				dest(t, "api.thetvdb.com", "443/TCP", "8443/TCP"),
				dest(t, "services.sonarr.tv", "443/TCP"),
			}
		}
		next = append(next, b)
	}
	next = append(next, egressd.Baseline{Namespace: "monitoring", App: "grafana", Destinations: []egressd.BaselineDestination{
		dest(t, "grafana.com", "443/TCP"),
	}})
	opts := baseline.ExportOptions{Prune: true}

	before := snapshot(t, dir)
	diffs, err := baseline.Diff(dir, next, opts)
	require.NoError(t, err)
	require.Equal(t, before, snapshot(t, dir), "Diff changes nothing")

	var report bytes.Buffer
	require.NoError(t, baseline.WriteDiff(&report, diffs))
	golden(t, "diff.txt", []byte(strings.ReplaceAll(report.String(), dir+string(filepath.Separator), "DIR/")))

	want := []baseline.AppDiff{
		{Namespace: "default", App: "web", Path: filepath.Join(dir, "default", "web.json"), Change: baseline.ChangeUpdate},
		{Namespace: "host", App: "node-1", Path: filepath.Join(dir, "host", "node-1.json"), Change: baseline.ChangePrune,
			Removed: []egressd.BaselineDestination{dest(t, "archive.ubuntu.com", "80/TCP")}},
		{Namespace: "media", App: "sonarr", Path: filepath.Join(dir, "media", "sonarr.json"), Change: baseline.ChangeUpdate,
			Added:   []egressd.BaselineDestination{dest(t, "api.thetvdb.com", "8443/TCP"), dest(t, "services.sonarr.tv", "443/TCP")},
			Removed: []egressd.BaselineDestination{dest(t, "api.thetvdb.com", "80/TCP"), dest(t, "skyhook.sonarr.tv", "443/TCP")}},
		{Namespace: "monitoring", App: "grafana", Path: filepath.Join(dir, "monitoring", "grafana.json"), Change: baseline.ChangeCreate,
			Added: []egressd.BaselineDestination{dest(t, "grafana.com", "443/TCP")}},
	}
	if diff := cmp.Diff(want, diffs); diff != "" {
		t.Errorf("Diff mismatch (-want +got):\n%s", diff)
	}

	// Diff agrees with Export: it names exactly the files Export changes...
	res, err := baseline.Export(dir, next, opts)
	require.NoError(t, err)
	var changed []string
	for _, d := range diffs {
		changed = append(changed, d.Path)
	}
	require.ElementsMatch(t, changed, append(append([]string{}, res.Written...), res.Pruned...))
	// ...and after Export there is no drift.
	diffs, err = baseline.Diff(dir, next, opts)
	require.NoError(t, err)
	require.Empty(t, diffs)
	report.Reset()
	require.NoError(t, baseline.WriteDiff(&report, diffs))
	require.Empty(t, report.String())
}

func TestDiffMissingDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "nope")
	live := baseline.Build(sampleEntries())
	diffs, err := baseline.Diff(dir, live, baseline.ExportOptions{Prune: true})
	require.NoError(t, err)
	require.Len(t, diffs, len(live))
	for i, d := range diffs {
		require.Equal(t, baseline.ChangeCreate, d.Change)
		if diff := cmp.Diff(live[i].Destinations, d.Added); diff != "" {
			t.Errorf("Added mismatch (-want +got):\n%s", diff)
		}
	}
	_, err = os.Stat(dir)
	require.ErrorIs(t, err, fs.ErrNotExist, "Diff creates nothing")
}

func TestDiffBrokenFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"media/sonarr.json": "{}"})
	diffs, err := baseline.Diff(dir, baseline.Build(sampleEntries()), baseline.ExportOptions{})
	require.ErrorContains(t, err, filepath.Join(dir, "media", "sonarr.json")+`:1:1: missing field "apiVersion"`)
	require.Len(t, diffs, 3, "the other apps are still compared")
}
