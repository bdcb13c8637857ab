package baseline_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/baseline"
)

func siblings(t *testing.T, format string, n int, ports ...string) []egressd.BaselineDestination {
	var out []egressd.BaselineDestination
	for i := range n {
		out = append(out, dest(t, fmt.Sprintf(format, i+1), ports...))
	}
	return out
}

func TestSuggest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		dests   []egressd.BaselineDestination
		pattern string // "" for none
		warn    bool
	}{
		{name: "buckets under a shared cloud endpoint warn", dests: siblings(t, "acme-tenant-%03d.s3.amazonaws.com", 12, "443/TCP"),
			pattern: "acme-tenant-0*.s3.amazonaws.com", warn: true},
		{name: "own storage names keep prefix and suffix", dests: siblings(t, "t%d-logs.storage.example.com", 6, "443/TCP"),
			pattern: "t*-logs.storage.example.com"},
		{name: "nothing shared in the label", dests: append(siblings(t, "a%d.api.example.org", 4, "443/TCP"), dest(t, "zz.api.example.org", "443/TCP")),
			pattern: "*.api.example.org"},
		{name: "too few", dests: siblings(t, "t%d.storage.example.com", baseline.MinSuggestionEvidence-1, "443/TCP")},
		{name: "never above a registrable domain", dests: siblings(t, "site%d.com", 8, "443/TCP")},
		{name: "never above a registrable domain, two-label suffix", dests: siblings(t, "shop%d.co.uk", 8, "443/TCP")},
		{name: "addresses are not names", dests: siblings(t, "10.0.0.%d", 8, "443/TCP")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := baseline.Suggest(tt.dests)
			if tt.pattern == "" {
				require.Empty(t, got)
				return
			}
			require.Len(t, got, 1)
			s := got[0]
			require.Equal(t, tt.pattern, s.Pattern)
			require.Equal(t, len(tt.dests), s.Evidence)
			require.Equal(t, ports(t, "443/TCP"), s.Ports)
			require.Len(t, s.Examples, 3)
			require.Equal(t, tt.warn, s.Warning != "", s.Warning)
			// It covers every name of its evidence, and a name of another
			// shape only when that shape is the evidence's.
			for _, d := range tt.dests {
				require.True(t, baseline.MatchName(s.Pattern, d.Name), d.Name)
			}
			require.False(t, baseline.MatchName(s.Pattern, "x.y."+strings.SplitN(tt.dests[0].Name, ".", 2)[1]), "one label only")
		})
	}
	require.False(t, baseline.MatchName("t*-logs.storage.example.com", "backup.storage.example.com"))
}

// TestExportSuggestsNeverApplies: export of an app with many sibling bucket
// names writes a suggestion the detector and the policy ignore, and diff
// shows it; a second export changes nothing.
func TestExportSuggestsNeverApplies(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	live := egressd.Baseline{Namespace: "backup", App: "restic", Destinations: append(siblings(t, "acme-tenant-%03d.s3.amazonaws.com", 12, "443/TCP"),
		dest(t, "api.example.com", "443/TCP"))}
	diffs, err := baseline.Diff(dir, []egressd.Baseline{live}, baseline.ExportOptions{})
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, baseline.WriteDiff(&out, diffs))
	require.Contains(t, out.String(), "backup/restic: suggests acme-tenant-0*.s3.amazonaws.com 443/TCP (covers 12 listed names, such as acme-tenant-001.s3.amazonaws.com")
	require.Contains(t, out.String(), "backup/restic:   warning: the pattern spans names anyone can register under the shared endpoint s3.amazonaws.com (public suffix list): another owner's acme-tenant-0attacker.s3.amazonaws.com would be allowed too")

	_, err = baseline.Export(dir, []egressd.Baseline{live}, baseline.ExportOptions{})
	require.NoError(t, err)
	data, err := os.ReadFile(filepath.Join(dir, "backup", "restic.json"))
	require.NoError(t, err)
	golden(t, "suggest/restic.json", data)
	res, err := baseline.Export(dir, []egressd.Baseline{live}, baseline.ExportOptions{})
	require.NoError(t, err)
	require.Len(t, res.Unchanged, 1)

	bs, err := baseline.LoadDir(dir)
	require.NoError(t, err)
	require.Len(t, bs[0].Suggestions, 1)
	m := baseline.NewMatcher(bs[0])
	require.True(t, m.Match("acme-tenant-001.s3.amazonaws.com", 443, "TCP"))
	require.False(t, m.Match("acme-tenant-999.s3.amazonaws.com", 443, "TCP"), "the detector ignores suggestions")
	set, err := baseline.Policies(bs, baseline.PolicyOptions{})
	require.NoError(t, err)
	require.NotContains(t, string(set.Policies[0].YAML), "acme-tenant-0*", "the policy ignores suggestions")

	// Moved into destinations by a person: the names fold into it and the
	// suggestion goes.
	moved := strings.Replace(string(data), `"destinations": [`, `"destinations": [
    {"name": "acme-tenant-0*.s3.amazonaws.com", "ports": ["443/TCP"]},`, 1)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "backup", "restic.json"), []byte(moved), 0o644))
	_, err = baseline.Export(dir, []egressd.Baseline{live}, baseline.ExportOptions{})
	require.NoError(t, err)
	bs, err = baseline.LoadDir(dir)
	require.NoError(t, err)
	require.Empty(t, bs[0].Suggestions)
	require.Len(t, bs[0].Destinations, 2)
}
