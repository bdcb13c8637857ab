package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/httpapi"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// now is the server's clock in every test: an hour boundary, so hourly
// buckets line up with the times below.
var now = time.Date(2026, 11, 8, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) time.Time { return now.Add(-d) }

const day = 24 * time.Hour

// testToken authorizes mutations in tests.
const testToken = "s3cr3t-t0ken-0123456789abcdef"

var (
	recyclarr     = egressd.App{Cluster: "default", Namespace: "media", Name: "recyclarr"}
	recyclarrEdge = egressd.App{Cluster: "edge", Namespace: "media", Name: "recyclarr"}
	hass          = egressd.App{Cluster: "default", Namespace: "home", Name: "home-assistant"}
	quiet         = egressd.App{Cluster: "default", Namespace: "media", Name: "quiet"}

	github  = egressd.Destination{Name: "api.github.com", Port: 443, Protocol: egressd.ProtoTCP}
	ghcr    = egressd.Destination{Name: "ghcr.io", Port: 443, Protocol: egressd.ProtoTCP}
	evil    = egressd.Destination{Name: "evil.example", Port: 443, Protocol: egressd.ProtoTCP}
	ntp     = egressd.Destination{Name: "time.cloudflare.com", Port: 123, Protocol: egressd.ProtoUDP}
	rawIP   = egressd.Destination{Name: "203.0.113.7", Port: 443, Protocol: egressd.ProtoTCP}
	oldDest = egressd.Destination{Name: "old.example", Port: 80, Protocol: egressd.ProtoTCP}
)

// env is an API server over a real database.
type env struct {
	t       *testing.T
	db      *postgres.DB
	url     string
	logs    *syncBuffer
	changed atomic.Int32
}

type envOpts struct {
	// options changes the options before the server starts.
	options func(*httpapi.Options)
	// backends replaces the database as the backends (fakes).
	backends *httpapi.Backends
	// gatherer serves /metrics and registers the API's metrics.
	reg *prometheus.Registry
}

// newEnv starts an API server on a fresh database, with testToken, the
// clock at now, recyclarr unbounded on the edge cluster, and debug logs
// captured.
func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	e := &env{t: t, logs: &syncBuffer{}}
	opts := httpapi.DefaultOptions()
	opts.Token = testToken
	opts.Now = func() time.Time { return now }
	if o.reg != nil {
		opts.Gatherer = o.reg
	}
	if o.options != nil {
		o.options(&opts)
	}
	var b httpapi.Backends
	if o.backends != nil {
		b = *o.backends
	} else {
		e.db = pgtest.NewDB(t)
		b = httpapi.Backends{
			Apps: e.db, Destinations: e.db, Anomalies: e.db, Accepted: e.db,
			Flags: httpapi.AppFlagsFunc(func(a egressd.App) bool { return a == recyclarrEdge }),
		}
	}
	b.AcceptedChanged = func() { e.changed.Add(1) }
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var m *httpapi.Metrics
	if o.reg != nil {
		m = httpapi.NewMetrics(o.reg)
	}
	h, err := httpapi.New(opts, b, log, m)
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

// response is an answer read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body strictly into v.
func (r response) json(t *testing.T, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(v), "body: %s", r.body)
}

// apiError is the error body every failure carries.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// requireError checks the status and the error body's code, and that the
// message contains each of contains.
func (r response) requireError(t *testing.T, status int, code string, contains ...string) {
	t.Helper()
	require.Equal(t, status, r.status, "body: %s", r.body)
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	var e apiError
	r.json(t, &e)
	require.Equal(t, code, e.Error.Code, "body: %s", r.body)
	for _, c := range contains {
		require.Contains(t, e.Error.Message, c)
	}
}

// do sends a request; auth is the Authorization header ("" for none).
func (e *env) do(method, path, body, auth string) response {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, e.url+path, rd)
	require.NoError(e.t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (e *env) get(path string) response {
	e.t.Helper()
	return e.do(http.MethodGet, path, "", "")
}

// getJSON requires a 200 and decodes the body into v.
func (e *env) getJSON(path string, v any) {
	e.t.Helper()
	r := e.get(path)
	require.Equal(e.t, http.StatusOK, r.status, "GET %s: %s", path, r.body)
	r.json(e.t, v)
}

const bearer = "Bearer " + testToken

// seed stores the traffic of the app and destination tests:
//
//	recyclarr (default): github (10 days ago to 1 h ago), ghcr (9 days ago
//	  only), evil (denied, 2 h ago)
//	recyclarr (edge): github (3 h ago)
//	hass (default): ntp, first seen 2 h ago (learning)
//	quiet (default): old (20 days ago)
func (e *env) seed() {
	e.t.Helper()
	dest := func(app egressd.App, d egressd.Destination, first, last time.Time, flows, dropped int64, pod string, src egressd.NameSource) egressd.DestinationRollup {
		var v egressd.VerdictSet
		if flows > dropped {
			v = v.Add(egressd.VerdictForwarded)
		}
		if dropped > 0 {
			v = v.Add(egressd.VerdictDropped)
		}
		return egressd.DestinationRollup{App: app, Destination: d, FirstSeen: first, LastSeen: last,
			Flows: flows, DroppedFlows: dropped, Verdicts: v, ExamplePod: pod, NameSource: src}
	}
	hour := func(app egressd.App, d egressd.Destination, at time.Time, flows, dropped int64) egressd.HourlyRollup {
		return egressd.HourlyRollup{App: app, Destination: d, Hour: at.Truncate(time.Hour), Flows: flows, DroppedFlows: dropped}
	}
	require.NoError(e.t, e.db.WriteRollup(context.Background(), &egressd.Rollup{
		Destinations: []egressd.DestinationRollup{
			dest(recyclarr, github, ago(10*day), ago(time.Hour), 40, 0, "recyclarr-7d9f8c-x2x4z", egressd.NameFromFlow),
			dest(recyclarr, ghcr, ago(9*day), ago(9*day-time.Minute), 2, 0, "recyclarr-7d9f8c-x2x4z", egressd.NameFromDNS),
			dest(recyclarr, evil, ago(2*time.Hour), ago(2*time.Hour), 3, 3, "recyclarr-7d9f8c-x2x4z", egressd.NameFromFlow),
			dest(recyclarrEdge, github, ago(3*time.Hour), ago(3*time.Hour), 1, 0, "recyclarr-5c4b-qq7r9", egressd.NameFromFlow),
			dest(recyclarrEdge, rawIP, ago(3*time.Hour), ago(3*time.Hour), 1, 0, "recyclarr-5c4b-qq7r9", egressd.NameIsIP),
			dest(hass, ntp, ago(2*time.Hour), ago(time.Hour), 5, 0, "home-assistant-0", egressd.NameFromFlow),
			dest(quiet, oldDest, ago(20*day), ago(20*day), 1, 0, "quiet-1", egressd.NameFromFlow),
		},
		Hourly: []egressd.HourlyRollup{
			hour(recyclarr, github, ago(10*day), 10, 0),
			hour(recyclarr, github, ago(3*day), 10, 0),
			hour(recyclarr, github, ago(time.Hour), 20, 0),
			hour(recyclarr, ghcr, ago(9*day), 2, 0),
			hour(recyclarr, evil, ago(2*time.Hour), 3, 3),
			hour(recyclarrEdge, github, ago(3*time.Hour), 1, 0),
			hour(recyclarrEdge, rawIP, ago(3*time.Hour), 1, 0),
			hour(hass, ntp, ago(2*time.Hour), 3, 0),
			hour(hass, ntp, ago(time.Hour), 2, 0),
			hour(quiet, oldDest, ago(20*day), 1, 0),
		},
	}))
}

// novel returns a firing novel-destination anomaly of app for d.
func novel(app egressd.App, d egressd.Destination, at time.Time) egressd.Anomaly {
	return egressd.Anomaly{
		Fingerprint:    egressd.NoveltyFingerprint(app, d),
		Kind:           egressd.AnomalyNovelDestination,
		App:            app,
		Destination:    d,
		Time:           at,
		Pod:            app.Name + "-7d9f8c-x2x4z",
		Node:           "node-1",
		Verdict:        egressd.VerdictForwarded,
		NameSource:     egressd.NameFromFlow,
		BaselineSource: "window",
		Summary:        app.String() + " reached " + d.String() + " for the first time",
		Details:        map[string]string{"flows": "1"},
	}
}

// record stores a, requiring that it is new.
func (e *env) record(a egressd.Anomaly) egressd.Anomaly {
	e.t.Helper()
	ok, err := e.db.RecordAnomaly(context.Background(), a, nil, now)
	require.NoError(e.t, err)
	require.True(e.t, ok)
	return a
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
