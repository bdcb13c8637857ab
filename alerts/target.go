package alerts

import (
	"net/http"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	httptransport "github.com/go-openapi/runtime/client"
	"github.com/go-openapi/strfmt"
	"github.com/prometheus/alertmanager/api/v2/client"
	"github.com/prometheus/alertmanager/api/v2/client/alert"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/egressd/egressd"
)

// apiPath is where Alertmanager serves API v2 below its base URL (amtool's
// defaultAmApiv2path).
const apiPath = "/api/v2"

// target is one configured Alertmanager: its API client, its metrics, and
// the deliveries claimed for it that its worker has not posted yet.
type target struct {
	key   string // targetKey of the configured URL
	shown string // the URL without its password, for logs and outbox errors
	label string // host:port[/path], the metrics label
	api   alert.ClientService

	sent, rejected, failed prometheus.Counter
	dropped, retries, full prometheus.Counter
	duration               prometheus.Observer

	kick chan struct{} // capacity 1: work is pending

	mu      sync.Mutex
	pending map[int64]claimed
	down    bool // the last POST failed (logged once per outage)
}

// claimed is a delivery and when its lease began.
type claimed struct {
	d  egressd.Delivery
	at time.Time
}

// newTarget builds the API client of one Alertmanager the way amtool does
// (cli/root.go, NewAlertmanagerClient): a go-openapi runtime for the URL's
// host, base path + /api/v2 and scheme, carrying our own http.Client, with
// the URL's user and password as basic auth; then client.New over it.
// rawURL must have passed Options.Validate.
func newTarget(rawURL string, hc *http.Client, m *Metrics) *target {
	u, _ := parseHTTPURL(rawURL)
	rt := httptransport.NewWithClient(u.Host, path.Join("/", u.Path, apiPath), []string{u.Scheme}, hc)
	if u.User != nil {
		password, _ := u.User.Password()
		rt.DefaultAuthentication = httptransport.BasicAuth(u.User.Username(), password)
	}
	api := client.New(rt, strfmt.Default)

	label := u.Host + strings.TrimRight(u.Path, "/")
	return &target{
		key:      targetKey(rawURL),
		shown:    u.Redacted(),
		label:    label,
		api:      api.Alert,
		sent:     m.Sent.WithLabelValues(label, resultSent),
		rejected: m.Sent.WithLabelValues(label, resultRejected),
		failed:   m.Sent.WithLabelValues(label, resultFailed),
		dropped:  m.Dropped.WithLabelValues(label, reasonRejected),
		full:     m.Dropped.WithLabelValues(label, reasonOutboxFull),
		retries:  m.Retries.WithLabelValues(label),
		duration: m.PostDuration.WithLabelValues(label),
		kick:     make(chan struct{}, 1),
		pending:  map[int64]claimed{},
	}
}

// add queues claimed deliveries for the worker and wakes it. A delivery
// claimed again (its lease ran out while it waited) replaces the old claim.
func (t *target) add(ds []egressd.Delivery, at time.Time) {
	t.mu.Lock()
	for _, d := range ds {
		t.pending[d.ID] = claimed{d: d, at: at}
	}
	t.mu.Unlock()
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// take removes and returns up to n pending deliveries whose lease still
// has usable time left at now, resolved ones first, then oldest first:
// Alertmanager applies a batch in order, so an episode that ended is
// resolved before a new one with the same labels fires. Deliveries whose
// lease is too short to finish a POST are forgotten; the next claim after
// the lease returns them.
func (t *target) take(now time.Time, n int, usable time.Duration) []egressd.Delivery {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]egressd.Delivery, 0, min(n, len(t.pending)))
	for id, c := range t.pending {
		if !now.Before(c.at.Add(usable)) {
			delete(t.pending, id)
			continue
		}
		out = append(out, c.d)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Resolved != out[j].Resolved {
			return out[i].Resolved
		}
		return out[i].ID < out[j].ID
	})
	if len(out) > n {
		out = out[:n]
	}
	for _, d := range out {
		delete(t.pending, d.ID)
	}
	return out
}

// setDown records whether the Alertmanager is failing and reports whether
// that changed.
func (t *target) setDown(down bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	changed := t.down != down
	t.down = down
	return changed
}
