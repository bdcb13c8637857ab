package alerts_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/alertmanager/api/v2/models"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/alerts"
)

var testNow = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

// senderOptions are fast options with a fixed clock.
func senderOptions(targets ...string) alerts.Options {
	o := alerts.DefaultOptions()
	o.Targets = targets
	o.Timeout = 2 * time.Second
	o.Lease = 10 * time.Second
	o.PollInterval = time.Hour // only Wake starts a round
	o.Now = func() time.Time { return testNow }
	return o
}

func newSender(t *testing.T, ob alerts.Outbox, opts alerts.Options) (*alerts.Sender, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := alerts.NewSender(ob, opts, nil, alerts.NewMetrics(reg))
	require.NoError(t, err)
	return s, reg
}

func delivery(id int64, target string, resolved bool, attempts int) egressd.Delivery {
	a := testAnomaly("fp" + string(rune('a'+id)))
	a.App.Name = "app" + string(rune('a'+id))
	return egressd.Delivery{ID: id, Target: target, Anomaly: a, Resolved: resolved, Attempts: attempts}
}

func hostOf(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	require.NoError(t, err)
	return u.Host
}

func TestSenderSent(t *testing.T) {
	t.Parallel()
	am := newFakeAM(t, nil)
	ob, batches, calls := recordingOutbox()
	s, reg := newSender(t, ob, senderOptions(am.URL))
	runSender(t, s)

	batches <- []egressd.Delivery{
		delivery(1, am.URL, false, 0),
		delivery(2, am.URL+"/", false, 2), // same Alertmanager, trailing slash
		delivery(3, am.URL, true, 0),
	}
	s.Wake()

	got := nextCalls(t, calls, 2)
	want := []call{
		{Op: "sent", IDs: []int64{1, 2}, Next: testNow.Add(time.Minute)},
		{Op: "sent", IDs: []int64{3}}, // resolved: sent once, no resend
	}
	require.Empty(t, cmp.Diff(want, got), "(-want +got)")

	b := am.Batches()
	require.Len(t, b, 1, "one POST for the batch")
	var apps []string
	for _, a := range b[0] {
		apps = append(apps, a.Labels["app"])
	}
	require.Equal(t, []string{"appd", "appb", "appc"}, apps, "resolved first, then by ID")
	require.Equal(t, strfmtTime(testNow), b[0][0].EndsAt.String(), "resolved ends now")
	require.Equal(t, strfmtTime(testNow.Add(4*time.Minute)), b[0][1].EndsAt.String(), "firing ends after 4 resends")

	host := hostOf(t, am.URL)
	require.Equal(t, 3.0, metricValue(t, reg, "egressd_alerts_sent_total", map[string]string{"target": host, "result": "sent"}))
	require.Equal(t, 1.0, metricValue(t, reg, "egressd_alerts_retries_total", map[string]string{"target": host}))
	require.Equal(t, 1, testutil.CollectAndCount(reg, "egressd_alerts_post_duration_seconds"))
}

func strfmtTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// metricValue returns the value of the counter name whose labels are
// exactly labels.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if cmp.Equal(got, labels) {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return 0
}

func TestSenderRejected(t *testing.T) {
	t.Parallel()
	for _, code := range []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			t.Parallel()
			am := newFakeAM(t, func(w http.ResponseWriter, _ *http.Request, _ models.PostableAlerts) {
				writeJSON(w, code, "start time must be before end time")
			})
			ob, batches, calls := recordingOutbox()
			s, reg := newSender(t, ob, senderOptions(am.URL))
			runSender(t, s)
			batches <- []egressd.Delivery{delivery(1, am.URL, false, 0)}
			s.Wake()

			got := nextCalls(t, calls, 1)[0]
			t.Logf("outbox message: %s", got.Msg)
			require.Equal(t, "dropped", got.Op)
			require.Equal(t, []int64{1}, got.IDs)
			require.Contains(t, got.Msg, strconv.Itoa(code))
			host := hostOf(t, am.URL)
			require.Equal(t, 1.0, metricValue(t, reg, "egressd_alerts_dropped_total", map[string]string{"target": host, "reason": "rejected"}))
			require.Equal(t, 1.0, metricValue(t, reg, "egressd_alerts_sent_total", map[string]string{"target": host, "result": "rejected"}))
		})
	}
}

// Alertmanager stores the valid alerts of a batch and answers 400 for the
// rest: only the refused alert may be dropped.
func TestSenderRejectedBatchOneByOne(t *testing.T) {
	t.Parallel()
	am := newFakeAM(t, func(w http.ResponseWriter, _ *http.Request, batch models.PostableAlerts) {
		for _, a := range batch {
			if a.Labels["app"] == "appc" {
				writeJSON(w, http.StatusBadRequest, "bad alert")
				return
			}
		}
		w.WriteHeader(http.StatusOK)
	})
	ob, batches, calls := recordingOutbox()
	s, _ := newSender(t, ob, senderOptions(am.URL))
	runSender(t, s)
	batches <- []egressd.Delivery{delivery(1, am.URL, false, 0), delivery(2, am.URL, false, 0), delivery(3, am.URL, false, 0)}
	s.Wake()

	got := nextCalls(t, calls, 3)
	for i := range got {
		got[i].Msg = ""
	}
	want := []call{
		{Op: "sent", IDs: []int64{1}, Next: testNow.Add(time.Minute)},
		{Op: "dropped", IDs: []int64{2}},
		{Op: "sent", IDs: []int64{3}, Next: testNow.Add(time.Minute)},
	}
	require.Empty(t, cmp.Diff(want, got), "(-want +got)")
	require.Len(t, am.Batches(), 4, "the batch, then each alert alone")
}

func TestSenderRetries(t *testing.T) {
	t.Parallel()
	status := func(code int) func(w http.ResponseWriter, _ *http.Request, _ models.PostableAlerts) {
		return func(w http.ResponseWriter, _ *http.Request, _ models.PostableAlerts) {
			writeJSON(w, code, "no")
		}
	}
	tests := []struct {
		name    string
		respond func(w http.ResponseWriter, r *http.Request, _ models.PostableAlerts)
		closed  bool // the target refuses connections
		msg     string
	}{
		{name: "500", respond: status(http.StatusInternalServerError), msg: "500"},
		{name: "503", respond: status(http.StatusServiceUnavailable), msg: "503"},
		{name: "404 wrong path", respond: status(http.StatusNotFound), msg: "404"},
		{name: "401", respond: status(http.StatusUnauthorized), msg: "401"},
		{name: "429", respond: status(http.StatusTooManyRequests), msg: "429"},
		{name: "timeout", respond: func(w http.ResponseWriter, r *http.Request, _ models.PostableAlerts) {
			<-r.Context().Done() // hangs until the client gives up
		}, msg: "deadline exceeded"},
		{name: "connection refused", closed: true, msg: "refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			target := "http://" + closedAddr(t)
			if !tt.closed {
				target = newFakeAM(t, tt.respond).URL
			}
			ob, batches, calls := recordingOutbox()
			opts := senderOptions(target)
			opts.Timeout = 200 * time.Millisecond
			s, reg := newSender(t, ob, opts)
			runSender(t, s)
			batches <- []egressd.Delivery{delivery(1, target, false, 0), delivery(2, target, true, 3)}
			s.Wake()

			got := nextCalls(t, calls, 2)
			t.Logf("outbox message: %s", got[0].Msg)
			for _, c := range got {
				require.Equal(t, "failed", c.Op)
				require.Contains(t, c.Msg, tt.msg)
			}
			require.Equal(t, []int64{1}, got[0].IDs)
			require.Equal(t, testNow.Add(opts.BackoffMin), got[0].Next, "first failure waits BackoffMin")
			require.Equal(t, []int64{2}, got[1].IDs)
			wait := got[1].Next.Sub(testNow)
			require.True(t, wait >= 6*time.Second && wait <= 8*time.Second, "fourth failure waits 8s less up to a quarter, got %s", wait)
			require.Equal(t, 2.0, metricValue(t, reg, "egressd_alerts_sent_total", map[string]string{"target": hostOf(t, target), "result": "failed"}))
		})
	}
}

func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		attempts int
		lo, hi   time.Duration
	}{
		{0, time.Second, time.Second},
		{1, 1500 * time.Millisecond, 2 * time.Second},
		{3, 6 * time.Second, 8 * time.Second},
		{6, 45 * time.Second, 60 * time.Second},
		{1 << 30, 45 * time.Second, 60 * time.Second},
	}
	for _, tt := range tests {
		for range 100 {
			got := alerts.Backoff(tt.attempts, time.Second, time.Minute)
			require.True(t, got >= tt.lo && got <= tt.hi, "Backoff(%d) = %s, want in [%s, %s]", tt.attempts, got, tt.lo, tt.hi)
		}
	}
}

// An Alertmanager that hangs holds up only its own deliveries.
func TestSenderTargetsAreIndependent(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	slow := newFakeAM(t, func(w http.ResponseWriter, r *http.Request, _ models.PostableAlerts) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	fast := newFakeAM(t, nil)
	ob, batches, calls := recordingOutbox()
	opts := senderOptions(slow.URL, fast.URL)
	opts.Timeout = 20 * time.Second
	opts.Lease = time.Minute
	s, _ := newSender(t, ob, opts)
	runSender(t, s)
	batches <- []egressd.Delivery{delivery(1, slow.URL, false, 0), delivery(2, fast.URL, false, 0)}
	s.Wake()

	require.Equal(t, []int64{2}, nextCalls(t, calls, 1)[0].IDs, "the fast Alertmanager's delivery is recorded while the slow one hangs")
	close(release)
	require.Equal(t, []int64{1}, nextCalls(t, calls, 1)[0].IDs)
}

func TestSenderWake(t *testing.T) {
	t.Parallel()
	am := newFakeAM(t, nil)
	claims := make(chan struct{}, 16)
	ob, batches, calls := recordingOutbox()
	claim := ob.claim
	ob.claim = func(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]egressd.Delivery, error) {
		require.Equal(t, testNow, now)
		require.Equal(t, 10*time.Second, lease)
		require.Equal(t, 64, limit)
		claims <- struct{}{}
		return claim(ctx, now, lease, limit)
	}
	s, _ := newSender(t, ob, senderOptions(am.URL)) // PollInterval 1h
	runSender(t, s)
	<-claims // the round at start found nothing

	batches <- []egressd.Delivery{delivery(1, am.URL, false, 0)}
	s.Wake()
	require.Equal(t, "sent", nextCalls(t, calls, 1)[0].Op)
}

// A full batch means more may be due: the Sender claims again at once.
func TestSenderDrainsFullBatches(t *testing.T) {
	t.Parallel()
	am := newFakeAM(t, nil)
	ob, batches, calls := recordingOutbox()
	opts := senderOptions(am.URL)
	opts.BatchSize = 2
	s, _ := newSender(t, ob, opts)
	batches <- []egressd.Delivery{delivery(1, am.URL, false, 0), delivery(2, am.URL, false, 0)}
	batches <- []egressd.Delivery{delivery(3, am.URL, false, 0)}
	runSender(t, s) // no Wake, and PollInterval is 1h
	got := nextCalls(t, calls, 2)
	require.Equal(t, []int64{1, 2}, got[0].IDs)
	require.Equal(t, []int64{3}, got[1].IDs)
}

func TestSenderUnknownTarget(t *testing.T) {
	t.Parallel()
	am := newFakeAM(t, nil)
	ob, batches, calls := recordingOutbox()
	s, reg := newSender(t, ob, senderOptions(am.URL))
	runSender(t, s)
	batches <- []egressd.Delivery{delivery(1, "http://admin:hunter2@old-alertmanager:9093", false, 0)}
	s.Wake()

	got := nextCalls(t, calls, 1)[0]
	require.Equal(t, "failed", got.Op)
	require.Equal(t, testNow.Add(time.Minute), got.Next, "deferred by BackoffMax")
	require.Contains(t, got.Msg, "old-alertmanager:9093 is not configured")
	require.NotContains(t, got.Msg, "hunter2")
	require.Empty(t, am.Batches())
	require.Equal(t, 1.0, metricValue(t, reg, "egressd_alerts_sent_total", map[string]string{"target": "unknown", "result": "deferred"}))
}

// Basic auth from the URL is sent, and the password appears in no log,
// outbox message or metric.
func TestSenderCredentials(t *testing.T) {
	t.Parallel()
	am := newFakeAM(t, func(w http.ResponseWriter, _ *http.Request, _ models.PostableAlerts) {
		writeJSON(w, http.StatusServiceUnavailable, "not yet")
	})
	u, err := url.Parse(am.URL)
	require.NoError(t, err)
	u.User = url.UserPassword("egressd", "s3cr3t-pw")
	u.Path = "/" // a base URL may end in a slash
	target := u.String()

	var logs syncBuffer
	ob, batches, calls := recordingOutbox()
	reg := prometheus.NewRegistry()
	s, err := alerts.NewSender(ob, senderOptions(target), slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), alerts.NewMetrics(reg))
	require.NoError(t, err)
	runSender(t, s)
	// The outbox may hold the target with or without its password.
	batches <- []egressd.Delivery{delivery(1, target, false, 0), delivery(2, u.Redacted(), false, 0)}
	s.Wake()

	got := nextCalls(t, calls, 1)[0]
	require.Equal(t, "failed", got.Op)
	require.Equal(t, []int64{1, 2}, got.IDs)
	require.Equal(t, []string{"egressd:s3cr3t-pw"}, am.auth)
	require.NotContains(t, got.Msg, "s3cr3t")
	require.Contains(t, logs.String(), "alertmanager_unavailable")
	require.NotContains(t, logs.String(), "s3cr3t")
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				require.NotContains(t, l.GetValue(), "s3cr3t")
				require.NotContains(t, l.GetValue(), "egressd@")
			}
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Outbox errors are counted and never stop Run.
func TestSenderOutboxErrors(t *testing.T) {
	t.Parallel()
	am := newFakeAM(t, nil)
	ob, batches, calls := recordingOutbox()
	claim := ob.claim
	var mu sync.Mutex
	fail := true
	ob.claim = func(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]egressd.Delivery, error) {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			fail = false
			return nil, errors.New("connection reset")
		}
		return claim(ctx, now, lease, limit)
	}
	opts := senderOptions(am.URL)
	opts.PollInterval = 10 * time.Millisecond
	s, reg := newSender(t, ob, opts)
	batches <- []egressd.Delivery{delivery(1, am.URL, false, 0)}
	runSender(t, s)
	require.Equal(t, "sent", nextCalls(t, calls, 1)[0].Op)
	require.Equal(t, 1.0, metricValue(t, reg, "egressd_alerts_outbox_errors_total", map[string]string{"op": "claim"}))
}

func TestSenderRunReturnsOnCancel(t *testing.T) {
	t.Parallel()
	s, _ := newSender(t, &funcOutbox{}, senderOptions("http://127.0.0.1:9"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
}

// TestSenderStopDuringClaimLosesNothing: a stop that comes while a claim
// is in flight does not cancel it (the outbox has leased the rows, which
// the last round could not claim again): what it claimed is posted before
// Run returns.
func TestSenderStopDuringClaimLosesNothing(t *testing.T) {
	t.Parallel()
	am := newFakeAM(t, nil)
	entered, release := make(chan struct{}), make(chan struct{})
	sent := make(chan []int64, 4)
	leased := false // claims are serial: Run's loop, then its last round
	ob := &funcOutbox{
		claim: func(ctx context.Context, _ time.Time, _ time.Duration, _ int) ([]egressd.Delivery, error) {
			if leased {
				return nil, nil
			}
			leased = true
			close(entered)
			<-release
			// As PostgreSQL does: the rows are leased, and a cancelled
			// context fails the claim all the same.
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return []egressd.Delivery{delivery(1, am.URL, false, 0)}, nil
		},
		sent: func(_ context.Context, ids []int64, _, _ time.Time) error {
			sent <- ids
			return nil
		},
	}
	s, _ := newSender(t, ob, senderOptions(am.URL))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	<-entered
	cancel()
	close(release)
	require.NoError(t, <-done)
	require.Len(t, sent, 1, "the delivery claimed when the stop came was never posted")
	require.Equal(t, []int64{1}, <-sent)
	require.Len(t, am.Batches(), 1)
}
