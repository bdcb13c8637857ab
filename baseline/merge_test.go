package baseline_test

import (
	"testing"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/baseline"
	"github.com/google/go-cmp/cmp"
)

func TestMerge(t *testing.T) {
	t.Parallel()
	app := func(ds ...egressd.BaselineDestination) egressd.Baseline {
		return egressd.Baseline{Namespace: "media", App: "recyclarr", Destinations: ds}
	}
	tests := []struct {
		name     string
		existing *egressd.Baseline
		live     egressd.Baseline
		want     egressd.Baseline
	}{
		{
			name: "no file: live as is",
			live: app(dest(t, "api.github.com", "443/TCP")),
			want: app(dest(t, "api.github.com", "443/TCP")),
		},
		{
			name:     "plain entries follow the window",
			existing: ptr(app(dest(t, "gone.example.com", "443/TCP"), dest(t, "api.github.com", "80/TCP"))),
			live:     app(dest(t, "api.github.com", "443/TCP"), dest(t, "new.example.com", "443/TCP")),
			want:     app(dest(t, "api.github.com", "443/TCP"), dest(t, "new.example.com", "443/TCP")),
		},
		{
			name: "unbounded and note come from the file",
			existing: &egressd.Baseline{Namespace: "media", App: "recyclarr", Unbounded: true, Note: "crawler",
				Destinations: []egressd.BaselineDestination{dest(t, "old.example.com", "443/TCP")}},
			live: egressd.Baseline{Namespace: "media", App: "recyclarr", Unbounded: false, Note: "ignored",
				Destinations: []egressd.BaselineDestination{dest(t, "api.github.com", "443/TCP")}},
			want: egressd.Baseline{Namespace: "media", App: "recyclarr", Unbounded: true, Note: "crawler",
				Destinations: []egressd.BaselineDestination{dest(t, "api.github.com", "443/TCP")}},
		},
		{
			name:     "noted entries stay without traffic",
			existing: ptr(app(noted(t, "monthly report upload", "reports.example.com", "443/TCP"), dest(t, "gone.example.com", "443/TCP"))),
			live:     app(dest(t, "api.github.com", "443/TCP")),
			want:     app(dest(t, "api.github.com", "443/TCP"), noted(t, "monthly report upload", "reports.example.com", "443/TCP")),
		},
		{
			name:     "noted entries gain live ports",
			existing: ptr(app(noted(t, "mirror", "mirror.example.com", "443/TCP"))),
			live:     app(dest(t, "mirror.example.com", "80/TCP", "443/TCP")),
			want:     app(noted(t, "mirror", "mirror.example.com", "80/TCP", "443/TCP")),
		},
		{
			name:     "noted 0/ANY does not grow",
			existing: ptr(app(noted(t, "anything goes", "mirror.example.com", "0/ANY"))),
			live:     app(dest(t, "mirror.example.com", "80/TCP", "443/UDP")),
			want:     app(noted(t, "anything goes", "mirror.example.com", "0/ANY")),
		},
		{
			name:     "patterns stay and absorb matching names",
			existing: ptr(app(dest(t, "*.githubusercontent.com", "443/TCP"), dest(t, "raw.githubusercontent.com", "443/TCP"))),
			live: app(
				dest(t, "api.github.com", "443/TCP"),
				dest(t, "objects.githubusercontent.com", "443/TCP"),
				dest(t, "raw.githubusercontent.com", "443/TCP"),
			),
			want: app(dest(t, "*.githubusercontent.com", "443/TCP"), dest(t, "api.github.com", "443/TCP")),
		},
		{
			name:     "patterns stay without traffic",
			existing: ptr(app(dest(t, "**.sonarr.tv", "443/TCP"))),
			live:     app(),
			want:     app(dest(t, "**.sonarr.tv", "443/TCP")),
		},
		{
			name:     "folded names add their ports to the pattern",
			existing: ptr(app(dest(t, "*.githubusercontent.com", "443/TCP"))),
			live:     app(dest(t, "raw.githubusercontent.com", "80/TCP", "443/TCP")),
			want:     app(dest(t, "*.githubusercontent.com", "80/TCP", "443/TCP")),
		},
		{
			name:     "a pattern only takes names it matches",
			existing: ptr(app(dest(t, "*.githubusercontent.com", "443/TCP"))),
			live:     app(dest(t, "a.b.githubusercontent.com", "443/TCP"), dest(t, "githubusercontent.com", "443/TCP")),
			want: app(
				dest(t, "*.githubusercontent.com", "443/TCP"),
				dest(t, "a.b.githubusercontent.com", "443/TCP"),
				dest(t, "githubusercontent.com", "443/TCP"),
			),
		},
		{
			name:     "a port one matching pattern allows is not added to another",
			existing: ptr(app(dest(t, "*.example.com", "443/TCP"), dest(t, "**.example.com", "80/TCP"))),
			live:     app(dest(t, "www.example.com", "80/TCP", "443/TCP", "8443/TCP")),
			// "**.example.com" sorts first, so the new port goes there.
			want: app(dest(t, "**.example.com", "80/TCP", "8443/TCP"), dest(t, "*.example.com", "443/TCP")),
		},
		{
			name:     "patterns never take IP addresses",
			existing: ptr(app(dest(t, "*", "0/ANY"))),
			live:     app(dest(t, "1.1.1.1", "853/TCP"), dest(t, "dns.google", "853/TCP")),
			want:     app(dest(t, "*", "0/ANY"), dest(t, "1.1.1.1", "853/TCP")),
		},
		{
			name:     "a noted exact name wins over a pattern",
			existing: ptr(app(dest(t, "*.example.com", "443/TCP"), noted(t, "pinned", "www.example.com", "443/TCP"))),
			live:     app(dest(t, "www.example.com", "80/TCP")),
			want:     app(dest(t, "*.example.com", "443/TCP"), noted(t, "pinned", "www.example.com", "80/TCP", "443/TCP")),
		},
		{
			name:     "pattern notes survive",
			existing: ptr(app(noted(t, "CDN", "*.cdn.example.com", "443/TCP"))),
			live:     app(dest(t, "a.cdn.example.com", "443/TCP")),
			want:     app(noted(t, "CDN", "*.cdn.example.com", "443/TCP")),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := baseline.Merge(tt.existing, tt.live)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Merge mismatch (-want +got):\n%s", diff)
			}
			// Idempotent: what the next export reads back merges to itself.
			again := baseline.Merge(&got, tt.live)
			if diff := cmp.Diff(got, again); diff != "" {
				t.Errorf("second Merge changed the result (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMergeDoesNotAlias(t *testing.T) {
	t.Parallel()
	existing := egressd.Baseline{Namespace: "media", App: "x", Destinations: []egressd.BaselineDestination{dest(t, "*.example.com", "443/TCP")}}
	live := egressd.Baseline{Namespace: "media", App: "x", Destinations: []egressd.BaselineDestination{dest(t, "a.example.com", "80/TCP")}}
	got := baseline.Merge(&existing, live)
	got.Destinations[0].Ports[0].Number = 1
	if diff := cmp.Diff(ports(t, "443/TCP"), existing.Destinations[0].Ports); diff != "" {
		t.Errorf("Merge result aliases its input (-want +got):\n%s", diff)
	}
}

func ptr[T any](v T) *T { return &v }
