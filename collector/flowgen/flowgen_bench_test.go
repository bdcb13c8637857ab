package flowgen_test

import (
	"io"
	"testing"
	"time"

	"github.com/egressd/egressd/collector/flowgen"
)

func BenchmarkGenerate(b *testing.B) {
	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"day", 24 * time.Hour}, {"week", week}} {
		b.Run(d.name, func(b *testing.B) {
			s := flowgen.HomeLab(captureStart, d.d)
			b.ReportAllocs()
			var n int
			for b.Loop() {
				resps, err := s.Generate()
				if err != nil {
					b.Fatal(err)
				}
				n = len(resps)
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "responses/s")
		})
	}
}

func BenchmarkWriteJSONLines(b *testing.B) {
	resps, err := flowgen.HomeLab(captureStart, 24*time.Hour).Generate()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := flowgen.WriteJSONLines(io.Discard, resps); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(resps))*float64(b.N)/b.Elapsed().Seconds(), "responses/s")
}
