package baseline_test

import (
	"fmt"
	"testing"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/baseline"
)

// BenchmarkMatcher measures one Match on a baseline of 20 names and 5
// patterns: the detector's per-observation cost when the (app, destination)
// pair misses its in-memory index.
func BenchmarkMatcher(b *testing.B) {
	bl := egressd.Baseline{Namespace: "media", App: "recyclarr"}
	for i := range 20 {
		bl.Destinations = append(bl.Destinations, dest(b, fmt.Sprintf("api-%d.example.com", i), "443/TCP"))
	}
	for _, p := range []string{"*.githubusercontent.com", "**.sonarr.tv", "cdn-*.example.net", "*.*.cloudfront.net", "*.s3.amazonaws.com"} {
		bl.Destinations = append(bl.Destinations, dest(b, p, "443/TCP"))
	}
	bl.Destinations = append(bl.Destinations, dest(b, "1.1.1.1", "853/TCP"))
	m := baseline.NewMatcher(bl)
	cases := []struct {
		name, host string
		want       bool
	}{
		{"exact", "api-7.example.com", true},
		{"exact-upper", "API-7.example.com.", true},
		{"pattern", "raw.githubusercontent.com", true},
		{"pattern-deep", "a.b.c.sonarr.tv", true},
		{"ip", "1.1.1.1", false},
		{"miss", "evil.attacker.io", false},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			port := uint16(443)
			if c.name == "ip" {
				port = 53
			}
			for b.Loop() {
				if m.Match(c.host, port, "TCP") != c.want {
					b.Fatal("wrong answer")
				}
			}
		})
	}
}
