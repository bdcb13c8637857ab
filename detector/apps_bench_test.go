package detector_test

import (
	"context"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/detector"
)

// oneFlowApp is the i-th app of a stream of bare pods, each its own app
// (no labels: the pod name is the app) with one flow to one name, one app
// a millisecond: what an attacker creating pods makes.
func oneFlowApp(i int, o *egressd.Observation) {
	name := "bare-" + strconv.Itoa(i)
	*o = egressd.Observation{
		Time: t0.Add(time.Duration(i) * time.Millisecond), Kind: egressd.KindConnect,
		App: egressd.App{Cluster: "homelab", Namespace: "attack", Name: name}, Pod: name,
		Destination: egressd.Destination{Name: "example.com", Port: 443, Protocol: "TCP"},
		Verdict:     egressd.VerdictForwarded, NameSource: egressd.NameFromFlow,
	}
}

// BenchmarkNewApps reports the heap each new app leaves behind once its
// one flow is handled, by sink: the detector (default options: learning,
// the volume rule's Hubble flow counts), the aggregator (flushed every
// 10k observations, as a 10 s interval at 1k new apps/s would; what stays
// is each app's name budget for the hour), the pod -> app map, and all
// three as serve wires them with --prometheus-url. The app's own strings
// are counted once, by whichever sink keeps them. It reports; it asserts
// nothing.
func BenchmarkNewApps(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		for _, sink := range []string{"detector", "aggregator", "podapps", "all"} {
			b.Run("sink="+sink+"/apps="+strconv.Itoa(n), func(b *testing.B) {
				var perApp float64
				for b.Loop() {
					var sinks []func(*egressd.Observation)
					var flush func()
					if sink == "detector" || sink == "all" {
						sinks = append(sinks, benchDetector(b).Observe)
					}
					if sink == "aggregator" || sink == "all" {
						a := benchAggregator(b, collector1M)
						sinks = append(sinks, a.Observe)
						flush = func() {
							if err := a.Flush(context.Background()); err != nil {
								b.Fatal(err)
							}
						}
					}
					if sink == "podapps" || sink == "all" {
						po := detector.DefaultPodAppOptions()
						po.MaxPods = 2 * n
						m, err := detector.NewPodAppMap(po)
						if err != nil {
							b.Fatal(err)
						}
						sinks = append(sinks, m.Observe)
					}
					before := liveHeap()
					var o egressd.Observation
					for i := range n {
						oneFlowApp(i, &o)
						for _, s := range sinks {
							s(&o)
						}
						if flush != nil && i%10_000 == 9_999 {
							flush()
						}
					}
					if flush != nil {
						flush()
					}
					perApp = float64(liveHeap()-before) / float64(n)
					runtime.KeepAlive(sinks)
				}
				b.ReportMetric(perApp, "heap-B/app")
			})
		}
	}
}

const collector1M = 1_000_000
