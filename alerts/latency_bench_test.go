package alerts_test

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/egressd/egressd/alerts"
	"github.com/egressd/egressd/alerts/amtest"
)

// BenchmarkDeliveryLatency measures the alert stage of BENCHMARKS.md's target
// "flow received -> alert accepted by a real Alertmanager: p99 < 1 s": from a
// delivery becoming due in the outbox and Wake, to the real Alertmanager
// listing the alert in GET /api/v2/alerts (p50-ms, p99-ms, max-ms). The
// listing is polled back to back, so a measurement includes up to one GET of
// detection delay; accepted-p50-ms and accepted-p99-ms time the same path up
// to the Sender recording Alertmanager's 200. The Sender runs with the
// default options (PollInterval 1 s), so only Wake makes it fast. It
// reports; it asserts no time.
func BenchmarkDeliveryLatency(b *testing.B) {
	rcv := amtest.NewReceiver(b)
	am := amtest.Start(b, amtest.Options{WebhookURL: rcv.URL(), RepeatInterval: time.Hour})
	ob := newMemOutbox()
	opts := alerts.DefaultOptions()
	opts.Targets = []string{am.URL()}
	s, err := alerts.NewSender(ob, opts, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()

	// Each round fires the same alert (app="bench") and resolves it
	// afterwards, so Alertmanager holds one alert however many rounds run:
	// GET /api/v2/alerts walks every stored alert, and a growing store
	// would make the listing, not the delivery, what is measured.
	const filter = `app="bench"`
	var lat, accepted []time.Duration
	i := 0
	for b.Loop() {
		i++
		a := testAnomaly("bench" + strconv.Itoa(i))
		a.App.Name = "bench"

		start := time.Now()
		id := ob.Add(am.URL(), a)
		s.Wake()
		for {
			listed, err := am.Alerts(ctx, filter)
			if err != nil {
				b.Fatal(err)
			}
			if len(listed) > 0 {
				break
			}
		}
		lat = append(lat, time.Since(start))
		// The Sender records success after Alertmanager's 200, which may
		// come after the listing shows the alert.
		row, err := ob.WaitRow(ctx, id, func(r memRow) bool { return r.Sent > 0 })
		if err != nil {
			b.Fatal(err)
		}
		accepted = append(accepted, row.SentAt.Sub(start))

		ob.Resolve(id, time.Now())
		s.Wake()
		if _, err := ob.WaitRow(ctx, id, func(r memRow) bool { return r.Done }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(quantileMS(lat, 0.50), "p50-ms")
	b.ReportMetric(quantileMS(lat, 0.99), "p99-ms")
	b.ReportMetric(quantileMS(lat, 1), "max-ms")
	// The same path up to the recorded 200, without the listing's polls.
	b.ReportMetric(quantileMS(accepted, 0.50), "accepted-p50-ms")
	b.ReportMetric(quantileMS(accepted, 0.99), "accepted-p99-ms")
}

// quantileMS returns the q quantile of ds in milliseconds (nearest rank).
func quantileMS(ds []time.Duration, q float64) float64 {
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return float64(ds[int(q*float64(len(ds)-1))]) / float64(time.Millisecond)
}
