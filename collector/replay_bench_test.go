package collector_test

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd/collector"
)

// BenchmarkReplay replays the committed week capture (gzip) through the
// pipeline, without storage, and reports lines/s.
func BenchmarkReplay(b *testing.B) {
	data, err := os.ReadFile("flowgen/testdata/homelab-week.jsonl.gz")
	if err != nil {
		b.Fatal(err)
	}
	lines := 0
	for b.Loop() {
		p, _ := collector.NewPipeline(collector.DefaultOptions(), collector.NewMetrics(prometheus.NewRegistry()), nopSink{})
		st, err := collector.NewReplayer().Replay(context.Background(), "week", bytes.NewReader(data), func(m []byte) error { return p.Handle("week", m) })
		if err != nil {
			b.Fatal(err)
		}
		lines += st.Lines
	}
	b.ReportMetric(float64(lines)/b.Elapsed().Seconds(), "lines/s")
}
