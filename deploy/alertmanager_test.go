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
// amtool: it loads, egressd's alerts (and its health alerts) route to
// Pushover, others to the default receiver.
func TestAlertmanagerPushover(t *testing.T) {
	t.Parallel()
	amtool := requireTool(t, "amtool", "prometheus-alertmanager")
	out := run(t, 0, "", nil, amtool, "check-config", pushoverConfig)
	require.Contains(t, out, "SUCCESS")

	routes := []struct {
		labels   []string
		receiver string
	}{
		{[]string{"alertname=EgressNovelDestination", "severity=warning", "cluster=homelab", "namespace=media", "app=recyclarr", "destination=exfil.example.net", "port=443/TCP"}, "pushover"},
		{[]string{"alertname=EgressVolumeAnomaly", "namespace=media", "app=recyclarr"}, "pushover"},
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
	var pushover map[string]any
	for _, r := range cfg.Receivers {
		if r.Name == "pushover" {
			require.Len(t, r.Pushover, 1)
			pushover = r.Pushover[0]
		}
	}
	require.NotNil(t, pushover, "receiver pushover")

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
	}
	novel.Fingerprint = egressd.NoveltyFingerprint(novel.App, novel.Destination)
	volume := egressd.Anomaly{
		Kind: egressd.AnomalyEgressVolume,
		App:  egressd.App{Cluster: "homelab", Namespace: "media", Name: "sonarr"},
		Time: now.Add(-3 * time.Minute),
		Pod:  "sonarr-0",
	}
	volume.Fingerprint = egressd.VolumeFingerprint(volume.App, volume.Time)

	tests := []struct {
		name     string
		anomaly  egressd.Anomaly
		resolved bool
		want     map[string][]string // field -> substrings of the rendered text
	}{
		{"novel destination", novel, false, map[string][]string{
			"title":    {"EgressNovelDestination media/recyclarr"},
			"message":  {"media/recyclarr", "exfil.example.net", "recyclarr-7d9f8b6c5d-x2k9p", novel.Time.Format(time.RFC3339)},
			"url":      {"https://egressd.example.org" + alerts.AnomalyPath + novel.Fingerprint},
			"priority": {"1"},
		}},
		{"resolved novel destination", novel, true, map[string][]string{
			"title":    {"[resolved] EgressNovelDestination media/recyclarr"},
			"priority": {"-1"},
		}},
		{"egress volume", volume, false, map[string][]string{
			"title":   {"EgressVolumeAnomaly media/sonarr"},
			"message": {"media/sonarr", "sonarr-0"},
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
			for _, l := range []model.LabelName{"alertname", "cluster", "namespace", "app", "destination", "port"} {
				if v, ok := a.Labels[l]; ok {
					group[l] = v
				}
			}
			data := tmpl.Data("pushover", group, group, "", a)
			for field, wants := range tt.want {
				text, ok := pushover[field].(string)
				require.True(t, ok, "pushover_configs[0].%s is a string", field)
				got, err := tmpl.ExecuteTextString(text, data)
				require.NoError(t, err, "render %s", field)
				require.NotContains(t, got, "<no value>", field)
				for _, w := range wants {
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
