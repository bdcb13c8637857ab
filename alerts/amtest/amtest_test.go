package amtest_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/alerts/amtest"
)

// post sends one alert the way any client does, without egressd's code.
func post(t *testing.T, am *amtest.Alertmanager, body string) {
	t.Helper()
	resp, err := http.Post(am.URL()+"/api/v2/alerts", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestAlertmanagerStopRestart(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rcv := amtest.NewReceiver(t)
	am := amtest.Start(t, amtest.Options{WebhookURL: rcv.URL()})
	url := am.URL()

	post(t, am, `[{"labels":{"alertname":"AmtestOne","job":"x"}}]`)
	got, err := rcv.Wait(ctx, amtest.Labeled("firing", map[string]string{"alertname": "AmtestOne"}))
	require.NoError(t, err)
	require.Equal(t, "x", got.Labels["job"])
	listed, err := am.Alerts(ctx, `alertname="AmtestOne"`)
	require.NoError(t, err)
	require.Len(t, listed, 1)

	am.Stop()
	am.Stop() // idempotent
	_, err = am.Alerts(ctx)
	require.Error(t, err, "stopped")

	am.Restart()
	require.Equal(t, url, am.URL(), "same port")
	listed, err = am.Alerts(ctx)
	require.NoError(t, err)
	require.Empty(t, listed, "Alertmanager keeps alerts in memory only")
	post(t, am, `[{"labels":{"alertname":"AmtestTwo"}}]`)
	_, err = rcv.Wait(ctx, amtest.Labeled("", map[string]string{"alertname": "AmtestTwo"}))
	require.NoError(t, err)
	require.Len(t, rcv.Messages(), 2)
	require.Contains(t, am.Logs(), "Listening on")
}

func TestReceiverWaitHonoursContext(t *testing.T) {
	t.Parallel()
	rcv := amtest.NewReceiver(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := rcv.Wait(ctx, func(amtest.Alert) bool { return true })
	require.ErrorIs(t, err, context.Canceled)
}

func TestConfig(t *testing.T) {
	t.Parallel()
	got := amtest.Config(amtest.Options{WebhookURL: "http://127.0.0.1:1/webhook", GroupInterval: 100 * time.Millisecond, RepeatInterval: 5 * time.Second})
	require.Contains(t, got, "group_wait: 0ms\n  group_interval: 100ms\n  repeat_interval: 5000ms\n")
	require.Contains(t, got, `url: "http://127.0.0.1:1/webhook"`)
	require.Contains(t, got, "send_resolved: true")
}

// Not t.Parallel: it sets an environment variable.
func TestBinaryMissingSaysWhatToInstall(t *testing.T) {
	t.Setenv(amtest.BinaryEnv, "/nonexistent/alertmanager")
	_, err := amtest.Binary()
	require.ErrorContains(t, err, "apt-get install prometheus-alertmanager")
}
