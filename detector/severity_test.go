package detector_test

import (
	"context"
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/detector"
)

// TestSeverityRules covers each row of the rule table in the package doc.
func TestSeverityRules(t *testing.T) {
	t.Parallel()
	novel := func(name string, port uint16, e egressd.Evidence) egressd.Anomaly {
		return egressd.Anomaly{Kind: egressd.AnomalyNovelDestination, App: recyclarr,
			Destination: dst(name, port), Evidence: e}
	}
	tests := []struct {
		name    string
		anomaly egressd.Anomaly
		want    egressd.Severity
		reasons []string
	}{
		{"prevalence unknown", novel("exfil.example.net", 443, egressd.Evidence{Incomplete: "the store did not answer", Domain: "example.net", PortClass: "well-known"}),
			egressd.SeverityWarning, []string{"prevalence unknown: the store did not answer"}},
		{"a host the app uses, on a new port", novel("api.github.com", 8443, egressd.Evidence{KnownPorts: []string{"443/TCP"}, Domain: "github.com", PortClass: "registered"}),
			egressd.SeverityInfo, []string{"the app already reaches api.github.com on 443/TCP", "high port"}},
		{"other apps use it", novel("api.github.com", 443, egressd.Evidence{OtherApps: 12, OtherClusters: 1, Domain: "github.com", PortClass: "well-known"}),
			egressd.SeverityInfo, []string{"reached by 12 other apps (1 other cluster)"}},
		{"never reached, dropped", novel("203.0.113.9", 4444, egressd.Evidence{BareIP: true, PortClass: "registered", Dropped: true}),
			egressd.SeverityWarning, []string{"never reached by any app in the cluster", "bare IP", "high port", "dropped by policy"}},
		{"never reached, domain in the baseline", novel("uploads.github.com", 443, egressd.Evidence{Siblings: []string{"api.github.com"}, Domain: "github.com", PortClass: "well-known"}),
			egressd.SeverityWarning, []string{"never reached by any app in the cluster", "github.com is in the app's baseline (api.github.com)"}},
		{"never reached, domain used by other apps", novel("new.github.com", 443, egressd.Evidence{DomainApps: 1, Domain: "github.com", PortClass: "well-known"}),
			egressd.SeverityWarning, []string{"never reached by any app in the cluster", "github.com is reached by 1 other app"}},
		{"never reached: bare IP, high port", novel("203.0.113.9", 4444, egressd.Evidence{BareIP: true, PortClass: "registered"}),
			egressd.SeverityCritical, []string{"never reached by any app in the cluster", "bare IP", "high port"}},
		{"never reached: random name", novel(encoded(1, 40, false)+".t.evil.example", 443, egressd.Evidence{Domain: "evil.example", PortClass: "well-known"}),
			egressd.SeverityCritical, []string{"never reached by any app in the cluster", "random-looking name"}},
		{"never reached: ordinary name", novel("exfil.example.net", 443, egressd.Evidence{Domain: "example.net", PortClass: "well-known"}),
			egressd.SeverityCritical, []string{"never reached by any app in the cluster"}},
		{"flood of names other apps use", egressd.Anomaly{Kind: egressd.AnomalyNovelFlood, App: recyclarr, Destination: dst("a.example.com", 443),
			Evidence: egressd.Evidence{OtherApps: 3, Domain: "example.com", PortClass: "well-known"}},
			egressd.SeverityWarning, []string{"many new destinations at once", "reached by 3 other apps"}},
		{"flood of names never reached", egressd.Anomaly{Kind: egressd.AnomalyNovelFlood, App: recyclarr, Destination: dst("a.example.com", 443),
			Evidence: egressd.Evidence{Domain: "example.com", PortClass: "well-known"}},
			egressd.SeverityCritical, []string{"never reached by any app in the cluster"}},
		{"dns tunnel by shape", egressd.Anomaly{Kind: egressd.AnomalyDNSTunnel, App: evil, Details: map[string]string{"rule": "shape", "domain": "evil.example"}},
			egressd.SeverityCritical, []string{"DNS names that look like encoded data under evil.example"}},
		{"dns tunnel by count", egressd.Anomaly{Kind: egressd.AnomalyDNSTunnel, App: evil, Details: map[string]string{"rule": "count", "threshold": "500"}},
			egressd.SeverityWarning, []string{"more distinct DNS names than the threshold (500)"}},
		{"egress volume", egressd.Anomaly{Kind: egressd.AnomalyEgressVolume, App: sonarr, Details: map[string]string{"factor": "250"}},
			egressd.SeverityWarning, []string{"sends 250x its average"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sev, reasons := detector.Severity(tt.anomaly)
			require.Equal(t, tt.want, sev)
			if diff := cmp.Diff(tt.reasons, reasons); diff != "" {
				t.Errorf("reasons (-want +got):\n%s", diff)
			}
			// Deterministic.
			sev2, reasons2 := detector.Severity(tt.anomaly)
			require.Equal(t, sev, sev2)
			require.Equal(t, reasons, reasons2)
		})
	}
}

// fakeEvidence is an EvidenceStore answering from fields.
type fakeEvidence struct {
	fn func(app egressd.App, d egressd.Destination, domain string, since, at time.Time) (egressd.Evidence, error)
}

func (f fakeEvidence) DestinationEvidence(_ context.Context, app egressd.App, d egressd.Destination, domain string, since, at time.Time) (egressd.Evidence, error) {
	return f.fn(app, d, domain, since, at)
}

// TestSeverityRanking raises three novel destinations of one app past its
// learning period, with the evidence the store gives: one no app in the
// cluster ever reached, a host the app already uses on a new port, and a
// destination other apps use every day. The first ranks above both.
func TestSeverityRanking(t *testing.T) {
	t.Parallel()
	store := &fakeStore{}
	det := newDetector(t, detector.DefaultOptions(), store)
	var asked []string
	det.UseEvidence(fakeEvidence{fn: func(app egressd.App, d egressd.Destination, domain string, since, at time.Time) (egressd.Evidence, error) {
		require.Equal(t, recyclarr, app)
		require.Equal(t, at.Add(-7*24*time.Hour), since)
		asked = append(asked, d.String()+" "+domain)
		switch d.Name {
		case "api.github.com":
			return egressd.Evidence{KnownPorts: []string{"443/TCP"}, Pods: []string{"recyclarr-other-pod"}}, nil
		case "registry-1.docker.io":
			return egressd.Evidence{OtherApps: 14, ClusterFirstSeen: t0.Add(-20 * 24 * time.Hour)}, nil
		}
		return egressd.Evidence{}, nil
	}})
	det.LoadApps(map[egressd.App]time.Time{recyclarr: t0.Add(-48 * time.Hour)})
	det.Observe(conn(recyclarr, dst("198.51.100.23", 4444), t0))
	det.Observe(conn(recyclarr, dst("api.github.com", 8443), t0.Add(time.Second)))
	det.Observe(conn(recyclarr, dst("registry-1.docker.io", 443), t0.Add(2*time.Second)))
	drain(t, det)
	require.Len(t, store.raised, 3)
	require.Equal(t, []string{"198.51.100.23:4444/TCP ", "api.github.com:8443/TCP github.com", "registry-1.docker.io:443/TCP docker.io"}, asked)

	byName := map[string]egressd.Anomaly{}
	for _, a := range store.raised {
		byName[a.Destination.Name] = a
	}
	never, newPort, everyday := byName["198.51.100.23"], byName["api.github.com"], byName["registry-1.docker.io"]
	require.Equal(t, egressd.SeverityCritical, never.Severity)
	require.Equal(t, egressd.SeverityInfo, newPort.Severity)
	require.Equal(t, egressd.SeverityInfo, everyday.Severity)
	require.Greater(t, never.Severity.Rank(), newPort.Severity.Rank())
	require.Greater(t, never.Severity.Rank(), everyday.Severity.Rank())
	sorted := append([]egressd.Anomaly(nil), store.raised...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Severity.Rank() > sorted[j].Severity.Rank() })
	require.Equal(t, "198.51.100.23", sorted[0].Destination.Name)

	// The evidence the detector adds to the store's.
	require.Equal(t, egressd.Evidence{
		AppFirstSeen: t0.Add(-48 * time.Hour), PortClass: "registered",
		Pods:    []string{"recyclarr-pod"},
		Reasons: []string{"never reached by any app in the cluster", "high port"},
	}, never.Evidence, "conn() names the IP from the flow: not a bare IP without a DNS answer")
	require.Equal(t, []string{"recyclarr-pod", "recyclarr-other-pod"}, newPort.Evidence.Pods)
	require.Equal(t, "github.com", newPort.Evidence.Domain)
	require.Equal(t, 3, newPort.Evidence.Labels)
	require.Equal(t, 6, newPort.Evidence.LongestLabel)
	require.InDelta(t, 1.58, newPort.Evidence.Entropy, 0.01) // "api"
	require.Equal(t, []string{"reached by 14 other apps"}, everyday.Evidence.Reasons)
	require.Equal(t, t0.Add(-20*24*time.Hour), everyday.Evidence.ClusterFirstSeen)
}

// TestEvidenceStoreDown: an anomaly whose evidence the store cannot give is
// recorded at once, its prevalence unknown, as a warning.
func TestEvidenceStoreDown(t *testing.T) {
	t.Parallel()
	store := &fakeStore{}
	det := newDetector(t, detector.DefaultOptions(), store)
	det.UseEvidence(fakeEvidence{fn: func(egressd.App, egressd.Destination, string, time.Time, time.Time) (egressd.Evidence, error) {
		return egressd.Evidence{}, errors.New("connection refused")
	}})
	det.LoadApps(map[egressd.App]time.Time{recyclarr: t0.Add(-48 * time.Hour)})
	det.Observe(conn(recyclarr, dst("exfil.example.net", 443), t0))
	drain(t, det)
	require.Len(t, store.raised, 1)
	a := store.raised[0]
	require.Equal(t, egressd.SeverityWarning, a.Severity)
	require.Equal(t, "the store did not answer", a.Evidence.Incomplete)
	require.Equal(t, []string{"prevalence unknown: the store did not answer"}, a.Evidence.Reasons)
}

// TestEvidenceFromBaselineFile: for an app with a committed baseline file,
// the file is its baseline: names under the same registrable domain are
// its siblings, and the file's ports for the same name are known ports.
func TestEvidenceFromBaselineFile(t *testing.T) {
	t.Parallel()
	store := &fakeStore{}
	det := newDetector(t, detector.DefaultOptions(), store)
	det.UseEvidence(fakeEvidence{fn: func(egressd.App, egressd.Destination, string, time.Time, time.Time) (egressd.Evidence, error) {
		return egressd.Evidence{Siblings: []string{"from-the-window.github.com"}}, nil
	}})
	det.SetBaselines([]egressd.Baseline{{Namespace: recyclarr.Namespace, App: recyclarr.Name, Destinations: []egressd.BaselineDestination{
		{Name: "api.github.com", Ports: []egressd.Port{{Number: 443, Protocol: egressd.ProtoTCP}}},
		{Name: "codeload.github.com", Ports: []egressd.Port{{Number: 443, Protocol: egressd.ProtoTCP}}},
		{Name: "ghcr.io", Ports: []egressd.Port{{Number: 443, Protocol: egressd.ProtoTCP}}},
	}}})
	det.LoadApps(map[egressd.App]time.Time{recyclarr: t0.Add(-48 * time.Hour)})
	det.Observe(conn(recyclarr, dst("uploads.github.com", 443), t0))
	det.Observe(conn(recyclarr, dst("api.github.com", 22), t0.Add(time.Second)))
	drain(t, det)
	require.Len(t, store.raised, 2)
	uploads, ssh := store.raised[0], store.raised[1]
	require.Equal(t, []string{"api.github.com", "codeload.github.com"}, uploads.Evidence.Siblings)
	require.Equal(t, egressd.SeverityWarning, uploads.Severity)
	require.Equal(t, []string{"never reached by any app in the cluster", "github.com is in the app's baseline (api.github.com, codeload.github.com)"}, uploads.Evidence.Reasons)
	require.Equal(t, []string{"443/TCP"}, ssh.Evidence.KnownPorts)
	require.Equal(t, egressd.SeverityInfo, ssh.Severity)
}
