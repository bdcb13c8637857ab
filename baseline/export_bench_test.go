package baseline_test

import (
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/baseline"
)

// benchLive is apps x dests live baselines, as Build returns them.
func benchLive(apps, dests int) []egressd.Baseline {
	entries := make([]egressd.WindowEntry, 0, apps*dests)
	for a := range apps {
		for d := range dests {
			port := uint16(443)
			if d%5 == 0 {
				port = 80
			}
			entries = append(entries, entry("", fmt.Sprintf("ns-%d", a%50), fmt.Sprintf("app-%d", a),
				fmt.Sprintf("api-%d.service-%d.example.com", d, a%100), port, "TCP"))
		}
	}
	return baseline.Build(entries)
}

// BenchmarkExport exports apps x 20 destinations: "new" into an empty
// directory (every file written), "unchanged" over its own output (every file
// read, merged and compared, none written). BENCHMARKS.md targets 10k apps in
// at most 2 s.
func BenchmarkExport(b *testing.B) {
	for _, apps := range []int{100, 1000, 10000} {
		live := benchLive(apps, 20)
		b.Run(fmt.Sprintf("new/apps=%d", apps), func(b *testing.B) {
			base := b.TempDir()
			b.ReportAllocs()
			start := time.Now()
			i := 0
			for b.Loop() {
				dir := filepath.Join(base, strconv.Itoa(i))
				i++
				if _, err := baseline.Export(dir, live, baseline.ExportOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(time.Since(start).Milliseconds())/float64(i), "ms/export")
		})
		b.Run(fmt.Sprintf("unchanged/apps=%d", apps), func(b *testing.B) {
			dir := b.TempDir()
			if _, err := baseline.Export(dir, live, baseline.ExportOptions{}); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			start := time.Now()
			i := 0
			for b.Loop() {
				i++
				res, err := baseline.Export(dir, live, baseline.ExportOptions{})
				if err != nil {
					b.Fatal(err)
				}
				if len(res.Written) != 0 {
					b.Fatalf("wrote %d files", len(res.Written))
				}
			}
			b.ReportMetric(float64(time.Since(start).Milliseconds())/float64(i), "ms/export")
		})
	}
}
