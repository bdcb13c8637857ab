package baseline_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/baseline"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 8, 0, 0, 0, 0, time.UTC)
	files := []egressd.Baseline{
		{Namespace: "media", App: "recyclarr", Destinations: []egressd.BaselineDestination{
			dest(t, "*.githubusercontent.com", "443/TCP"),
			dest(t, "api.github.com", "443/TCP"),
			dest(t, "2001:db8::1", "0/UDP"),
		}},
		{Namespace: "default", App: "crawler", Unbounded: true},
	}
	entry := func(cluster, ns, app, name string, port uint16, proto string, flows int64, last time.Duration, pod string) egressd.WindowEntry {
		return egressd.WindowEntry{App: egressd.App{Cluster: cluster, Namespace: ns, Name: app},
			Destination: egressd.Destination{Name: name, Port: port, Protocol: proto},
			LastSeen:    at.Add(-last), Flows: flows, ExamplePod: pod}
	}
	entries := []egressd.WindowEntry{
		entry("", "media", "recyclarr", "api.github.com", 443, "TCP", 10, time.Hour, "recyclarr-1"),
		entry("", "media", "recyclarr", "raw.githubusercontent.com", 443, "TCP", 3, time.Hour, "recyclarr-1"),   // the pattern
		entry("", "media", "recyclarr", "a.b.githubusercontent.com", 443, "TCP", 2, 2*time.Hour, "recyclarr-2"), // * is one label
		entry("", "media", "recyclarr", "api.github.com", 80, "TCP", 4, 3*time.Hour, "recyclarr-1"),             // another port
		entry("", "media", "recyclarr", "2001:db8:0::1", 123, "UDP", 1, time.Hour, ""),                          // port 0 allows every port
		entry("", "media", "recyclarr", "2001:db8::1", 123, "TCP", 1, time.Hour, ""),                            // not this protocol
		entry("a", "media", "recyclarr", "evil.example", 443, "TCP", 5, 5*time.Hour, "recyclarr-a"),
		entry("b", "media", "recyclarr", "evil.example", 443, "TCP", 6, 4*time.Hour, "recyclarr-b"), // clusters add up
		entry("", "default", "crawler", "anything.example", 8080, "TCP", 100, time.Hour, "crawler-1"),
		entry("", "default", "new-app", "x.example", 443, "TCP", 1, time.Hour, "new-app-1"),
	}
	r := baseline.Check(files, entries)
	want := []baseline.Finding{
		{Namespace: "media", App: "recyclarr", Destination: "2001:db8::1", Port: 123, Protocol: "TCP", Flows: 1, LastSeen: at.Add(-time.Hour)},
		{Namespace: "media", App: "recyclarr", Destination: "a.b.githubusercontent.com", Port: 443, Protocol: "TCP", Flows: 2, LastSeen: at.Add(-2 * time.Hour), ExamplePod: "recyclarr-2"},
		{Namespace: "media", App: "recyclarr", Destination: "api.github.com", Port: 80, Protocol: "TCP", Flows: 4, LastSeen: at.Add(-3 * time.Hour), ExamplePod: "recyclarr-1"},
		{Namespace: "media", App: "recyclarr", Destination: "evil.example", Port: 443, Protocol: "TCP", Flows: 11, LastSeen: at.Add(-4 * time.Hour), ExamplePod: "recyclarr-b"},
	}
	if diff := cmp.Diff(want, r.Findings); diff != "" {
		t.Fatalf("findings (-want +got):\n%s", diff)
	}
	require.True(t, r.Failed())
	require.Equal(t, 3, r.Apps)
	require.Equal(t, 2, r.Checked)
	require.Equal(t, []string{"default/new-app"}, r.WithoutFile)

	var text bytes.Buffer
	require.NoError(t, baseline.WriteCheckText(&text, r))
	require.Contains(t, text.String(), "media/recyclarr: 4 destinations would be novel, and dropped by its policy:\n")
	require.Regexp(t, `\n  evil\.example +443/TCP +11 +2026-11-07T20:00:00Z +recyclarr-b\n`, text.String())
	require.Contains(t, text.String(), "default/new-app: no baseline file")

	var js bytes.Buffer
	require.NoError(t, baseline.WriteCheckJSON(&js, r))
	var back baseline.CheckReport
	dec := json.NewDecoder(&js)
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&back))
	require.Equal(t, r.Findings, back.Findings)

	// Nothing found: an empty list, not null, for bots.
	ok := baseline.Check(files, entries[:2])
	require.False(t, ok.Failed())
	js.Reset()
	require.NoError(t, baseline.WriteCheckJSON(&js, ok))
	require.Contains(t, js.String(), `"findings": []`)
}
