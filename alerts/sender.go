package alerts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/go-openapi/runtime"
	"github.com/prometheus/alertmanager/api/v2/client/alert"
	"github.com/prometheus/alertmanager/api/v2/models"

	"github.com/egressd/egressd"
)

// recordTimeout bounds one outbox write of an outcome. Outcomes are written
// even while Run is stopping (a POST that completed should not be sent
// again), so they do not use Run's context.
const recordTimeout = 10 * time.Second

// maxErrMsgLen bounds the error message stored with a failed or dropped
// delivery.
const maxErrMsgLen = 512

// Sender delivers the outbox to every configured Alertmanager. Create it with
// NewSender and call Run once.
type Sender struct {
	outbox  Outbox
	opts    Options
	log     *slog.Logger
	m       *Metrics
	targets []*target
	byKey   map[string]*target
	wake    chan struct{}
}

// NewSender returns a Sender for opts, which must be valid. A nil logger
// discards logs; nil metrics are created unregistered.
func NewSender(outbox Outbox, opts Options, logger *slog.Logger, m *Metrics) (*Sender, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 4
	// The client timeout backs up the per-request one the API client sets
	// from the same value.
	hc := &http.Client{Transport: tr, Timeout: opts.Timeout}
	s := &Sender{
		outbox: outbox,
		opts:   opts,
		log:    logger,
		m:      m,
		byKey:  map[string]*target{},
		wake:   make(chan struct{}, 1),
	}
	for _, raw := range opts.Targets {
		t := newTarget(raw, hc, m)
		s.targets = append(s.targets, t)
		s.byKey[t.key] = t
	}
	return s, nil
}

// Wake makes the Sender look at the outbox now rather than at the next poll.
// It never blocks; call it after recording an anomaly.
func (s *Sender) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run claims and delivers until ctx is cancelled, then gives the outbox a
// last round: it claims what is due once more (an anomaly recorded just
// before the stop included) and posts it, and returns nil once every POST
// has ended and its outcome is recorded, or after LastRoundTimeout, when
// the POSTs still in flight are cancelled and their leases left to run out
// (another replica, or the next start, sends them). Outbox errors are
// logged, counted and retried at the next poll; they never stop Run.
//
// One goroutine per Alertmanager posts what the claiming loop hands it, so
// a slow or unreachable Alertmanager never holds up another one.
func (s *Sender) Run(ctx context.Context) error {
	// The workers outlive ctx for the last round; finish tells them to
	// return once they have posted everything handed to them.
	wctx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWorkers()
	finish := make(chan struct{})
	var wg sync.WaitGroup
	for _, t := range s.targets {
		wg.Go(func() { s.work(wctx, t, finish) })
	}
	s.loop(ctx)

	last, cancel := context.WithTimeout(wctx, s.lastRoundTimeout())
	defer cancel()
	for {
		full, err := s.claim(last)
		if !full || err != nil || last.Err() != nil {
			break
		}
	}
	close(finish)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-last.Done():
		s.log.Warn("alerts_last_round_timeout", "timeout", s.lastRoundTimeout())
		stopWorkers()
		<-done
	}
	return nil
}

// lastRoundTimeout bounds the last round: a claim and a POST per batch, the
// POST bounded by Options.Timeout.
func (s *Sender) lastRoundTimeout() time.Duration {
	return 2 * s.opts.Timeout
}

// loop claims until ctx is cancelled.
func (s *Sender) loop(ctx context.Context) {
	poll := time.NewTicker(s.opts.PollInterval)
	defer poll.Stop()
	trim := time.NewTicker(TrimInterval)
	defer trim.Stop()
	s.trim(ctx)
	for {
		full, err := s.claim(ctx)
		if ctx.Err() != nil {
			return
		}
		if full && err == nil {
			// More may be due: claim again without waiting.
			continue
		}
		wake := s.wake
		if err != nil {
			// Do not hammer a failing outbox on every Wake.
			wake = nil
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-poll.C:
		case <-trim.C:
			s.trim(ctx)
		}
	}
}

// trim bounds the outbox to Options.MaxPending pending deliveries, when it
// is a Trimmer, and counts what it dropped per target. A failure is logged
// and counted, and tried again at the next TrimInterval.
func (s *Sender) trim(ctx context.Context) {
	tr, ok := s.outbox.(Trimmer)
	if !ok || s.opts.MaxPending == 0 {
		return
	}
	dropped, err := tr.TrimDeliveries(ctx, s.opts.MaxPending)
	if err != nil {
		if ctx.Err() == nil {
			s.m.OutboxErrors.WithLabelValues("trim").Inc()
			s.log.Error("outbox_trim_failed", "err", err)
		}
		return
	}
	total := 0
	for raw, n := range dropped {
		if t := s.byKey[targetKey(raw)]; t != nil {
			t.full.Add(float64(n))
		} else {
			s.m.Dropped.WithLabelValues(unknownTarget, reasonOutboxFull).Add(float64(n))
		}
		total += n
	}
	if total > 0 {
		s.log.Warn("outbox_full_dropped", "deliveries", total, "max_pending", s.opts.MaxPending)
	}
}

// claim claims one batch of due deliveries and hands them to the workers of
// their Alertmanagers. It reports whether the batch was full.
//
// A stop (ctx ending) does not cancel a claim in flight, which is bounded
// by Options.Timeout instead: the outbox may have leased the rows already,
// and rows leased but never handed to a worker would stay out of reach of
// the last round until the lease expired.
func (s *Sender) claim(ctx context.Context) (bool, error) {
	now := s.opts.Now()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.Timeout)
	defer cancel()
	ds, err := s.outbox.ClaimDeliveries(cctx, now, s.opts.Lease, s.opts.BatchSize)
	if err != nil {
		if ctx.Err() != nil {
			return false, nil
		}
		s.m.OutboxErrors.WithLabelValues("claim").Inc()
		s.log.Error("outbox_claim_failed", "err", err)
		return false, err
	}
	byTarget := map[*target][]egressd.Delivery{}
	unknown := map[string][]egressd.Delivery{}
	for _, d := range ds {
		t := s.byKey[targetKey(d.Target)]
		if t == nil {
			unknown[d.Target] = append(unknown[d.Target], d)
			continue
		}
		byTarget[t] = append(byTarget[t], d)
	}
	for t, ds := range byTarget {
		t.add(ds, now)
	}
	for raw, ds := range unknown {
		s.deferUnknown(ctx, raw, ds, now)
	}
	return len(ds) >= s.opts.BatchSize, nil
}

// deferUnknown puts back deliveries for an Alertmanager this Sender is not
// configured with. They are not dropped: during a rolling update, a replica
// with the new configuration delivers them; rows of an Alertmanager removed
// from every replica's configuration are for the outbox's owner to delete.
func (s *Sender) deferUnknown(ctx context.Context, raw string, ds []egressd.Delivery, now time.Time) {
	shown := redactTarget(raw)
	s.m.Sent.WithLabelValues(unknownTarget, resultDeferred).Add(float64(len(ds)))
	s.log.Warn("alerts_target_not_configured", "target", shown, "deliveries", len(ds))
	msg := fmt.Sprintf("alertmanager %s is not configured on this egressd replica", shown)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if err := s.outbox.DeliveryFailed(rctx, ids(ds), now.Add(s.opts.BackoffMax), msg); err != nil {
		s.m.OutboxErrors.WithLabelValues("failed").Inc()
		s.log.Error("outbox_update_failed", "op", "failed", "err", err)
	}
}

// work posts what claim hands to one Alertmanager, batch by batch, until
// ctx is cancelled, or until finish is closed and nothing is left to post.
func (s *Sender) work(ctx context.Context, t *target, finish <-chan struct{}) {
	for {
		finishing := false
		select {
		case <-ctx.Done():
			return
		case <-t.kick:
		case <-finish:
			finishing = true
		}
		for ctx.Err() == nil {
			batch := t.take(s.opts.Now(), s.opts.BatchSize, s.opts.Lease-s.opts.Timeout)
			if len(batch) == 0 {
				break
			}
			s.deliver(ctx, t, batch)
		}
		if finishing {
			return
		}
	}
}

// outcome is what became of one POST.
type outcome int

const (
	outSent     outcome = iota
	outRejected         // refused for good: drop
	outFailed           // try again later
	outCanceled         // Run is stopping: leave the lease to run out
)

// deliver posts one batch and records the outcome. A refused batch of
// several alerts is posted again one alert at a time, so that only the
// alerts Alertmanager refuses are dropped.
func (s *Sender) deliver(ctx context.Context, t *target, batch []egressd.Delivery) {
	for _, d := range batch {
		if d.Attempts > 0 {
			t.retries.Inc()
		}
	}
	now := s.opts.Now()
	out, msg := s.post(ctx, t, batch, now)
	if out == outRejected && len(batch) > 1 {
		for _, d := range batch {
			one := []egressd.Delivery{d}
			out, msg := s.post(ctx, t, one, now)
			s.record(ctx, t, one, out, msg, now)
		}
		return
	}
	s.record(ctx, t, batch, out, msg, now)
}

// post sends one batch with one PostAlerts call.
func (s *Sender) post(ctx context.Context, t *target, batch []egressd.Delivery, now time.Time) (outcome, string) {
	alerts := make(models.PostableAlerts, len(batch))
	for i, d := range batch {
		alerts[i] = PostableAlert(d, s.opts, now)
	}
	params := alert.NewPostAlertsParamsWithContext(ctx).WithTimeout(s.opts.Timeout).WithAlerts(alerts)
	start := time.Now()
	_, err := t.api.PostAlerts(params)
	t.duration.Observe(time.Since(start).Seconds())
	if err == nil {
		return outSent, ""
	}
	if ctx.Err() != nil {
		return outCanceled, ""
	}
	return classify(err)
}

// classify maps a PostAlerts error to an outcome. The generated client
// returns typed errors for 400 and 500 and a runtime.APIError for any other
// status; all implement runtime.ClientResponseStatus. An error without a
// status is a network error or a timeout.
func classify(err error) (outcome, string) {
	var status runtime.ClientResponseStatus
	if !errors.As(err, &status) {
		return outFailed, bound(err.Error(), maxErrMsgLen, false)
	}
	var apiErr *runtime.APIError
	msg := err.Error()
	if errors.As(err, &apiErr) {
		// Its text is the unread response object, not the body.
		msg = fmt.Sprintf("alertmanager answered HTTP %d to %s", apiErr.Code, apiErr.OperationName)
	}
	msg = bound(msg, maxErrMsgLen, false)
	switch {
	case status.IsSuccess():
		// A 2xx other than Alertmanager's 200, from a proxy in front.
		return outSent, ""
	case status.IsCode(http.StatusBadRequest), status.IsCode(http.StatusRequestEntityTooLarge), status.IsCode(http.StatusUnprocessableEntity):
		return outRejected, msg
	default:
		return outFailed, msg
	}
}

// record writes the outcome of a POST to the outbox and the metrics.
func (s *Sender) record(ctx context.Context, t *target, batch []egressd.Delivery, out outcome, msg string, now time.Time) {
	if out == outCanceled {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	n := float64(len(batch))
	switch out {
	case outSent:
		t.sent.Add(n)
		if t.setDown(false) {
			s.log.Info("alertmanager_recovered", "target", t.shown)
		}
		var firing, resolved []int64
		for _, d := range batch {
			if d.Resolved {
				resolved = append(resolved, d.ID)
			} else {
				firing = append(firing, d.ID)
			}
		}
		if len(firing) > 0 {
			s.outboxErr("sent", s.outbox.DeliverySent(rctx, firing, now, now.Add(s.opts.ResendInterval)))
		}
		if len(resolved) > 0 {
			s.outboxErr("sent", s.outbox.DeliverySent(rctx, resolved, now, time.Time{}))
		}
	case outRejected:
		t.rejected.Add(n)
		t.dropped.Add(n)
		// The anomaly's fingerprint is not secret and identifies what
		// was lost; the operator needs it to find the anomaly.
		for _, d := range batch {
			s.log.Warn("alert_rejected", "target", t.shown, "fingerprint", d.Anomaly.Fingerprint, "err", msg)
		}
		s.outboxErr("dropped", s.outbox.DeliveryDropped(rctx, ids(batch), msg))
	case outFailed:
		t.failed.Add(n)
		if t.setDown(true) {
			s.log.Warn("alertmanager_unavailable", "target", t.shown, "err", msg)
		} else {
			s.log.Debug("alerts_post_failed", "target", t.shown, "deliveries", len(batch), "err", msg)
		}
		// One retry time per attempt count: deliveries that failed
		// more often wait longer.
		byAttempts := map[int][]int64{}
		for _, d := range batch {
			byAttempts[d.Attempts] = append(byAttempts[d.Attempts], d.ID)
		}
		attempts := make([]int, 0, len(byAttempts))
		for a := range byAttempts {
			attempts = append(attempts, a)
		}
		sort.Ints(attempts)
		for _, a := range attempts {
			next := now.Add(Backoff(a, s.opts.BackoffMin, s.opts.BackoffMax))
			s.outboxErr("failed", s.outbox.DeliveryFailed(rctx, byAttempts[a], next, msg))
		}
	}
}

func (s *Sender) outboxErr(op string, err error) {
	if err == nil {
		return
	}
	// The lease runs out and the delivery is claimed and sent again:
	// Alertmanager deduplicates, so a repeat is harmless.
	s.m.OutboxErrors.WithLabelValues(op).Inc()
	s.log.Error("outbox_update_failed", "op", op, "err", err)
}

// Backoff returns how long to wait after a delivery's failed attempt when it
// had already failed attempts times: min doubled per earlier failure, capped
// at max, less a random jitter of up to a quarter, never below min. The
// jitter spreads the retries of Alertmanager replicas and of egressd
// replicas that failed together.
func Backoff(attempts int, min, max time.Duration) time.Duration {
	d := min
	for i := 0; i < attempts && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	d -= rand.N(d/4 + 1)
	if d < min {
		d = min
	}
	return d
}

func ids(ds []egressd.Delivery) []int64 {
	out := make([]int64, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}
