package alerts_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/alerts"
	"github.com/egressd/egressd/alerts/amtest"
)

// These tests run the real Alertmanager binary (alerts/amtest) with a webhook
// receiver, so an alert is checked after Alertmanager's own validation,
// routing, grouping and notification.

// integrationOptions retry fast and poll often: the real clock runs.
func integrationOptions(targets ...string) alerts.Options {
	o := alerts.DefaultOptions()
	o.Targets = targets
	o.ExternalURL = "http://egressd.test:9090"
	o.BackoffMin = 20 * time.Millisecond
	o.BackoffMax = 200 * time.Millisecond
	o.PollInterval = 50 * time.Millisecond
	o.Timeout = 2 * time.Second
	return o
}

func deadline(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestAlertmanagerNotifies(t *testing.T) {
	t.Parallel()
	ctx := deadline(t)
	rcv := amtest.NewReceiver(t)
	am := amtest.Start(t, amtest.Options{WebhookURL: rcv.URL()})
	ob := newMemOutbox()
	s, _ := newSender(t, ob, integrationOptions(am.URL()))
	runSender(t, s)

	a := testAnomaly("c0ffee")
	id := ob.Add(am.URL(), a)
	s.Wake()

	got, err := rcv.Wait(ctx, amtest.Labeled("firing", map[string]string{"app": "recyclarr"}))
	require.NoError(t, err)
	require.Equal(t, map[string]string{
		"alertname":   "EgressNovelDestination",
		"severity":    "warning",
		"cluster":     "homelab",
		"namespace":   "media",
		"app":         "recyclarr",
		"destination": "evil.example.net",
		"port":        "443/TCP",
		"verdict":     "FORWARDED",
	}, got.Labels)
	for k, v := range map[string]string{
		"summary":         a.Summary,
		"first_seen":      "2026-11-21T09:30:00Z",
		"example_pod":     "recyclarr-7d9f8b6c4-x2x9z",
		"flow_count":      "3",
		"baseline_source": "files",
		"fingerprint":     "c0ffee",
		"link":            "http://egressd.test:9090/triage/anomalies/c0ffee",
	} {
		require.Equal(t, v, got.Annotations[k], k)
	}
	require.Contains(t, got.Annotations["description"], "destination: evil.example.net 443/TCP")
	require.Equal(t, "http://egressd.test:9090/triage/anomalies/c0ffee", got.GeneratorURL)
	require.True(t, got.StartsAt.Equal(a.Time), "startsAt %s", got.StartsAt)

	// Alertmanager notifies before the Sender records the success.
	row, err := ob.WaitRow(ctx, id, func(r memRow) bool { return r.Sent >= 1 })
	require.NoError(t, err)
	require.False(t, row.Done, "a firing alert stays in the outbox for resends")
	require.WithinDuration(t, time.Now().Add(time.Minute), row.Next, 10*time.Second)

	listed, err := am.Alerts(ctx, `app="recyclarr"`)
	require.NoError(t, err)
	require.Len(t, listed, 1)
	require.WithinDuration(t, time.Now().Add(4*time.Minute), time.Time(*listed[0].EndsAt), 10*time.Second)
}

// Alertmanager down: the delivery fails, is retried with backoff, and
// arrives once Alertmanager is back.
func TestAlertmanagerOutage(t *testing.T) {
	t.Parallel()
	ctx := deadline(t)
	rcv := amtest.NewReceiver(t)
	am := amtest.Start(t, amtest.Options{WebhookURL: rcv.URL()})
	am.Stop()

	ob := newMemOutbox()
	s, _ := newSender(t, ob, integrationOptions(am.URL()))
	runSender(t, s)
	id := ob.Add(am.URL(), testAnomaly("0u7a9e"))
	s.Wake()

	row, err := ob.WaitRow(ctx, id, func(r memRow) bool { return r.Failed >= 2 })
	require.NoError(t, err, "retried while Alertmanager is down")
	require.Contains(t, row.LastErr, "connection refused")
	require.Zero(t, row.Sent)

	am.Restart()
	_, err = rcv.Wait(ctx, amtest.Labeled("firing", map[string]string{"app": "recyclarr"}))
	require.NoError(t, err)
	row, err = ob.WaitRow(ctx, id, func(r memRow) bool { return r.Sent >= 1 })
	require.NoError(t, err)
	require.Zero(t, row.D.Attempts, "a success resets attempts")
}

// A resolved anomaly is sent once with endsAt = now: the receiver is told it
// resolved, and the delivery is done.
func TestAlertmanagerResolved(t *testing.T) {
	t.Parallel()
	ctx := deadline(t)
	rcv := amtest.NewReceiver(t)
	am := amtest.Start(t, amtest.Options{WebhookURL: rcv.URL()})
	ob := newMemOutbox()
	s, _ := newSender(t, ob, integrationOptions(am.URL()))
	runSender(t, s)

	id := ob.Add(am.URL(), testAnomaly("2e501ed"))
	s.Wake()
	firing, err := rcv.Wait(ctx, amtest.Labeled("firing", map[string]string{"app": "recyclarr"}))
	require.NoError(t, err)

	ob.Resolve(id, time.Now())
	s.Wake()
	resolved, err := rcv.Wait(ctx, amtest.Labeled("resolved", map[string]string{"app": "recyclarr"}))
	require.NoError(t, err)
	require.Equal(t, firing.Labels, resolved.Labels)
	require.Equal(t, firing.Fingerprint, resolved.Fingerprint, "the same Alertmanager alert")
	require.WithinDuration(t, time.Now(), resolved.EndsAt, 10*time.Second)

	row, err := ob.WaitRow(ctx, id, func(r memRow) bool { return r.Done })
	require.NoError(t, err)
	require.False(t, row.Dropped)
	listed, err := am.Alerts(ctx, `app="recyclarr"`)
	require.NoError(t, err)
	require.Empty(t, listed, "no longer active")
}

// Every configured Alertmanager gets the alert through its own delivery.
func TestAlertmanagerEveryTarget(t *testing.T) {
	t.Parallel()
	ctx := deadline(t)
	rcv1, rcv2 := amtest.NewReceiver(t), amtest.NewReceiver(t)
	am1 := amtest.Start(t, amtest.Options{WebhookURL: rcv1.URL()})
	am2 := amtest.Start(t, amtest.Options{WebhookURL: rcv2.URL()})
	ob := newMemOutbox()
	s, _ := newSender(t, ob, integrationOptions(am1.URL(), am2.URL()))
	runSender(t, s)

	a := testAnomaly("7a29e75")
	ob.Add(am1.URL(), a)
	ob.Add(am2.URL(), a)
	s.Wake()
	for _, rcv := range []*amtest.Receiver{rcv1, rcv2} {
		got, err := rcv.Wait(ctx, amtest.Labeled("firing", map[string]string{"app": "recyclarr"}))
		require.NoError(t, err)
		require.Equal(t, "7a29e75", got.Annotations["fingerprint"])
	}
}

// TestSenderLastRoundDelivers: an anomaly recorded just before the stop,
// with no Wake and no poll due, is claimed and posted by the Sender's last
// round before Run returns; the outbox records the success.
func TestSenderLastRoundDelivers(t *testing.T) {
	t.Parallel()
	ctx := deadline(t)
	rcv := amtest.NewReceiver(t)
	am := amtest.Start(t, amtest.Options{WebhookURL: rcv.URL()})
	ob := newMemOutbox()
	opts := integrationOptions(am.URL())
	opts.PollInterval = time.Hour // only the last round can claim it
	s, _ := newSender(t, ob, opts)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()

	id := ob.Add(am.URL(), testAnomaly("1a57"))
	stop()
	require.NoError(t, <-done)

	require.Equal(t, 1, ob.Row(id).Sent, "the outbox does not record the last round's POST")
	got, err := am.Alerts(ctx, `app="recyclarr"`)
	require.NoError(t, err)
	require.Len(t, got, 1, "Alertmanager does not list the alert of the last round")
	require.Equal(t, "1a57", got[0].Annotations["fingerprint"])
}
