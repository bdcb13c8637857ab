package baseline_test

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/baseline"
	"github.com/google/go-cmp/cmp"
)

func entry(cluster, namespace, app, name string, port uint16, proto string) egressd.WindowEntry {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	return egressd.WindowEntry{
		App:         egressd.App{Cluster: cluster, Namespace: namespace, Name: app},
		Destination: egressd.Destination{Name: name, Port: port, Protocol: proto},
		FirstSeen:   t0,
		LastSeen:    t0.Add(time.Hour),
		Flows:       7,
	}
}

func TestBuild(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		entries []egressd.WindowEntry
		want    []egressd.Baseline
	}{
		{name: "nothing", entries: nil, want: []egressd.Baseline{}},
		{
			name: "grouped, merged and sorted",
			entries: []egressd.WindowEntry{
				entry("", "media", "sonarr", "skyhook.sonarr.tv", 443, "TCP"),
				entry("", "media", "recyclarr", "raw.githubusercontent.com", 443, "TCP"),
				entry("", "media", "recyclarr", "api.github.com", 443, "TCP"),
				entry("", "media", "recyclarr", "api.github.com", 80, "TCP"),
				entry("", "media", "recyclarr", "api.github.com", 443, "UDP"),
				entry("", "media", "recyclarr", "api.github.com", 443, "TCP"),
				entry("", "default", "web", "1.1.1.1", 853, "TCP"),
				entry("", "default", "web", "2001:db8::1", 443, "TCP"),
			},
			want: []egressd.Baseline{
				{Namespace: "default", App: "web", Destinations: []egressd.BaselineDestination{
					dest(t, "1.1.1.1", "853/TCP"),
					dest(t, "2001:db8::1", "443/TCP"),
				}},
				{Namespace: "media", App: "recyclarr", Destinations: []egressd.BaselineDestination{
					dest(t, "api.github.com", "80/TCP", "443/TCP", "443/UDP"),
					dest(t, "raw.githubusercontent.com", "443/TCP"),
				}},
				{Namespace: "media", App: "sonarr", Destinations: []egressd.BaselineDestination{
					dest(t, "skyhook.sonarr.tv", "443/TCP"),
				}},
			},
		},
		{
			name: "clusters share a file",
			entries: []egressd.WindowEntry{
				entry("east", "media", "recyclarr", "api.github.com", 443, "TCP"),
				entry("west", "media", "recyclarr", "api.github.com", 443, "TCP"),
				entry("west", "media", "recyclarr", "ghcr.io", 443, "TCP"),
			},
			want: []egressd.Baseline{
				{Namespace: "media", App: "recyclarr", Destinations: []egressd.BaselineDestination{
					dest(t, "api.github.com", "443/TCP"),
					dest(t, "ghcr.io", "443/TCP"),
				}},
			},
		},
		{
			name: "names and protocols normalised",
			entries: []egressd.WindowEntry{
				entry("", "media", "x", "API.GitHub.com.", 443, "tcp"),
				entry("", "media", "x", "api.github.com", 443, "TCP"),
				entry("", "media", "x", "2001:DB8:0::1", 53, "udp"),
			},
			want: []egressd.Baseline{
				{Namespace: "media", App: "x", Destinations: []egressd.BaselineDestination{
					dest(t, "2001:db8::1", "53/UDP"),
					dest(t, "api.github.com", "443/TCP"),
				}},
			},
		},
		{
			name: "invalid entries skipped",
			entries: []egressd.WindowEntry{
				entry("", "media", "x", "ok.example.com", 443, "TCP"),
				entry("", "media", "x", "*.example.com", 443, "TCP"),
				entry("", "media", "x", "bad name", 443, "TCP"),
				entry("", "media", "x", "fe80::1%eth0", 443, "TCP"),
				entry("", "media", "x", "ok.example.com", 443, "QUIC"),
				entry("", "../etc", "x", "a.com", 443, "TCP"),
				entry("", "media", "../x", "a.com", 443, "TCP"),
				entry("", "media", "x", "later.example.com", 443, "TCP"),
			},
			want: []egressd.Baseline{
				{Namespace: "media", App: "x", Destinations: []egressd.BaselineDestination{
					dest(t, "later.example.com", "443/TCP"),
					dest(t, "ok.example.com", "443/TCP"),
				}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := baseline.Build(tt.entries)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Build mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestBuilderIgnoresOrderAndRepeats: entries streamed in any order, some
// twice (a window read as it streams may send a key twice), build what
// Build builds from them sorted.
func TestBuilderIgnoresOrderAndRepeats(t *testing.T) {
	t.Parallel()
	var entries []egressd.WindowEntry
	for a := range 5 {
		for d := range 6 {
			entries = append(entries, entry([]string{"", "prod"}[a%2], "ns", "app-"+string(rune('a'+a%3)),
				"d"+string(rune('0'+d))+".example.com", uint16(443+d%2), []string{"TCP", "UDP"}[d%2]))
		}
	}
	entries = append(entries, entry("", "Bad Namespace", "x", "a.example.com", 443, "TCP"))
	want := baseline.Build(entries)
	require.Len(t, want, 3)

	rng := rand.New(rand.NewPCG(1, 2))
	for range 5 {
		shuffled := append(slices.Clone(entries), entries[:7]...)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		var b baseline.Builder
		for _, e := range shuffled {
			b.Add(e)
		}
		if diff := cmp.Diff(want, b.Baselines()); diff != "" {
			t.Errorf("Builder on shuffled entries (-Build +Builder):\n%s", diff)
		}
	}
}
