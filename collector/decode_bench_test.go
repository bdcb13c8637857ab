package collector_test

import (
	"runtime"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/collector/flowgen"
)

// benchMessages returns realistic encoded responses: a day of flowgen's
// home lab (Cilium 1.19 shaped flows with workloads, names and DNS).
func benchMessages(b *testing.B) [][]byte {
	b.Helper()
	return marshalHomeLab(b, false)
}

// benchMessagesDistinct returns benchMessages with every endpoint made
// unique (its ID field set from the message's index): the decoder's endpoint
// cache never hits, as in a stream of endpoints never seen twice.
func benchMessagesDistinct(b *testing.B) [][]byte {
	b.Helper()
	return marshalHomeLab(b, true)
}

func marshalHomeLab(b *testing.B, distinct bool) [][]byte {
	b.Helper()
	resps, err := flowgen.HomeLab(t0, 24*time.Hour).Generate()
	if err != nil {
		b.Fatal(err)
	}
	var msgs [][]byte
	for i, r := range resps {
		if f := r.GetFlow(); distinct && f != nil {
			for _, e := range []*flowpb.Endpoint{f.Source, f.Destination} {
				if e != nil {
					e.ID = uint32(i + 1)
				}
			}
		}
		m, _ := proto.Marshal(r)
		msgs = append(msgs, m)
	}
	return msgs
}

// BenchmarkDecode compares the selective decoder with a full proto.Unmarshal
// of the same messages. The "ratio" sub-benchmark runs both in one loop and
// reports selective/full time, the figure BENCHMARKS.md targets (<= 0.15).
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
		reportRatio(b, msgs, "selective/full",
			func(m []byte) { _ = d.DecodeRaw(m) },
			func(m []byte) { r.Reset(); _ = proto.Unmarshal(m, &r) })
	})
	// The same with no endpoint ever repeated: what the decoder costs when
	// its endpoint cache cannot help.
	distinct := benchMessagesDistinct(b)
	b.Run("ratio-uncached", func(b *testing.B) {
		d := collector.NewTestDecoder(testLabelKeys)
		var r observer.GetFlowsResponse
		reportRatio(b, distinct, "selective/full",
			func(m []byte) { _ = d.DecodeRaw(m) },
			func(m []byte) { r.Reset(); _ = proto.Unmarshal(m, &r) })
	})
}

// reportRatio times a and b over the same messages, alternating batches so
// that both see the same machine, and reports time(a)/time(b). Batches keep
// the clock's own cost out of the figures, and a garbage collection between
// batches, not timed, keeps the collector that b's allocations start from
// running on a's time (which leaves b's GC cost out: the ratio errs against a).
func reportRatio(b *testing.B, msgs [][]byte, unit string, fa, fb func([]byte)) {
	const batch = 512
	var ta, tb time.Duration
	for i := 0; b.Loop(); i++ {
		off := i * batch
		s := time.Now()
		for j := 0; j < batch; j++ {
			fa(msgs[(off+j)%len(msgs)])
		}
		ta += time.Since(s)
		s = time.Now()
		for j := 0; j < batch; j++ {
			fb(msgs[(off+j)%len(msgs)])
		}
		tb += time.Since(s)
		b.StopTimer()
		runtime.GC()
		b.StartTimer()
	}
	b.ReportMetric(float64(ta)/float64(tb), unit)
}

// BenchmarkPipelineRatio runs the whole pipeline (selective decode, dedup,
// DNS tracking, attribution) and a bare proto.Unmarshal on the same messages
// in one loop, and reports pipeline/full: what egressd pays per flow against
// what merely decoding it in full would cost.
func BenchmarkPipelineRatio(b *testing.B) {
	msgs := benchMessages(b)
	p, err := collector.NewPipeline(collector.DefaultOptions(), collector.NewMetrics(prometheus.NewRegistry()), nopSink{})
	if err != nil {
		b.Fatal(err)
	}
	var r observer.GetFlowsResponse
	reportRatio(b, msgs, "pipeline/full",
		func(m []byte) { _ = p.Handle("bench", m) },
		func(m []byte) { r.Reset(); _ = proto.Unmarshal(m, &r) })
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
	pipeMsgs = append(msgs, pipeMsgs...)
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

// nopPodSink also takes pods' labels, resolvers and lost events, so the
// pipeline does the work of sending them.
type nopPodSink struct{ nopSink }

func (nopPodSink) ObserveLabelSet(egressd.AppLabelSet) {}
func (nopPodSink) ObserveResolver(egressd.AppResolver) {}
func (nopPodSink) ObserveLost(egressd.LostEvents)      {}

// BenchmarkPipelinePodFactsRatio runs the pipeline with and without a sink
// of pods' facts on the same messages and reports with/without: what
// tracking each pod's labels and each app's resolvers costs per flow.
func BenchmarkPipelinePodFactsRatio(b *testing.B) {
	msgs := benchMessages(b)
	m := collector.NewMetrics(prometheus.NewRegistry())
	with, err := collector.NewPipeline(collector.DefaultOptions(), m, nopPodSink{})
	if err != nil {
		b.Fatal(err)
	}
	without, err := collector.NewPipeline(collector.DefaultOptions(), m, nopSink{})
	if err != nil {
		b.Fatal(err)
	}
	// Both pipelines are as fast, so which runs first after the GC
	// between batches matters (about a third in reportRatio's order): they
	// take turns.
	const batch = 512
	var tw, to time.Duration
	run := func(p *collector.Pipeline, off int) time.Duration {
		s := time.Now()
		for j := 0; j < batch; j++ {
			_ = p.Handle("bench", msgs[(off+j)%len(msgs)])
		}
		return time.Since(s)
	}
	for i := 0; b.Loop(); i++ {
		off := i * batch
		if i%2 == 0 {
			tw += run(with, off)
			to += run(without, off)
		} else {
			to += run(without, off)
			tw += run(with, off)
		}
		b.StopTimer()
		runtime.GC()
		b.StartTimer()
	}
	b.ReportMetric(float64(tw)/float64(to), "podfacts/plain")
}
