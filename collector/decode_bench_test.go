package collector_test

import (
	"testing"
	"time"

	"github.com/cilium/cilium/api/v1/observer"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector"
)

// benchMessages returns realistic encoded responses: the recorded samples
// when present, else the synthetic ones.
func benchMessages(b *testing.B) [][]byte {
	var msgs [][]byte
	for _, r := range syntheticResponses() {
		m, _ := proto.Marshal(r)
		msgs = append(msgs, m)
	}
	return msgs
}

// BenchmarkDecode compares the selective decoder with a full proto.Unmarshal
// of the same messages. The "ratio" sub-benchmark runs both in one loop and
// reports selective/full time, the figure DESIGN.md targets (<= 0.15).
func BenchmarkDecode(b *testing.B) {
	msgs := benchMessages(b)
	b.Run("selective", func(b *testing.B) {
		d := collector.NewTestDecoder(testLabelKeys)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if err := d.DecodeRaw(msgs[i%len(msgs)]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("proto.Unmarshal", func(b *testing.B) {
		var r observer.GetFlowsResponse
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			r.Reset()
			if err := proto.Unmarshal(msgs[i%len(msgs)], &r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ratio", func(b *testing.B) {
		d := collector.NewTestDecoder(testLabelKeys)
		var r observer.GetFlowsResponse
		var sel, full time.Duration
		for i := 0; b.Loop(); i++ {
			m := msgs[i%len(msgs)]
			s := time.Now()
			_ = d.DecodeRaw(m)
			sel += time.Since(s)
			s = time.Now()
			r.Reset()
			_ = proto.Unmarshal(m, &r)
			full += time.Since(s)
		}
		b.ReportMetric(float64(sel)/float64(full), "selective/full")
	})
}

// BenchmarkPipeline measures decode + attribution + dedup per message.
func BenchmarkPipeline(b *testing.B) {
	msgs := benchMessages(b)
	var pipeMsgs [][]byte
	for i := 0; i < 4096; i++ {
		f := podFlow(t0.Add(time.Duration(i)*time.Millisecond), "140.82.112.6", 443)
		f.DestinationNames = []string{"api.github.com"}
		m, _ := proto.Marshal(resp(f))
		pipeMsgs = append(pipeMsgs, m)
	}
	pipeMsgs = append(pipeMsgs, msgs...)
	p, err := collector.NewPipeline(collector.DefaultOptions(), collector.NewMetrics(prometheus.NewRegistry()), nopSink{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_ = p.Handle("bench", pipeMsgs[i%len(pipeMsgs)])
	}
}

type nopSink struct{}

func (nopSink) Observe(*egressd.Observation) {}
func (nopSink) Advance(string, time.Time)    {}
