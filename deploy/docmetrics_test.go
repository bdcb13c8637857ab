package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDocsNameRegisteredMetrics: every egressd metric the documentation
// names (the README, docs/, deploy/ and dashboards/ READMEs) is one that
// egressd registers, so a renamed metric cannot leave a stale name behind.
func TestDocsNameRegisteredMetrics(t *testing.T) {
	t.Parallel()
	metrics := registeredMetrics(t)
	files, err := filepath.Glob("../docs/*.md")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	files = append(files, "../README.md", "README.md", "../dashboards/README.md")
	// Names that start like a metric and are not one.
	notMetrics := map[string]bool{"egressd_triage": true} // the triage session cookie
	name := regexp.MustCompile(`\begressd_[a-z0-9_]*[a-z0-9](_\*)?`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range name.FindAllString(string(b), -1) {
			if notMetrics[m] {
				continue
			}
			if prefix, ok := strings.CutSuffix(m, "*"); ok { // egressd_detector_*
				some := false
				for n := range metrics {
					some = some || strings.HasPrefix(n, prefix)
				}
				require.True(t, some, "%s names %s, and egressd registers no such metric", f, m)
				continue
			}
			base := m
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if _, ok := metrics[base]; !ok {
					base = strings.TrimSuffix(base, suffix)
				}
			}
			require.Contains(t, metrics, base, "%s names %s, which egressd does not register", f, m)
		}
	}
}
