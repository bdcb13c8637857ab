package httpapi_test

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
)

type anomalyJSON struct {
	Fingerprint    string            `json:"fingerprint"`
	Kind           string            `json:"kind"`
	AlertName      string            `json:"alertname"`
	State          string            `json:"state"`
	Cluster        string            `json:"cluster"`
	Namespace      string            `json:"namespace"`
	App            string            `json:"app"`
	Destination    string            `json:"destination"`
	Port           uint16            `json:"port"`
	Protocol       string            `json:"protocol"`
	StartedAt      time.Time         `json:"started_at"`
	ResolvedAt     *time.Time        `json:"resolved_at"`
	Pod            string            `json:"pod"`
	Node           string            `json:"node"`
	Verdict        string            `json:"verdict"`
	NameSource     string            `json:"name_source"`
	BaselineSource string            `json:"baseline_source"`
	Summary        string            `json:"summary"`
	Details        map[string]string `json:"details"`
	Severity       string            `json:"severity"`
	Evidence       egressd.Evidence  `json:"evidence"`
}

type pageJSON struct {
	Anomalies []anomalyJSON `json:"anomalies"`
	Next      string        `json:"next"`
}

// pages follows a listing to its end and returns every anomaly and the
// size of each page.
func (e *env) pages(query string) ([]anomalyJSON, []int) {
	e.t.Helper()
	var (
		all   []anomalyJSON
		sizes []int
		after string
	)
	for range 20 {
		var p pageJSON
		q := query
		if after != "" {
			q += "&after=" + after
		}
		e.getJSON("/api/v1/anomalies?"+q, &p)
		all = append(all, p.Anomalies...)
		sizes = append(sizes, len(p.Anomalies))
		if p.Next == "" {
			return all, sizes
		}
		after = p.Next
	}
	e.t.Fatalf("listing %q did not end after 20 pages", query)
	return nil, nil
}

func TestListAnomaliesPagination(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()

	// 250 novel destinations of recyclarr, 150 in the default cluster and
	// 100 on the edge, two per minute (so pages break between anomalies of
	// the same time), every fifth resolved; one volume anomaly of
	// home-assistant.
	type rec struct {
		fp      string
		t       time.Time
		cluster string
		firing  bool
	}
	var want []rec
	for i := range 250 {
		app := recyclarr
		if i >= 150 {
			app = recyclarrEdge
		}
		d := egressd.Destination{Name: fmt.Sprintf("host-%03d.example", i), Port: 443, Protocol: egressd.ProtoTCP}
		a := e.record(novel(app, d, ago(30*day).Add(time.Duration(i/2)*time.Minute)))
		firing := i%5 != 0
		if !firing {
			ok, err := e.db.ResolveAnomaly(ctx, a.Fingerprint, now)
			require.NoError(t, err)
			require.True(t, ok)
		}
		want = append(want, rec{a.Fingerprint, a.Time, app.Cluster, firing})
	}
	volume := egressd.Anomaly{
		Fingerprint: egressd.VolumeFingerprint(hass, ago(day)), Kind: egressd.AnomalyEgressVolume, App: hass,
		Time: ago(day), Summary: "home/home-assistant sends 120x its usual rate",
	}
	e.record(volume)
	// Newest first, then by fingerprint, descending.
	slices.SortFunc(want, func(a, b rec) int { return cmp.Or(b.t.Compare(a.t), strings.Compare(b.fp, a.fp)) })
	fps := func(rs []rec, keep func(rec) bool) []string {
		var out []string
		for _, r := range rs {
			if keep(r) {
				out = append(out, r.fp)
			}
		}
		return out
	}
	all := func(rec) bool { return true }

	tests := []struct {
		name  string
		query string
		want  []string
		sizes []int
	}{
		{
			name:  "one app in every cluster, 100 a page",
			query: "app=media/recyclarr&limit=100",
			want:  fps(want, all),
			sizes: []int{100, 100, 50},
		},
		{
			name:  "everything: the volume anomaly is the newest",
			query: "limit=100",
			want:  append([]string{volume.Fingerprint}, fps(want, all)...),
			sizes: []int{100, 100, 51},
		},
		{
			name:  "a full last page ends with an empty one",
			query: "app=media/recyclarr&limit=125",
			want:  fps(want, all),
			sizes: []int{125, 125, 0},
		},
		{
			name:  "firing on one cluster",
			query: "state=firing&app=media/recyclarr&cluster=edge&limit=30",
			want:  fps(want, func(r rec) bool { return r.firing && r.cluster == "edge" }),
			sizes: []int{30, 30, 20},
		},
		{
			name:  "resolved novel destinations, default page size",
			query: "state=resolved&kind=novel_destination",
			want:  fps(want, func(r rec) bool { return !r.firing }),
			sizes: []int{50},
		},
		{
			name:  "one kind",
			query: "kind=egress_volume",
			want:  []string{volume.Fingerprint},
			sizes: []int{1},
		},
		{
			name:  "unknown app: nothing",
			query: "app=media/nope",
			sizes: []int{0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, sizes := e.pages(tt.query)
			var gotFPs []string
			for _, a := range got {
				gotFPs = append(gotFPs, a.Fingerprint)
			}
			if diff := gocmp.Diff(tt.want, gotFPs); diff != "" {
				t.Errorf("fingerprints (-want +got):\n%s", diff)
			}
			require.Equal(t, tt.sizes, sizes)
		})
	}

	// An empty listing is a list, not null.
	r := e.get("/api/v1/anomalies?app=media/nope")
	require.JSONEq(t, `{"anomalies":[]}`, string(r.body))
}

func TestGetAnomaly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	ranked := novel(recyclarr, evil, ago(2*time.Hour))
	ranked.Severity = egressd.SeverityCritical
	ranked.Evidence = egressd.Evidence{Domain: "evil.example", AppFirstSeen: ago(30 * day), PortClass: "well-known",
		Pods: []string{"recyclarr-7d9f8c-x2x4z"}, Reasons: []string{"never reached by any app in the cluster"}}
	a := e.record(ranked)
	resolved := e.record(novel(recyclarr, ghcr, ago(time.Hour)))
	_, err := e.db.ResolveAnomaly(ctx, resolved.Fingerprint, ago(time.Minute))
	require.NoError(t, err)

	var got struct {
		Anomaly anomalyJSON `json:"anomaly"`
	}
	e.getJSON("/api/v1/anomalies/"+a.Fingerprint, &got)
	want := anomalyJSON{
		Fingerprint: a.Fingerprint, Kind: "novel_destination", AlertName: "EgressNovelDestination", State: "firing",
		Cluster: "default", Namespace: "media", App: "recyclarr",
		Destination: "evil.example", Port: 443, Protocol: "TCP", StartedAt: ago(2 * time.Hour),
		Pod: "recyclarr-7d9f8c-x2x4z", Node: "node-1", Verdict: "FORWARDED", NameSource: "flow", BaselineSource: "window",
		Summary: a.Summary, Details: map[string]string{"flows": "1"},
		Severity: "critical", Evidence: ranked.Evidence,
	}
	if diff := gocmp.Diff(want, got.Anomaly); diff != "" {
		t.Errorf("anomaly (-want +got):\n%s", diff)
	}

	e.getJSON("/api/v1/anomalies/"+resolved.Fingerprint, &got)
	require.Equal(t, "resolved", got.Anomaly.State)
	require.NotNil(t, got.Anomaly.ResolvedAt)
	require.Equal(t, ago(time.Minute), *got.Anomaly.ResolvedAt)

	// Volume anomalies have no destination: the fields are left out.
	v := e.record(egressd.Anomaly{
		Fingerprint: egressd.VolumeFingerprint(hass, ago(day)), Kind: egressd.AnomalyEgressVolume, App: hass,
		Time: ago(day), Summary: "home/home-assistant sends 120x its usual rate",
	})
	r := e.get("/api/v1/anomalies/" + v.Fingerprint)
	require.Equal(t, http.StatusOK, r.status)
	require.NotContains(t, string(r.body), `"destination"`)
	require.NotContains(t, string(r.body), `"port"`)
	require.Contains(t, string(r.body), `"alertname":"EgressVolumeAnomaly"`)

	e.get("/api/v1/anomalies/0123456789abcdef0123456789abcdef").requireError(t, http.StatusNotFound, "not_found", "0123456789abcdef0123456789abcdef")
}
