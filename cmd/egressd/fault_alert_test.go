package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/alerts/amtest"
	"github.com/egressd/egressd/collector/hubbletest"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgtest"
)

// TestFaultAlertmanagerOutageDeliversOncePerTarget: both Alertmanagers are
// down while three novel destinations are raised and egressd restarts;
// every delivery fails several retry rounds. Once they are back, each
// alert is accepted exactly once by each Alertmanager (counted by a proxy
// in front of each), and each reaches its webhook.
func TestFaultAlertmanagerOutageDeliversOncePerTarget(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	type target struct {
		am    *amtest.Alertmanager
		recv  *amtest.Receiver
		proxy *faultAMProxy
	}
	targets := make([]target, 2)
	var urls []string
	for i := range targets {
		recv := amtest.NewReceiver(t)
		am := amtest.Start(t, amtest.Options{WebhookURL: recv.URL()})
		p := newFaultAMProxy(t, am.URL())
		targets[i] = target{am: am, recv: recv, proxy: p}
		urls = append(urls, p.URL())
		am.Stop()
	}
	srv, addr := startHubble(t, hubbletest.Options{})
	db := openTestDB(t, pgtest.URL(t))

	stop := faultAlertServe(t, db, addr, urls)
	require.NoError(t, srv.WaitStreams(ctx, 1))
	names := []string{"tunnel.example.org", "paste.example.net", "c2.example.com"}
	for i, name := range names {
		srv.Add(hubbletest.Response(egressFlow(time.Now(), "sonarr", name, "198.51.100."+strconv.Itoa(10+i))))
	}
	// Every delivery fails at least three times; egressd restarts in the
	// middle of the outage.
	waitDeliveries := func(what string, cond func(postgres.DeliveryStatus) bool) {
		t.Helper()
		waitUntil(t, what, func() bool {
			as, err := db.Anomalies(ctx, postgres.AnomalyFilter{})
			require.NoError(t, err)
			if len(as) != len(names) {
				return false
			}
			for _, a := range as {
				ds, err := db.Deliveries(ctx, a.Fingerprint)
				require.NoError(t, err)
				if len(ds) != len(targets) {
					return false
				}
				for _, d := range ds {
					if !cond(d) {
						return false
					}
				}
			}
			return true
		})
	}
	waitDeliveries("every delivery failed once", func(d postgres.DeliveryStatus) bool { return d.Attempts >= 1 })
	stop()
	stop = faultAlertServe(t, db, addr, urls)
	defer stop()
	waitDeliveries("every delivery failed three times", func(d postgres.DeliveryStatus) bool { return d.Attempts >= 3 })
	for _, tg := range targets {
		require.Zero(t, tg.proxy.Accepted(), "nothing accepted during the outage")
	}

	for _, tg := range targets {
		tg.am.Restart()
	}
	waitDeliveries("every delivery is recorded sent", func(d postgres.DeliveryStatus) bool { return !d.LastSentAt.IsZero() })
	for i, tg := range targets {
		for _, name := range names {
			_, err := tg.recv.Wait(ctx, amtest.Labeled("firing", map[string]string{
				"alertname": "EgressNovelDestination", "app": "sonarr", "destination": name,
			}))
			require.NoError(t, err, "alert %s never reached the webhook of Alertmanager %d; its log:\n%s", name, i, tg.am.Logs())
		}
	}
	// The last round at shutdown has nothing left to send.
	stop()
	for i, tg := range targets {
		want := map[string]int{}
		for _, name := range names {
			want[name] = 1
		}
		require.Equal(t, want, tg.proxy.AcceptedByDestination(), "alerts accepted by Alertmanager %d", i)
	}
}

// faultAlertServe runs serve with detection (no learning period) delivering
// to targets, with retries a few tens of milliseconds apart and no resend of
// firing alerts during the test.
func faultAlertServe(t *testing.T, db *postgres.DB, hubbleAddr string, targets []string) (stop func()) {
	t.Helper()
	cfg := alertingConfig(db, hubbleAddr, targets...)
	ao := &cfg.Alerts
	ao.ResendInterval = time.Hour
	ao.Lease = 5 * time.Second
	ao.BackoffMin, ao.BackoffMax = 20*time.Millisecond, 100*time.Millisecond
	ao.PollInterval = 20 * time.Millisecond
	_, stop = runMain(t, cfg)
	return stop
}

// faultAMProxy forwards to an Alertmanager and counts, per destination
// label, the alerts of POST /api/v2/alerts requests it accepted (2xx).
type faultAMProxy struct {
	srv *httptest.Server

	mu       sync.Mutex
	accepted map[string]int
}

func newFaultAMProxy(t *testing.T, amURL string) *faultAMProxy {
	u, err := url.Parse(amURL)
	require.NoError(t, err)
	rp := httputil.NewSingleHostReverseProxy(u)
	// A stopped Alertmanager is the point of the test: answer 502 quietly.
	rp.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) {
		http.Error(w, err.Error(), http.StatusBadGateway)
	}
	p := &faultAMProxy{accepted: map[string]int{}}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := &faultStatusRecorder{ResponseWriter: w, code: http.StatusOK}
		rp.ServeHTTP(rec, r)
		if r.Method != http.MethodPost || r.URL.Path != "/api/v2/alerts" || rec.code/100 != 2 {
			return
		}
		var as []struct {
			Labels map[string]string `json:"labels"`
		}
		if err := json.Unmarshal(body, &as); err != nil {
			return
		}
		p.mu.Lock()
		for _, a := range as {
			p.accepted[a.Labels["destination"]]++
		}
		p.mu.Unlock()
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *faultAMProxy) URL() string { return p.srv.URL }

// Accepted returns how many alerts the Alertmanager accepted.
func (p *faultAMProxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.accepted {
		n += c
	}
	return n
}

// AcceptedByDestination returns the alerts accepted per destination label.
func (p *faultAMProxy) AcceptedByDestination() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.accepted))
	for k, v := range p.accepted {
		out[k] = v
	}
	return out
}

type faultStatusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *faultStatusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}
