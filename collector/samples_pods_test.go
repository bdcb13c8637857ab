package collector_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/baseline"
)

// TestSamplesSelectEachAppsPods runs the recorded Hubble flows through the
// pipeline and checks that the selector export would write for each app
// is carried by every label set of the app's pods and by no pod of another
// app of the namespace; and that the app the issue found unselectable,
// event-exporter, named by its k8s-app label, is selected by that label.
func TestSamplesSelectEachAppsPods(t *testing.T) {
	t.Parallel()
	msgs := loadSamples(t)
	sink := &podSink{}
	p, _ := newPipeline(t, sink)
	for _, b := range msgs {
		_ = p.Handle("samples", b) // undecodable lines are counted, as in production
	}
	require.NotEmpty(t, sink.sets)
	var bs []egressd.Baseline
	seen := map[egressd.App]bool{}
	for _, s := range sink.sets {
		a := egressd.App{Namespace: s.App.Namespace, Name: s.App.Name}
		if !seen[a] {
			seen[a] = true
			bs = append(bs, egressd.Baseline{Namespace: a.Namespace, App: a.Name})
		}
	}
	bs = baseline.AttachPods(bs, sink.sets, sink.resolvers)
	carries := func(labels []egressd.Label, sel map[string]string) bool {
		n := 0
		for _, l := range labels {
			if v, ok := sel[l.Key]; ok && v == l.Value {
				n++
			}
		}
		return n == len(sel)
	}
	selected, exporter := 0, false
	for _, b := range bs {
		require.NotNil(t, b.Pods, "%s/%s", b.Namespace, b.App)
		if len(b.Pods.Selector) == 0 {
			require.NotEmpty(t, b.Pods.Unselectable, "%s/%s", b.Namespace, b.App)
			continue
		}
		selected++
		for _, s := range sink.sets {
			if s.App.Namespace != b.Namespace {
				continue
			}
			require.Equal(t, s.App.Name == b.App, carries(s.Labels, b.Pods.Selector),
				"selector %v of %s/%s, pod of %s with %v", b.Pods.Selector, b.Namespace, b.App, s.App.Name, s.Labels)
		}
		if b.App == "event-exporter" {
			exporter = true
			require.Equal(t, map[string]string{"k8s-app": "event-exporter"}, b.Pods.Selector)
		}
	}
	require.Positive(t, selected)
	require.True(t, exporter, "the samples' event-exporter has a selector")
	names := make([]string, 0, len(bs))
	for _, b := range bs {
		names = append(names, fmt.Sprintf("%s/%s %v %q", b.Namespace, b.App, b.Pods.Selector, b.Pods.Unselectable))
	}
	slices.Sort(names)
	t.Logf("apps of the samples:\n%v", names)
}
