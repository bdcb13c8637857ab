package alerts_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/api/v2/models"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/alerts"
)

// funcOutbox is an alerts.Outbox whose methods call its function fields; a
// nil field claims nothing or records nothing.
type funcOutbox struct {
	claim   func(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]egressd.Delivery, error)
	sent    func(ctx context.Context, ids []int64, sentAt, nextResend time.Time) error
	failed  func(ctx context.Context, ids []int64, next time.Time, errMsg string) error
	dropped func(ctx context.Context, ids []int64, errMsg string) error
}

var _ alerts.Outbox = (*funcOutbox)(nil)

func (o *funcOutbox) ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]egressd.Delivery, error) {
	if o.claim == nil {
		return nil, nil
	}
	return o.claim(ctx, now, lease, limit)
}

func (o *funcOutbox) DeliverySent(ctx context.Context, ids []int64, sentAt, nextResend time.Time) error {
	if o.sent == nil {
		return nil
	}
	return o.sent(ctx, ids, sentAt, nextResend)
}

func (o *funcOutbox) DeliveryFailed(ctx context.Context, ids []int64, next time.Time, errMsg string) error {
	if o.failed == nil {
		return nil
	}
	return o.failed(ctx, ids, next, errMsg)
}

func (o *funcOutbox) DeliveryDropped(ctx context.Context, ids []int64, errMsg string) error {
	if o.dropped == nil {
		return nil
	}
	return o.dropped(ctx, ids, errMsg)
}

// call is one outcome the Sender wrote to a recordingOutbox.
type call struct {
	Op   string // sent, failed, dropped
	IDs  []int64
	Next time.Time // nextResend or next attempt
	Msg  string
}

// recordingOutbox returns a funcOutbox that hands out the batches pushed on
// the returned channel, one per claim (nothing when none is waiting), and
// reports every outcome on calls.
func recordingOutbox() (ob *funcOutbox, batches chan<- []egressd.Delivery, calls <-chan call) {
	b := make(chan []egressd.Delivery, 16)
	c := make(chan call, 64)
	ob = &funcOutbox{
		claim: func(ctx context.Context, _ time.Time, _ time.Duration, _ int) ([]egressd.Delivery, error) {
			select {
			case ds := <-b:
				return ds, nil
			default:
				return nil, nil
			}
		},
		sent: func(_ context.Context, ids []int64, _, next time.Time) error {
			c <- call{Op: "sent", IDs: ids, Next: next}
			return nil
		},
		failed: func(_ context.Context, ids []int64, next time.Time, msg string) error {
			c <- call{Op: "failed", IDs: ids, Next: next, Msg: msg}
			return nil
		},
		dropped: func(_ context.Context, ids []int64, msg string) error {
			c <- call{Op: "dropped", IDs: ids, Msg: msg}
			return nil
		},
	}
	return ob, b, c
}

// nextCalls waits (with a deadline, never a sleep) for n outcomes and returns
// them ordered by their first ID.
func nextCalls(t *testing.T, calls <-chan call, n int) []call {
	t.Helper()
	deadline := time.After(10 * time.Second)
	var out []call
	for len(out) < n {
		select {
		case c := <-calls:
			out = append(out, c)
		case <-deadline:
			t.Fatalf("got %d outbox calls, want %d: %+v", len(out), n, out)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].IDs[0] < out[j].IDs[0] })
	return out
}

// fakeAM is an httptest server shaped like Alertmanager's POST
// /api/v2/alerts: it decodes each batch and answers with respond.
type fakeAM struct {
	*httptest.Server
	mu      sync.Mutex
	batches []models.PostableAlerts
	auth    []string // user:password of each request, "" without basic auth
}

// newFakeAM starts a fake Alertmanager; respond writes the answer to each
// decoded batch (nil: 200).
func newFakeAM(t *testing.T, respond func(w http.ResponseWriter, r *http.Request, batch models.PostableAlerts)) *fakeAM {
	am := &fakeAM{}
	am.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/api/v2/alerts" {
			http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusNotFound)
			return
		}
		var batch models.PostableAlerts
		if err := json.NewDecoder(r.Body).Decode(&batch); err != nil {
			writeJSON(w, http.StatusBadRequest, err.Error())
			return
		}
		u, p, _ := r.BasicAuth()
		am.mu.Lock()
		am.batches = append(am.batches, batch)
		if u != "" {
			am.auth = append(am.auth, u+":"+p)
		} else {
			am.auth = append(am.auth, "")
		}
		am.mu.Unlock()
		if respond == nil {
			w.WriteHeader(http.StatusOK)
			return
		}
		respond(w, r, batch)
	}))
	t.Cleanup(am.Close)
	return am
}

func (am *fakeAM) Batches() []models.PostableAlerts {
	am.mu.Lock()
	defer am.mu.Unlock()
	return append([]models.PostableAlerts(nil), am.batches...)
}

// writeJSON answers as Alertmanager does: errors are JSON strings.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// runSender starts s.Run until the test ends, and fails the test if Run
// returns an error or does not return once cancelled.
func runSender(t *testing.T, s *alerts.Sender) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(15 * time.Second):
			t.Error("Sender.Run did not return after cancel")
		}
	})
}

// testAnomaly is a novel destination of media/recyclarr.
func testAnomaly(fp string) egressd.Anomaly {
	return egressd.Anomaly{
		Fingerprint:    fp,
		Kind:           egressd.AnomalyNovelDestination,
		App:            egressd.App{Cluster: "homelab", Namespace: "media", Name: "recyclarr"},
		Destination:    egressd.Destination{Name: "evil.example.net", Port: 443, Protocol: egressd.ProtoTCP},
		Time:           time.Date(2026, 11, 21, 9, 30, 0, 0, time.UTC),
		Pod:            "recyclarr-7d9f8b6c4-x2x9z",
		Node:           "node-1",
		Verdict:        egressd.VerdictForwarded,
		BaselineSource: "files",
		Summary:        "media/recyclarr reached evil.example.net:443/TCP, new for this app",
		Details:        map[string]string{"flows": "3", "verdict": "FORWARDED"},
	}
}
