package collector_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
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

// BenchmarkReplayLine reads the week capture's lines, without the
// pipeline: with the fast JSON path, and with protojson (the slow path,
// which every line took before the fast path).
func BenchmarkReplayLine(b *testing.B) {
	f, err := os.Open("flowgen/testdata/homelab-week.jsonl.gz")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		b.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		b.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
	b.Run("fast", func(b *testing.B) {
		r := collector.NewFastReader()
		b.ReportAllocs()
		b.SetBytes(int64(len(data) / len(lines)))
		i := 0
		for b.Loop() {
			if !r.Read(lines[i%len(lines)]) {
				b.Fatalf("line %d left to protojson", i%len(lines)+1)
			}
			i++
		}
	})
	b.Run("protojson", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data) / len(lines)))
		i := 0
		for b.Loop() {
			if _, err := collector.ProtojsonLine(lines[i%len(lines)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
