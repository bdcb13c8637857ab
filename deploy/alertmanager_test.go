package deploy_test

import (
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/template"
	"github.com/prometheus/alertmanager/types"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/alerts"
)

const pushoverConfig = "alertmanager/egressd-pushover.yml"

// TestAlertmanagerPushover checks the example configuration with the real
// amtool: it loads, egressd's critical alerts (and its critical health
// alerts) route to Pushover with high priority, its other ones to Pushover
// at normal or low priority, others to the default receiver.
func TestAlertmanagerPushover(t *testing.T) {
	t.Parallel()
	amtool := requireTool(t, "amtool", "prometheus-alertmanager")
	out := run(t, 0, "", nil, amtool, "check-config", pushoverConfig)
	require.Contains(t, out, "SUCCESS")

	routes := []struct {
		labels   []string
		receiver string
	}{
		{[]string{"alertname=EgressNovelDestination", "severity=critical", "cluster=homelab", "namespace=media", "app=recyclarr", "destination=exfil.example.net", "port=443/TCP"}, "pushover-critical"},
		{[]string{"alertname=EgressNovelDestination", "severity=warning", "cluster=homelab", "namespace=media", "app=recyclarr", "destination=exfil.example.net", "port=443/TCP"}, "pushover"},
		{[]string{"alertname=EgressNovelDestination", "severity=info", "cluster=homelab", "namespace=media", "app=recyclarr", "destination=api.github.com", "port=8443/TCP"}, "pushover"},
		{[]string{"alertname=EgressDNSTunnel", "severity=critical", "namespace=media", "app=recyclarr"}, "pushover-critical"},
		{[]string{"alertname=EgressVolumeAnomaly", "severity=warning", "namespace=media", "app=recyclarr"}, "pushover"},
		{[]string{"alertname=EgressdHubbleStreamDown", "severity=critical", "namespace=egressd"}, "pushover-critical"},
		{[]string{"alertname=EgressdHubbleStreamDown", "namespace=egressd"}, "pushover"},
		{[]string{"alertname=Watchdog"}, "default"},
		{[]string{"alertname=KubePodCrashLooping", "namespace=media"}, "default"},
	}
	for _, r := range routes {
		args := append([]string{"config", "routes", "test", "--config.file=" + pushoverConfig, "--verify.receivers=" + r.receiver}, r.labels...)
		run(t, 0, "", nil, amtool, args...)
	}
}

// TestPushoverTemplates renders the Pushover receiver's templates with the
// alerts egressd posts (alerts.PostableAlert), as Alertmanager would.
func TestPushoverTemplates(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(pushoverConfig)
	require.NoError(t, err)
	var cfg struct {
		Receivers []struct {
			Name     string           `json:"name"`
			Pushover []map[string]any `json:"pushover_configs"`
		} `json:"receivers"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &cfg))
	receivers := map[string]map[string]any{}
	for _, r := range cfg.Receivers {
		if len(r.Pushover) > 0 {
			require.Len(t, r.Pushover, 1)
			receivers[r.Name] = r.Pushover[0]
		}
	}
	require.Contains(t, receivers, "pushover")
	require.Contains(t, receivers, "pushover-critical")

	// Alertmanager's Data decides firing or resolved by the wall clock.
	now := time.Now().UTC().Truncate(time.Second)
	opts := alerts.DefaultOptions()
	opts.ExternalURL = "https://egressd.example.org"
	novel := egressd.Anomaly{
		Kind:           egressd.AnomalyNovelDestination,
		App:            egressd.App{Cluster: "homelab", Namespace: "media", Name: "recyclarr"},
		Destination:    egressd.Destination{Name: "exfil.example.net", Port: 443, Protocol: "TCP"},
		Time:           now.Add(-2 * time.Second),
		Pod:            "recyclarr-7d9f8b6c5d-x2k9p",
		Node:           "k8s-node-1",
		Verdict:        egressd.VerdictForwarded,
		BaselineSource: "window",
		Severity:       egressd.SeverityCritical,
		Evidence: egressd.Evidence{Domain: "example.net", PortClass: "well-known", Pods: []string{"recyclarr-7d9f8b6c5d-x2k9p"},
			Reasons: []string{"never reached by any app in the cluster"}},
	}
	novel.Fingerprint = egressd.NoveltyFingerprint(novel.App, novel.Destination)
	newPort := novel
	newPort.Destination = egressd.Destination{Name: "api.github.com", Port: 8443, Protocol: "TCP"}
	newPort.Fingerprint = egressd.NoveltyFingerprint(newPort.App, newPort.Destination)
	newPort.Severity = egressd.SeverityInfo
	newPort.Evidence = egressd.Evidence{Domain: "github.com", KnownPorts: []string{"443/TCP"}, PortClass: "registered",
		Reasons: []string{"the app already reaches api.github.com on 443/TCP", "high port"}}
	volume := egressd.Anomaly{
		Kind:     egressd.AnomalyEgressVolume,
		App:      egressd.App{Cluster: "homelab", Namespace: "media", Name: "sonarr"},
		Time:     now.Add(-3 * time.Minute),
		Pod:      "sonarr-0",
		Severity: egressd.SeverityWarning,
		Evidence: egressd.Evidence{Reasons: []string{"sends 120x its average"}},
	}
	volume.Fingerprint = egressd.VolumeFingerprint(volume.App, volume.Time)

	tests := []struct {
		name     string
		receiver string
		anomaly  egressd.Anomaly
		resolved bool
		want     map[string][]string // field -> substrings of the rendered text
	}{
		{"novel destination no app reached", "pushover-critical", novel, false, map[string][]string{
			"title":    {"EgressNovelDestination media/recyclarr (critical)"},
			"message":  {"media/recyclarr", "exfil.example.net", "recyclarr-7d9f8b6c5d-x2k9p", novel.Time.Format(time.RFC3339), "severity: critical (never reached by any app in the cluster)", "cluster first seen: never before"},
			"url":      {"https://egressd.example.org" + alerts.AnomalyPath + novel.Fingerprint},
			"priority": {"1"},
		}},
		{"resolved novel destination", "pushover-critical", novel, true, map[string][]string{
			"title":    {"[resolved] EgressNovelDestination media/recyclarr"},
			"priority": {"-1"},
		}},
		{"a known host on a new port", "pushover", newPort, false, map[string][]string{
			"title":    {"EgressNovelDestination media/recyclarr (info)"},
			"message":  {"severity: info (the app already reaches api.github.com on 443/TCP; high port)", "app's other ports: 443/TCP"},
			"priority": {"-1"},
		}},
		{"egress volume", "pushover", volume, false, map[string][]string{
			"title":    {"EgressVolumeAnomaly media/sonarr (warning)"},
			"message":  {"media/sonarr", "sonarr-0", "severity: warning (sends 120x its average)"},
			"priority": {"0"},
		}},
		{"resolved egress volume", "pushover", volume, true, map[string][]string{
			"priority": {"-1"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pa := alerts.PostableAlert(egressd.Delivery{Anomaly: tt.anomaly, Resolved: tt.resolved}, opts, now)
			a := &types.Alert{Alert: model.Alert{
				Labels:       model.LabelSet{},
				Annotations:  model.LabelSet{},
				StartsAt:     time.Time(pa.StartsAt),
				EndsAt:       time.Time(pa.EndsAt),
				GeneratorURL: string(pa.GeneratorURL),
			}}
			for k, v := range pa.Labels {
				a.Labels[model.LabelName(k)] = model.LabelValue(v)
			}
			for k, v := range pa.Annotations {
				a.Annotations[model.LabelName(k)] = model.LabelValue(v)
			}
			if tt.resolved {
				// Alertmanager sees a resolved alert once its end has passed.
				a.EndsAt = now.Add(-time.Second)
			}
			tmpl, err := template.FromGlobs(nil)
			require.NoError(t, err)
			tmpl.ExternalURL, err = url.Parse("http://alertmanager.monitoring.svc:9093")
			require.NoError(t, err)
			group := model.LabelSet{}
			for _, l := range []model.LabelName{"alertname", "severity", "cluster", "namespace", "app", "destination", "port"} {
				if v, ok := a.Labels[l]; ok {
					group[l] = v
				}
			}
			data := tmpl.Data("pushover", group, group, "", a)
			for field, wants := range tt.want {
				text, ok := receivers[tt.receiver][field].(string)
				require.True(t, ok, "%s pushover_configs[0].%s is a string", tt.receiver, field)
				got, err := tmpl.ExecuteTextString(text, data)
				require.NoError(t, err, "render %s", field)
				require.NotContains(t, got, "<no value>", field)
				for _, w := range wants {
					if field == "priority" {
						require.Equal(t, w, got, "priority")
						continue
					}
					require.Contains(t, got, w, "%s rendered as %q", field, got)
				}
				if field == "title" {
					require.NotContains(t, got, "\n", "title is one line")
					require.Equal(t, strings.TrimSpace(got), got)
				}
			}
		})
	}
}
