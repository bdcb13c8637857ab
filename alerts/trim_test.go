package alerts_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/alerts"
)

// trimmingOutbox is a memOutbox that is also a Trimmer, answering each
// TrimDeliveries with dropped (or err) and reporting keep on calls.
type trimmingOutbox struct {
	*memOutbox
	dropped map[string]int
	err     error
	calls   chan int
	claimed atomic.Int64
}

func (o *trimmingOutbox) ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]egressd.Delivery, error) {
	o.claimed.Add(1)
	return o.memOutbox.ClaimDeliveries(ctx, now, lease, limit)
}

func (o *trimmingOutbox) claims() int64 { return o.claimed.Load() }

func (o *trimmingOutbox) TrimDeliveries(_ context.Context, keep int) (map[string]int, error) {
	o.calls <- keep
	return o.dropped, o.err
}

var _ alerts.Trimmer = (*trimmingOutbox)(nil)

func TestSenderTrimsTheOutbox(t *testing.T) {
	t.Parallel()
	const am = "http://user:secret@alertmanager-0:9093"
	tests := []struct {
		name       string
		maxPending int
		dropped    map[string]int
		err        error
		want       map[string]float64 // egressd_alerts_dropped_total{reason=outbox_full} by target
		wantErrors float64
	}{
		{
			name: "dropped deliveries are counted per target", maxPending: 100,
			dropped: map[string]int{am: 3, "http://gone:9093": 2},
			want:    map[string]float64{"alertmanager-0:9093": 3, "unknown": 2},
		},
		{name: "nothing to drop", maxPending: 100, want: map[string]float64{"alertmanager-0:9093": 0}},
		{name: "a failure is counted", maxPending: 100, err: errors.New("connection refused"), wantErrors: 1},
		{name: "no bound, no trim", maxPending: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ob := &trimmingOutbox{memOutbox: newMemOutbox(), dropped: tt.dropped, err: tt.err, calls: make(chan int, 1)}
			opts := senderOptions(am)
			opts.MaxPending = tt.maxPending
			s, reg := newSender(t, ob, opts)
			runSender(t, s)
			if tt.maxPending == 0 {
				select {
				case <-ob.calls:
					t.Fatal("TrimDeliveries called without a bound")
				case <-time.After(100 * time.Millisecond):
				}
				return
			}
			select {
			case keep := <-ob.calls:
				require.Equal(t, tt.maxPending, keep)
			case <-time.After(10 * time.Second):
				t.Fatal("the outbox was not trimmed at start")
			}
			// Run trims before its first claim: once a claim is seen, the
			// counts are in.
			require.Eventually(t, func() bool { return ob.claims() > 0 }, 10*time.Second, time.Millisecond)
			for target, n := range tt.want {
				require.Equal(t, n, metricValue(t, reg, "egressd_alerts_dropped_total", map[string]string{"target": target, "reason": "outbox_full"}), target)
			}
			if tt.wantErrors > 0 {
				require.Equal(t, tt.wantErrors, metricValue(t, reg, "egressd_alerts_outbox_errors_total", map[string]string{"op": "trim"}))
			}
		})
	}
}

func TestOptionsMaxPending(t *testing.T) {
	t.Parallel()
	o := senderOptions("http://alertmanager:9093")
	o.MaxPending = -1
	require.ErrorContains(t, o.Validate(), "MaxPending")
}
