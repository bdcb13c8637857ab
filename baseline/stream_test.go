package baseline_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/baseline"
)

// TestExporterMatchesExport feeds an Exporter the baselines Export gets,
// one at a time and more than a batch of them, into a directory with hand
// edits, broken files and files of absent apps, with and without pruning:
// the same files, result and errors.
func TestExporterMatchesExport(t *testing.T) {
	t.Parallel()
	entries := sampleEntries()
	for a := range 1200 { // past one batch of 512
		entries = append(entries, entry("", fmt.Sprintf("ns-%d", a%7), fmt.Sprintf("app-%d", a), fmt.Sprintf("api.v%d.example.com", a%13), 443, "TCP"))
	}
	live := baseline.Build(entries)
	setup := func(t *testing.T) string {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{
			"gone/old.json":      file("gone", "old", `{"name": "ftp.example.com", "ports": ["21/TCP"]}`),
			"media/retired.json": file("media", "retired", ``),
			"media/sonarr.json":  file("media", "sonarr", `{"name": "*.sonarr.tv", "ports": ["443/TCP"], "note": "cdn"}`),
			"media/broken.json":  "{",
			"ns-3/app-3.json":    file("ns-3", "app-3", `{"name": "old.example.com", "ports": ["443/TCP"]}`),
		})
		return dir
	}
	for _, prune := range []bool{false, true} {
		t.Run(fmt.Sprintf("prune=%v", prune), func(t *testing.T) {
			t.Parallel()
			opts := baseline.ExportOptions{Prune: prune}
			wantDir, gotDir := setup(t), setup(t)
			want, wantErr := baseline.Export(wantDir, live, opts)
			x, err := baseline.NewExporter(gotDir, opts)
			require.NoError(t, err)
			for _, b := range live {
				x.Add(b)
			}
			got, gotErr := x.Close()

			rel := func(dir string, ps []string) []string {
				out := make([]string, len(ps))
				for i, p := range ps {
					out[i], _ = filepath.Rel(dir, p)
				}
				return out
			}
			require.Len(t, got.Written, len(live), "every live app's file written")
			for _, l := range [][2][]string{{want.Written, got.Written}, {want.Unchanged, got.Unchanged}, {want.Pruned, got.Pruned}} {
				if diff := cmp.Diff(rel(wantDir, l[0]), rel(gotDir, l[1])); diff != "" {
					t.Errorf("result (-Export +Exporter):\n%s", diff)
				}
			}
			if diff := cmp.Diff(snapshot(t, wantDir), snapshot(t, gotDir)); diff != "" {
				t.Errorf("files (-Export +Exporter):\n%s", diff)
			}
			require.Equal(t, wantErr == nil, gotErr == nil, "Export: %v; Exporter: %v", wantErr, gotErr)
		})
	}
}

// TestExporterAddedTwice reports an app added twice and keeps its first
// baseline.
func TestExporterAddedTwice(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	x, err := baseline.NewExporter(dir, baseline.ExportOptions{})
	require.NoError(t, err)
	first := egressd.Baseline{Namespace: "media", App: "sonarr", Destinations: []egressd.BaselineDestination{dest(t, "api.thetvdb.com", "443/TCP")}}
	second := egressd.Baseline{Namespace: "media", App: "sonarr", Destinations: []egressd.BaselineDestination{dest(t, "evil.example.com", "443/TCP")}}
	x.Add(first)
	x.Add(second)
	res, err := x.Close()
	require.ErrorContains(t, err, "app media/sonarr added twice to the export (the second baseline is ignored)")
	require.Equal(t, paths(dir, "media/sonarr.json"), res.Written)
	require.Equal(t, string(mustMarshal(t, first)), snapshot(t, dir)["media/sonarr.json"])
}

// TestExporterAbandon writes the batches already queued, no more, and
// prunes nothing: the apps not yet added are not absent.
func TestExporterAbandon(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"gone/old.json": file("gone", "old", ``)})
	x, err := baseline.NewExporter(dir, baseline.ExportOptions{Prune: true})
	require.NoError(t, err)
	var entries []egressd.WindowEntry
	for a := range 600 {
		entries = append(entries, entry("", "ns", fmt.Sprintf("app-%03d", a), "api.example.com", 443, "TCP"))
	}
	for _, b := range baseline.Build(entries) {
		x.Add(b)
	}
	x.Abandon()
	files := snapshot(t, dir)
	require.Contains(t, files, "gone/old.json", "nothing pruned")
	require.Len(t, files, 1+512, "the first batch written, the rest not")
	_, err = os.Stat(filepath.Join(dir, "ns", "app-599.json"))
	require.True(t, os.IsNotExist(err), "an app of the last, partial batch: %v", err)
}
