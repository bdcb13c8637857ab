package httpapi_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/baseline"
)

type appJSON struct {
	Cluster         string    `json:"cluster"`
	Namespace       string    `json:"namespace"`
	App             string    `json:"app"`
	FirstSeen       time.Time `json:"first_seen"`
	LastSeen        time.Time `json:"last_seen"`
	Destinations    int       `json:"destinations"`
	FiringAnomalies int       `json:"firing_anomalies"`
	Learning        bool      `json:"learning"`
	LearningUntil   time.Time `json:"learning_until"`
	Unbounded       bool      `json:"unbounded"`
}

func TestListApps(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.seed()
	e.record(novel(recyclarr, evil, ago(2*time.Hour)))

	app := func(a egressd.App, first, last time.Time, dests, firing int, unbounded bool) appJSON {
		until := first.Add(24 * time.Hour)
		return appJSON{
			Cluster: a.Cluster, Namespace: a.Namespace, App: a.Name, FirstSeen: first, LastSeen: last,
			Destinations: dests, FiringAnomalies: firing, Learning: now.Before(until), LearningUntil: until, Unbounded: unbounded,
		}
	}
	tests := []struct {
		name  string
		query string
		want  []appJSON
	}{
		{
			name: "every destination; sorted by cluster, namespace, app",
			want: []appJSON{
				app(hass, ago(2*time.Hour), ago(time.Hour), 1, 0, false),
				app(quiet, ago(20*day), ago(20*day), 1, 0, false),
				app(recyclarr, ago(10*day), ago(time.Hour), 3, 1, false),
				app(recyclarrEdge, ago(3*time.Hour), ago(3*time.Hour), 2, 0, true),
			},
		},
		{
			name:  "destinations last seen within the window",
			query: "?window=168h",
			want: []appJSON{
				app(hass, ago(2*time.Hour), ago(time.Hour), 1, 0, false),
				app(quiet, ago(20*day), ago(20*day), 0, 0, false),
				app(recyclarr, ago(10*day), ago(time.Hour), 2, 1, false),
				app(recyclarrEdge, ago(3*time.Hour), ago(3*time.Hour), 2, 0, true),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got struct {
				Apps []appJSON `json:"apps"`
			}
			e.getJSON("/api/v1/apps"+tt.query, &got)
			if diff := cmp.Diff(tt.want, got.Apps); diff != "" {
				t.Errorf("apps (-want +got):\n%s", diff)
			}
		})
	}
	require.True(t, tests[0].want[0].Learning, "home-assistant was first seen 2 h ago")

	// No apps yet: an empty list, not null.
	r := newEnv(t, envOpts{}).get("/api/v1/apps")
	require.Equal(t, http.StatusOK, r.status)
	require.JSONEq(t, `{"apps":[]}`, string(r.body))
}

type destinationJSON struct {
	Cluster      string    `json:"cluster"`
	Destination  string    `json:"destination"`
	Port         uint16    `json:"port"`
	Protocol     string    `json:"protocol"`
	FirstSeen    time.Time `json:"first_seen"`
	LastSeen     time.Time `json:"last_seen"`
	Flows        int64     `json:"flows"`
	DroppedFlows int64     `json:"dropped_flows"`
	Verdicts     []string  `json:"verdicts"`
	ExamplePod   string    `json:"example_pod"`
	NameSource   string    `json:"name_source"`
}

type destinationsJSON struct {
	Namespace    string            `json:"namespace"`
	App          string            `json:"app"`
	Destinations []destinationJSON `json:"destinations"`
}

func TestAppDestinations(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.seed()

	forwarded := []string{"FORWARDED"}
	var (
		gh = destinationJSON{Cluster: "default", Destination: "api.github.com", Port: 443, Protocol: "TCP",
			FirstSeen: ago(10 * day), LastSeen: ago(time.Hour), Flows: 40, Verdicts: forwarded,
			ExamplePod: "recyclarr-7d9f8c-x2x4z", NameSource: "flow"}
		ev = destinationJSON{Cluster: "default", Destination: "evil.example", Port: 443, Protocol: "TCP",
			FirstSeen: ago(2 * time.Hour), LastSeen: ago(2 * time.Hour), Flows: 3, DroppedFlows: 3, Verdicts: []string{"DROPPED"},
			ExamplePod: "recyclarr-7d9f8c-x2x4z", NameSource: "flow"}
		gc = destinationJSON{Cluster: "default", Destination: "ghcr.io", Port: 443, Protocol: "TCP",
			FirstSeen: ago(9 * day), LastSeen: ago(9*day - time.Minute), Flows: 2, Verdicts: forwarded,
			ExamplePod: "recyclarr-7d9f8c-x2x4z", NameSource: "dns"}
		edgeIP = destinationJSON{Cluster: "edge", Destination: "203.0.113.7", Port: 443, Protocol: "TCP",
			FirstSeen: ago(3 * time.Hour), LastSeen: ago(3 * time.Hour), Flows: 1, Verdicts: forwarded,
			ExamplePod: "recyclarr-5c4b-qq7r9", NameSource: "ip"}
		edgeGH = destinationJSON{Cluster: "edge", Destination: "api.github.com", Port: 443, Protocol: "TCP",
			FirstSeen: ago(3 * time.Hour), LastSeen: ago(3 * time.Hour), Flows: 1, Verdicts: forwarded,
			ExamplePod: "recyclarr-5c4b-qq7r9", NameSource: "flow"}
	)
	tests := []struct {
		name string
		path string
		want destinationsJSON
	}{
		{
			name: "every cluster, sorted by cluster then destination",
			path: "/api/v1/apps/media/recyclarr/destinations",
			want: destinationsJSON{"media", "recyclarr", []destinationJSON{gh, ev, gc, edgeIP, edgeGH}},
		},
		{
			name: "window filters on last seen",
			path: "/api/v1/apps/media/recyclarr/destinations?window=168h",
			want: destinationsJSON{"media", "recyclarr", []destinationJSON{gh, ev, edgeIP, edgeGH}},
		},
		{
			name: "one cluster",
			path: "/api/v1/apps/media/recyclarr/destinations?cluster=edge&window=4h",
			want: destinationsJSON{"media", "recyclarr", []destinationJSON{edgeIP, edgeGH}},
		},
		{
			name: "known app, nothing in the window",
			path: "/api/v1/apps/media/quiet/destinations?window=168h",
			want: destinationsJSON{"media", "quiet", []destinationJSON{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got destinationsJSON
			e.getJSON(tt.path, &got)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("GET %s (-want +got):\n%s", tt.path, diff)
			}
		})
	}

	e.get("/api/v1/apps/media/nope/destinations").requireError(t, http.StatusNotFound, "not_found", "media/nope")
	e.get("/api/v1/apps/media/recyclarr/destinations?cluster=staging").requireError(t, http.StatusNotFound, "not_found", "staging")
}

func TestAppBaseline(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.seed()
	ctx := context.Background()

	// export is what `egressd baseline export` writes for the app: the
	// whole window built, the app's baseline marshalled.
	export := func(app egressd.App, from, to time.Time) string {
		entries, err := e.db.WindowEntries(ctx, from, to)
		require.NoError(t, err)
		for _, b := range baseline.Build(entries) {
			if b.Namespace == app.Namespace && b.App == app.Name {
				data, err := baseline.Marshal(b)
				require.NoError(t, err)
				return string(data)
			}
		}
		t.Fatalf("no baseline for %s", app)
		return ""
	}
	tests := []struct {
		name     string
		query    string
		from, to time.Time
		has      []string
		hasNot   []string
	}{
		{
			name: "default: the last 168h, every cluster",
			from: ago(168 * time.Hour), to: now,
			has:    []string{`"api.github.com"`, `"203.0.113.7"`},
			hasNot: []string{"ghcr.io", "evil.example"},
		},
		{
			name:  "longer window",
			query: "?window=240h",
			from:  ago(240 * time.Hour), to: now,
			has: []string{"ghcr.io"},
		},
		{
			name:  "pinned at",
			query: "?at=" + url.QueryEscape(ago(5*day).Format(time.RFC3339)) + "&window=168h",
			from:  ago(12 * day), to: ago(5 * day),
			has:    []string{"ghcr.io", "api.github.com"},
			hasNot: []string{"203.0.113.7"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.get("/api/v1/apps/media/recyclarr/baseline" + tt.query)
			require.Equal(t, http.StatusOK, r.status, "%s", r.body)
			require.Equal(t, "application/json", r.header.Get("Content-Type"))
			require.Equal(t, export(recyclarr, tt.from, tt.to), string(r.body))
			for _, s := range tt.has {
				require.Contains(t, string(r.body), s)
			}
			for _, s := range tt.hasNot {
				require.NotContains(t, string(r.body), s)
			}
			b, err := baseline.Unmarshal(r.body, "response")
			require.NoError(t, err)
			require.Equal(t, "recyclarr", b.App)
		})
	}

	// A known app without allowed traffic in the window: an empty baseline.
	r := e.get("/api/v1/apps/media/quiet/baseline")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	want, err := baseline.Marshal(egressd.Baseline{Namespace: "media", App: "quiet"})
	require.NoError(t, err)
	require.Equal(t, string(want), string(r.body))

	e.get("/api/v1/apps/media/nope/baseline").requireError(t, http.StatusNotFound, "not_found", "media/nope")
	e.get("/api/v1/apps/media/recyclarr/baseline?at=yesterday").requireError(t, http.StatusBadRequest, "invalid", "at", "RFC3339")
	e.get("/api/v1/apps/media/recyclarr/baseline?window=2161h").requireError(t, http.StatusBadRequest, "invalid", "window", "2160h")
	e.get("/api/v1/apps/media/recyclarr/baseline?cluster=edge").requireError(t, http.StatusBadRequest, "invalid", `"cluster"`, "window, at")
}

// TestInvalidParameters checks that every path and query parameter is
// validated before anything is read, with a message naming it.
func TestInvalidParameters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.seed()
	tests := []struct {
		path string
		want []string // in the message
	}{
		{"/api/v1/apps/../recyclarr/destinations", []string{"namespace", `".."`}},
		{"/api/v1/apps/media/../destinations", []string{"app", `".."`}},
		{"/api/v1/apps/..%2F..%2Fetc/passwd/destinations", []string{"namespace"}},
		{"/api/v1/apps/%2e%2e/recyclarr/baseline", []string{"namespace"}},
		{"/api/v1/apps/Media/recyclarr/destinations", []string{"namespace", `"Media"`, "lower-case"}},
		{"/api/v1/apps/media/-recyclarr/baseline", []string{"app", `"-recyclarr"`}},
		{"/api/v1/apps/media/re%00cyclarr/baseline", []string{"app"}},
		{"/api/v1/apps?window=0s", []string{"window", `"0s"`}},
		{"/api/v1/apps?window=-1h", []string{"window"}},
		{"/api/v1/apps?window=7d", []string{"window", "168h"}},
		{"/api/v1/apps?window=2161h", []string{"window", "2160h"}},
		{"/api/v1/apps?window=1h&window=2h", []string{"window", "given 2 times"}},
		{"/api/v1/apps?windw=1h", []string{`unknown query parameter "windw"`, "window"}},
		{"/api/v1/apps?a=%zz", []string{"query string"}},
		{"/api/v1/apps/media/recyclarr/destinations?cluster=a/b", []string{"cluster"}},
		{"/api/v1/apps/media/recyclarr/destinations?cluster=", []string{"cluster"}},
		{"/api/v1/apps/media/recyclarr/baseline?at=2026-11-08", []string{"at", "RFC3339"}},
		{"/api/v1/anomalies?limit=0", []string{"limit", "1 to 1000"}},
		{"/api/v1/anomalies?limit=1001", []string{"limit"}},
		{"/api/v1/anomalies?limit=ten", []string{"limit"}},
		{"/api/v1/anomalies?state=open", []string{"state", "firing, resolved or all"}},
		{"/api/v1/anomalies?kind=novel", []string{"kind", "novel_destination"}},
		{"/api/v1/anomalies?app=recyclarr", []string{"app", "NAMESPACE/APP"}},
		{"/api/v1/anomalies?app=../etc", []string{"app", "namespace"}},
		{"/api/v1/anomalies?cluster=edge", []string{"cluster", "app="}},
		{"/api/v1/anomalies?after=bm9wZQ", []string{"after", "next"}},
		{"/api/v1/apps?limit=0", []string{"limit", "1 to 1000"}},
		{"/api/v1/apps?limit=1001", []string{"limit"}},
		{"/api/v1/apps?after=e30", []string{"after", "next"}},
		{"/api/v1/apps/media/recyclarr/destinations?limit=x", []string{"limit"}},
		{"/api/v1/apps/media/recyclarr/destinations?after=!!!", []string{"after"}},
		{"/api/v1/anomalies?after=!!!", []string{"after"}},
		{"/api/v1/anomalies/not%20a%20fingerprint", []string{"fingerprint"}},
		{"/api/v1/anomalies/abc?state=firing", []string{`unknown query parameter "state"`, "takes none"}},
	}
	for _, tt := range tests {
		r := e.get(tt.path)
		require.Equal(t, http.StatusBadRequest, r.status, "GET %s: %s", tt.path, r.body)
		r.requireError(t, http.StatusBadRequest, "invalid", tt.want...)
	}
}

type appsPageJSON struct {
	Apps []appJSON `json:"apps"`
	Next string    `json:"next"`
}

type destinationsPageJSON struct {
	Namespace    string            `json:"namespace"`
	App          string            `json:"app"`
	Destinations []destinationJSON `json:"destinations"`
	Next         string            `json:"next"`
}

// follow walks a listing from path (which has a query) to its end with
// page, which decodes one page and returns its rows and next value.
func follow[T any](e *env, path string, page func(path string) ([]T, string)) ([]T, []int) {
	e.t.Helper()
	var (
		all   []T
		sizes []int
		next  string
	)
	for range 20 {
		p := path
		if next != "" {
			p += "&after=" + url.QueryEscape(next)
		}
		rows, n := page(p)
		all = append(all, rows...)
		sizes = append(sizes, len(rows))
		if n == "" {
			return all, sizes
		}
		next = n
	}
	e.t.Fatalf("listing %s did not end after 20 pages", path)
	return nil, nil
}

// TestListingsPage checks the apps and destinations listings page by page:
// a full page carries next, the pages put together are the whole listing,
// and the last page (possibly empty) has no next.
func TestListingsPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.seed()

	var whole appsPageJSON
	e.getJSON("/api/v1/apps", &whole)
	require.Len(t, whole.Apps, 4)
	require.Empty(t, whole.Next, "a page that is not full ends the listing")
	apps, sizes := follow(e, "/api/v1/apps?window=168h&limit=2", func(p string) ([]appJSON, string) {
		var page appsPageJSON
		e.getJSON(p, &page)
		return page.Apps, page.Next
	})
	require.Equal(t, []int{2, 2, 0}, sizes)
	var windowed appsPageJSON
	e.getJSON("/api/v1/apps?window=168h", &windowed)
	if diff := cmp.Diff(windowed.Apps, apps); diff != "" {
		t.Errorf("apps page by page (-whole +pages):\n%s", diff)
	}

	var allDests destinationsPageJSON
	e.getJSON("/api/v1/apps/media/recyclarr/destinations", &allDests)
	require.Len(t, allDests.Destinations, 5)
	dests, sizes := follow(e, "/api/v1/apps/media/recyclarr/destinations?limit=2", func(p string) ([]destinationJSON, string) {
		var page destinationsPageJSON
		e.getJSON(p, &page)
		require.Equal(t, "recyclarr", page.App)
		return page.Destinations, page.Next
	})
	require.Equal(t, []int{2, 2, 1}, sizes)
	if diff := cmp.Diff(allDests.Destinations, dests); diff != "" {
		t.Errorf("destinations page by page (-whole +pages):\n%s", diff)
	}

	// A cursor belongs to its listing: another listing's is a 400 naming
	// after, not a wrong page.
	var first appsPageJSON
	e.getJSON("/api/v1/apps?limit=1", &first)
	require.NotEmpty(t, first.Next)
	var firstDests destinationsPageJSON
	e.getJSON("/api/v1/apps/media/recyclarr/destinations?limit=1", &firstDests)
	require.NotEmpty(t, firstDests.Next)
	e.record(novel(recyclarr, evil, ago(2*time.Hour)))
	var anomalies pageJSON
	e.getJSON("/api/v1/anomalies?limit=1", &anomalies)
	require.NotEmpty(t, anomalies.Next)
	for _, path := range []string{
		"/api/v1/apps?after=" + firstDests.Next,
		"/api/v1/apps?after=" + anomalies.Next,
		"/api/v1/apps/media/recyclarr/destinations?after=" + first.Next,
		"/api/v1/anomalies?after=" + first.Next,
		"/api/v1/apps?after=" + strings.Repeat("A", 4096),
	} {
		e.get(path).requireError(t, http.StatusBadRequest, "invalid", "after", `"next" value`)
	}
}
