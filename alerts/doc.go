// Package alerts delivers anomalies to Prometheus Alertmanager: the last
// stage of the pipeline, after the detector has recorded an anomaly and
// PostgreSQL has queued one delivery per configured Alertmanager in its
// outbox.
//
// A [Sender] claims due deliveries from an [Outbox] (leased, so several
// egressd replicas never send the same row at once), groups them by
// Alertmanager and POSTs each group as one batch to /api/v2/alerts with the
// official client (github.com/prometheus/alertmanager/api/v2/client). Each
// Alertmanager has its own worker goroutine, so one that hangs or is down
// delays nobody else. The outcome goes back to the outbox:
//
//   - 200: DeliverySent. A firing alert is due again after ResendInterval
//     (Alertmanager forgets an alert whose endsAt passes, so firing alerts
//     are re-posted with endsAt = now + 4 x ResendInterval until they
//     resolve); a resolved one is sent once, with endsAt = now, and is done.
//   - 400, 413 and 422: the alert itself was refused (invalid, or too large
//     for a proxy in front); retrying cannot help, so the delivery is
//     dropped (DeliveryDropped) and counted. Alertmanager accepts the valid
//     alerts of a batch and answers 400 for the rest, so a refused batch of
//     several alerts is re-posted one alert at a time and only the refused
//     ones are dropped.
//   - Anything else (5xx, network errors, timeouts, and the 4xx that a
//     proxy or a misconfiguration produce: 401, 403, 404, 408, 429...):
//     DeliveryFailed, due again after an exponential, capped and jittered
//     backoff by the delivery's attempts. Dropping on those would lose
//     alerts to a mistake the operator can fix (an outage must lose no
//     alert).
//
// [Sender.Wake] starts a round at once, so an anomaly recorded by the
// detector reaches Alertmanager in milliseconds; PollInterval is only the
// safety net for deliveries that become due later (resends, retries) or
// were queued by another replica.
//
// [PostableAlert] maps a delivery to the Alertmanager model: the labels and
// annotations listed in docs/operations.md (Alerts). Label and annotation values are made
// valid UTF-8 and cut at MaxLabelValueLen and MaxAnnotationLen bytes (ending
// in "...(truncated)"), so a hostile destination name can neither make
// Alertmanager refuse the alert nor grow a notification without bound.
//
// Subpackage amtest runs the real Alertmanager binary for tests.
package alerts
