package alerts_test

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-openapi/strfmt"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/alertmanager/api/v2/models"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/alerts"
)

func TestPostableAlert(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	seen := time.Date(2026, 11, 21, 9, 30, 0, 0, time.UTC)
	opts := alerts.DefaultOptions()
	opts.ExternalURL = "https://egressd.example.com/"

	novel := testAnomaly("4f1c2a")
	volume := egressd.Anomaly{
		Fingerprint:    "9e9e",
		Kind:           egressd.AnomalyEgressVolume,
		App:            egressd.App{Cluster: "homelab", Namespace: "media", Name: "qbittorrent"},
		Time:           seen,
		Pod:            "qbittorrent-0",
		BaselineSource: "history",
		Summary:        "media/qbittorrent sends 52428800.0 bytes/s, 120x its 24h0m0s average of 436906.667 bytes/s",
		Details:        map[string]string{"factor": "120", "unit": "bytes/s"},
	}
	ranked := novel
	ranked.Severity = egressd.SeverityCritical
	ranked.Evidence = egressd.Evidence{Domain: "example.net", Labels: 3, LongestLabel: 8, Entropy: 2, PortClass: "well-known",
		Pods: []string{"recyclarr-7d9f8b6c4-x2x9z"}, Reasons: []string{"never reached by any app in the cluster", "high port"}}
	flood := novel
	flood.Kind = egressd.AnomalyNovelFlood
	flood.Fingerprint = "f100d"
	flood.Summary = ""
	flood.Details = nil

	dt := func(t time.Time) strfmt.DateTime { return strfmt.DateTime(t) }
	novelLabels := models.LabelSet{
		"alertname": "EgressNovelDestination", "severity": "warning", "cluster": "homelab",
		"namespace": "media", "app": "recyclarr", "destination": "evil.example.net", "port": "443/TCP",
		"verdict": "FORWARDED",
	}
	novelAnnotations := models.LabelSet{
		"summary": "media/recyclarr reached evil.example.net:443/TCP, new for this app",
		"description": "media/recyclarr reached evil.example.net:443/TCP, new for this app.\n" +
			"app: media/recyclarr (cluster homelab)\n" +
			"destination: evil.example.net 443/TCP\n" +
			"first seen: 2026-11-21T09:30:00Z\n" +
			"pod: recyclarr-7d9f8b6c4-x2x9z on node node-1\n" +
			"compared with: files\n" +
			"flows: 3\n" +
			"verdict: FORWARDED",
		"first_seen":      "2026-11-21T09:30:00Z",
		"example_pod":     "recyclarr-7d9f8b6c4-x2x9z",
		"flow_count":      "3",
		"baseline_source": "files",
		"fingerprint":     "4f1c2a",
		"link":            "https://egressd.example.com/triage/anomalies/4f1c2a",
	}
	with := func(base models.LabelSet, kv ...string) models.LabelSet {
		out := models.LabelSet{}
		for k, v := range base {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(out, kv[i])
			} else {
				out[kv[i]] = kv[i+1]
			}
		}
		return out
	}

	tests := []struct {
		name string
		d    egressd.Delivery
		opts func(o *alerts.Options)
		want *models.PostableAlert
	}{
		{
			name: "novel destination firing",
			d:    egressd.Delivery{ID: 1, Target: "http://am:9093", Anomaly: novel},
			want: &models.PostableAlert{
				Alert:       models.Alert{Labels: novelLabels, GeneratorURL: "https://egressd.example.com/triage/anomalies/4f1c2a"},
				Annotations: novelAnnotations,
				StartsAt:    dt(seen),
				EndsAt:      dt(now.Add(4 * time.Minute)),
			},
		},
		{
			name: "novel destination resolved ends now",
			d:    egressd.Delivery{ID: 1, Anomaly: novel, Resolved: true},
			want: &models.PostableAlert{
				Alert:       models.Alert{Labels: novelLabels, GeneratorURL: "https://egressd.example.com/triage/anomalies/4f1c2a"},
				Annotations: novelAnnotations,
				StartsAt:    dt(seen),
				EndsAt:      dt(now),
			},
		},
		{
			name: "no external URL, no link",
			d:    egressd.Delivery{Anomaly: novel},
			opts: func(o *alerts.Options) { o.ExternalURL = "" },
			want: &models.PostableAlert{
				Alert:       models.Alert{Labels: novelLabels},
				Annotations: with(novelAnnotations, "link", ""),
				StartsAt:    dt(seen),
				EndsAt:      dt(now.Add(4 * time.Minute)),
			},
		},
		{
			name: "severity from the evidence, and resend interval",
			d:    egressd.Delivery{Anomaly: ranked},
			opts: func(o *alerts.Options) { o.ResendInterval = 30 * time.Second },
			want: &models.PostableAlert{
				Alert: models.Alert{Labels: with(novelLabels, "severity", "critical"), GeneratorURL: "https://egressd.example.com/triage/anomalies/4f1c2a"},
				Annotations: with(novelAnnotations,
					"description", "media/recyclarr reached evil.example.net:443/TCP, new for this app.\n"+
						"severity: critical (never reached by any app in the cluster; high port)\n"+
						"app: media/recyclarr (cluster homelab)\n"+
						"destination: evil.example.net 443/TCP\n"+
						"first seen: 2026-11-21T09:30:00Z\n"+
						"pod: recyclarr-7d9f8b6c4-x2x9z on node node-1\n"+
						"compared with: files\n"+
						"flows: 3\n"+
						"verdict: FORWARDED",
					"severity_reason", "never reached by any app in the cluster; high port",
					"evidence", "other apps: 0 (in 0 other clusters)\n"+
						"apps on example.net: 0\n"+
						"cluster first seen: never before\n"+
						"name: 3 labels, longest 8, entropy 2.0 bits/char\n"+
						"port: well-known\n"+
						"pods: recyclarr-7d9f8b6c4-x2x9z"),
				StartsAt: dt(seen),
				EndsAt:   dt(now.Add(2 * time.Minute)),
			},
		},
		{
			name: "volume has no destination",
			d:    egressd.Delivery{Anomaly: volume},
			want: &models.PostableAlert{
				Alert: models.Alert{
					Labels: models.LabelSet{
						"alertname": "EgressVolumeAnomaly", "severity": "warning", "cluster": "homelab",
						"namespace": "media", "app": "qbittorrent",
					},
					GeneratorURL: "https://egressd.example.com/triage/anomalies/9e9e",
				},
				Annotations: models.LabelSet{
					"summary": volume.Summary,
					"description": volume.Summary + ".\n" +
						"app: media/qbittorrent (cluster homelab)\n" +
						"first seen: 2026-11-21T09:30:00Z\n" +
						"pod: qbittorrent-0\n" +
						"compared with: history\n" +
						"factor: 120\n" +
						"unit: bytes/s",
					"first_seen":      "2026-11-21T09:30:00Z",
					"example_pod":     "qbittorrent-0",
					"baseline_source": "history",
					"fingerprint":     "9e9e",
					"link":            "https://egressd.example.com/triage/anomalies/9e9e",
				},
				StartsAt: dt(seen),
				EndsAt:   dt(now.Add(4 * time.Minute)),
			},
		},
		{
			name: "flood is a novel destination alert with a summary of its own",
			d:    egressd.Delivery{Anomaly: flood},
			want: &models.PostableAlert{
				Alert: models.Alert{Labels: novelLabels, GeneratorURL: "https://egressd.example.com/triage/anomalies/f100d"},
				Annotations: with(novelAnnotations,
					"summary", "media/recyclarr reached many new destinations, such as evil.example.net:443/TCP",
					"description", "media/recyclarr reached many new destinations, such as evil.example.net:443/TCP.\n"+
						"app: media/recyclarr (cluster homelab)\n"+
						"destination: evil.example.net 443/TCP\n"+
						"first seen: 2026-11-21T09:30:00Z\n"+
						"pod: recyclarr-7d9f8b6c4-x2x9z on node node-1\n"+
						"compared with: files",
					"flow_count", "",
					"fingerprint", "f100d",
					"link", "https://egressd.example.com/triage/anomalies/f100d"),
				StartsAt: dt(seen),
				EndsAt:   dt(now.Add(4 * time.Minute)),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := opts
			if tt.opts != nil {
				tt.opts(&o)
			}
			got := alerts.PostableAlert(tt.d, o, now)
			require.Empty(t, cmp.Diff(tt.want, got), "(-want +got)")
			require.NoError(t, got.Validate(strfmt.Default))
		})
	}
}

func TestPostableAlertTimes(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	opts := alerts.DefaultOptions()
	tests := []struct {
		name         string
		seen         time.Time
		resolved     bool
		starts, ends time.Time
	}{
		{name: "firing", seen: now.Add(-time.Hour), starts: now.Add(-time.Hour), ends: now.Add(4 * time.Minute)},
		{name: "resolved", seen: now.Add(-time.Hour), resolved: true, starts: now.Add(-time.Hour), ends: now},
		{name: "anomaly time ahead of the clock, firing", seen: now.Add(time.Hour), starts: now, ends: now.Add(4 * time.Minute)},
		{name: "anomaly time ahead of the clock, resolved", seen: now.Add(time.Hour), resolved: true, starts: now, ends: now},
		{name: "no anomaly time", starts: now, ends: now.Add(4 * time.Minute)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := testAnomaly("x")
			a.Time = tt.seen
			got := alerts.PostableAlert(egressd.Delivery{Anomaly: a, Resolved: tt.resolved}, opts, now)
			require.Equal(t, strfmt.DateTime(tt.starts).String(), got.StartsAt.String())
			require.Equal(t, strfmt.DateTime(tt.ends).String(), got.EndsAt.String())
		})
	}
}

func TestPostableAlertBounds(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	a := testAnomaly("x")
	a.App.Cluster = ""
	a.Destination.Name = strings.Repeat("a", 300)
	a.App.Name = strings.Repeat("é", 200) // 400 bytes: cut at a rune boundary
	a.Pod = "bad\xffpod\nname"
	a.Summary = strings.Repeat("s", 5000)
	a.Details = map[string]string{"flows": "12\x00"}
	got := alerts.PostableAlert(egressd.Delivery{Anomaly: a}, alerts.DefaultOptions(), now)

	require.NotContains(t, got.Labels, "cluster", "empty labels are left out")
	dest := got.Labels["destination"]
	require.Equal(t, strings.Repeat("a", alerts.MaxLabelValueLen-len(alerts.TruncatedSuffix))+alerts.TruncatedSuffix, dest)
	require.True(t, strings.HasSuffix(got.Labels["app"], "é"+alerts.TruncatedSuffix))
	require.Equal(t, "bad\uFFFDpod\uFFFDname", got.Annotations["example_pod"])
	require.Equal(t, "12\uFFFD", got.Annotations["flow_count"])
	require.True(t, strings.HasSuffix(got.Annotations["description"], alerts.TruncatedSuffix))
	for _, set := range []struct {
		m   models.LabelSet
		max int
	}{{got.Labels, alerts.MaxLabelValueLen}, {got.Annotations, alerts.MaxAnnotationLen}} {
		for k, v := range set.m {
			require.True(t, utf8.ValidString(v), "%s is not UTF-8", k)
			require.LessOrEqual(t, len(v), set.max, k)
		}
	}
	require.Len(t, got.Annotations["summary"], alerts.MaxAnnotationLen)
}

func TestLink(t *testing.T) {
	t.Parallel()
	require.Equal(t, "http://e:9090/triage/anomalies/ab%2Fc", alerts.Link("http://e:9090/", "ab/c"))
	require.Equal(t, "", alerts.Link("", "abc"))
	require.Equal(t, "", alerts.Link("http://e", ""))
}
