package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/httpapi"
)

type acceptedJSON struct {
	Accepted struct {
		Cluster     string    `json:"cluster"`
		Namespace   string    `json:"namespace"`
		App         string    `json:"app"`
		Destination string    `json:"destination"`
		Port        uint16    `json:"port"`
		Protocol    string    `json:"protocol"`
		By          string    `json:"by"`
		AcceptedAt  time.Time `json:"accepted_at"`
	} `json:"accepted"`
}

const acceptedPath = "/api/v1/apps/media/recyclarr/accepted"

func TestAcceptResolvesAlert(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	a := e.record(novel(recyclarr, github, ago(time.Hour)))
	other := e.record(novel(recyclarr, ghcr, ago(time.Hour)))

	// Names are stored as the detector sees them; a port without a
	// protocol is TCP.
	r := e.do(http.MethodPost, acceptedPath, `{"destination":"API.GitHub.com.","port":443,"by":"alice"}`, bearer)
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	var got acceptedJSON
	r.json(t, &got)
	require.Equal(t, "api.github.com", got.Accepted.Destination)
	require.Equal(t, uint16(443), got.Accepted.Port)
	require.Equal(t, "TCP", got.Accepted.Protocol)
	require.Equal(t, "", got.Accepted.Cluster, "no cluster: every cluster")
	require.Equal(t, "alice", got.Accepted.By)
	require.Equal(t, now, got.Accepted.AcceptedAt)
	require.Equal(t, int32(1), e.changed.Load())

	stored, err := e.db.Anomaly(ctx, a.Fingerprint)
	require.NoError(t, err)
	require.Equal(t, now, stored.ResolvedAt, "accepting resolves the firing alert")
	stored, err = e.db.Anomaly(ctx, other.Fingerprint)
	require.NoError(t, err)
	require.True(t, stored.ResolvedAt.IsZero(), "another destination's alert keeps firing")
	acc, err := e.db.AcceptedAll(ctx)
	require.NoError(t, err)
	require.Equal(t, []egressd.Accepted{{
		App: egressd.App{Namespace: "media", Name: "recyclarr"}, Destination: github, By: "alice", At: now,
	}}, acc)

	// Again: already accepted, 200; "by" defaults to "api".
	r = e.do(http.MethodPost, acceptedPath, `{"destination":"api.github.com","port":443,"protocol":"tcp"}`, bearer)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	r.json(t, &got)
	require.Equal(t, "api", got.Accepted.By)

	// Every port of a name, in one cluster.
	r = e.do(http.MethodPost, acceptedPath, `{"destination":"ghcr.io","cluster":"default"}`, bearer)
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	r.json(t, &got)
	require.Equal(t, uint16(0), got.Accepted.Port)
	require.Equal(t, "ANY", got.Accepted.Protocol)
	require.Equal(t, "default", got.Accepted.Cluster)
	stored, err = e.db.Anomaly(ctx, other.Fingerprint)
	require.NoError(t, err)
	require.Equal(t, now, stored.ResolvedAt)

	// An IP address; IPv4-mapped IPv6 is stored as IPv4.
	r = e.do(http.MethodPost, acceptedPath, `{"destination":"::ffff:203.0.113.7","port":443}`, bearer)
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	r.json(t, &got)
	require.Equal(t, "203.0.113.7", got.Accepted.Destination)

	// Take them back: the key is what was accepted.
	r = e.do(http.MethodDelete, acceptedPath, `{"destination":"api.github.com","port":443}`, bearer)
	require.Equal(t, http.StatusNoContent, r.status, "%s", r.body)
	require.Empty(t, r.body)
	e.do(http.MethodDelete, acceptedPath, `{"destination":"api.github.com","port":443}`, bearer).
		requireError(t, http.StatusNotFound, "not_found", "api.github.com:443/TCP was not accepted for media/recyclarr in every cluster")
	e.do(http.MethodDelete, acceptedPath, `{"destination":"ghcr.io"}`, bearer).
		requireError(t, http.StatusNotFound, "not_found", "every cluster")
	r = e.do(http.MethodDelete, acceptedPath, `{"destination":"ghcr.io","cluster":"default"}`, bearer)
	require.Equal(t, http.StatusNoContent, r.status, "%s", r.body)
	stored, err = e.db.Anomaly(ctx, a.Fingerprint)
	require.NoError(t, err)
	require.Equal(t, now, stored.ResolvedAt, "taking an acceptance back leaves its alert resolved")
	acc, err = e.db.AcceptedAll(ctx)
	require.NoError(t, err)
	require.Len(t, acc, 1)
	require.Equal(t, int32(6), e.changed.Load(), "every stored change is reported, failures are not")
}

func TestAcceptInvalid(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	tests := []struct {
		name   string
		method string
		path   string
		body   string
		status int
		code   string
		want   []string
	}{
		{"unknown field", http.MethodPost, acceptedPath, `{"destination":"a.example","ports":[443]}`, 400, "invalid", []string{`unknown field "ports"`, `"destination" (required)`}},
		{"by on delete", http.MethodDelete, acceptedPath, `{"destination":"a.example","by":"x"}`, 400, "invalid", []string{`unknown field "by"`}},
		{"two values", http.MethodPost, acceptedPath, `{"destination":"a.example"}{"destination":"b.example"}`, 400, "invalid", []string{"one JSON object"}},
		{"trailing garbage", http.MethodPost, acceptedPath, `{"destination":"a.example"} x`, 400, "invalid", []string{"one JSON object"}},
		{"empty body", http.MethodPost, acceptedPath, ``, 400, "invalid", []string{"empty", "destination"}},
		{"not an object", http.MethodPost, acceptedPath, `["a.example"]`, 400, "invalid", []string{"JSON object"}},
		{"syntax", http.MethodPost, acceptedPath, `{"destination":}`, 400, "invalid", []string{"invalid JSON at byte"}},
		{"truncated", http.MethodPost, acceptedPath, `{"destination":"a.example"`, 400, "invalid", []string{"ends early"}},
		{"port as string", http.MethodPost, acceptedPath, `{"destination":"a.example","port":"443"}`, 400, "invalid", []string{`"port"`, "integer"}},
		{"port out of range", http.MethodPost, acceptedPath, `{"destination":"a.example","port":70000}`, 400, "invalid", []string{"port 70000"}},
		{"negative port", http.MethodPost, acceptedPath, `{"destination":"a.example","port":-1}`, 400, "invalid", []string{"port -1"}},
		{"no destination", http.MethodPost, acceptedPath, `{"port":443}`, 400, "invalid", []string{"destination is required"}},
		{"pattern", http.MethodPost, acceptedPath, `{"destination":"*.github.com"}`, 400, "invalid", []string{`"*.github.com"`, "baseline files"}},
		{"bad name", http.MethodPost, acceptedPath, `{"destination":"exa mple.com"}`, 400, "invalid", []string{"destination"}},
		{"bad protocol", http.MethodPost, acceptedPath, `{"destination":"a.example","protocol":"QUIC"}`, 400, "invalid", []string{"protocol", "QUIC"}},
		{"bad cluster", http.MethodPost, acceptedPath, `{"destination":"a.example","cluster":"a/b"}`, 400, "invalid", []string{"cluster"}},
		{"bad by", http.MethodPost, acceptedPath, `{"destination":"a.example","by":"x\u0000y"}`, 400, "invalid", []string{"by"}},
		{"query parameter", http.MethodPost, acceptedPath + "?force=1", `{"destination":"a.example"}`, 400, "invalid", []string{`"force"`}},
		{"upper-case namespace", http.MethodPost, "/api/v1/apps/Media/recyclarr/accepted", `{"destination":"a.example"}`, 400, "invalid", []string{"namespace", `"Media"`}},
		{"dot-dot app", http.MethodDelete, "/api/v1/apps/media/../accepted", `{"destination":"a.example"}`, 400, "invalid", []string{"app", `".."`}},
		{"escaped slash", http.MethodPost, "/api/v1/apps/..%2Fetc/x/accepted", `{"destination":"a.example"}`, 400, "invalid", []string{"namespace"}},
		{"body too large", http.MethodPost, acceptedPath, `{"destination":"a.example","by":"` + strings.Repeat("x", 70<<10) + `"}`, 413, "too_large", []string{"larger than 65536 bytes"}},
		{"too large after one value", http.MethodPost, acceptedPath, `{"destination":"a.example"}` + strings.Repeat(" ", 70<<10), 413, "too_large", nil},
		{"wrong method", http.MethodPut, acceptedPath, `{"destination":"a.example"}`, 405, "method_not_allowed", []string{"PUT"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.do(tt.method, tt.path, tt.body, bearer).requireError(t, tt.status, tt.code, tt.want...)
		})
	}
	acc, err := e.db.AcceptedAll(context.Background())
	require.NoError(t, err)
	require.Empty(t, acc)
	require.Zero(t, e.changed.Load())
}

func TestAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.record(novel(recyclarr, github, now))
	body := `{"destination":"api.github.com","port":443}`
	tests := []struct {
		name string
		auth string
	}{
		{"no header", ""},
		{"wrong token", "Bearer " + strings.Repeat("x", len(testToken))},
		{"token prefix", "Bearer " + testToken[:len(testToken)-1]},
		{"token with more", "Bearer " + testToken + "x"},
		{"other scheme", "Basic " + testToken},
		{"scheme only", "Bearer"},
		{"token without scheme", testToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, method := range []string{http.MethodPost, http.MethodDelete} {
				r := e.do(method, acceptedPath, body, tt.auth)
				r.requireError(t, http.StatusUnauthorized, "unauthorized")
				require.Contains(t, r.header.Get("WWW-Authenticate"), "Bearer")
			}
			// Authorization comes before validation: an unauthorized
			// caller learns nothing about names or bodies.
			e.do(http.MethodPost, "/api/v1/apps/../x/accepted", "{", tt.auth).requireError(t, http.StatusUnauthorized, "unauthorized")
		})
	}
	// The scheme is case-insensitive.
	r := e.do(http.MethodPost, acceptedPath, body, "bearer "+testToken)
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	r = e.do(http.MethodDelete, acceptedPath, body, bearer)
	require.Equal(t, http.StatusNoContent, r.status, "%s", r.body)
	// Reads need no token.
	require.Equal(t, http.StatusOK, e.get("/api/v1/apps").status)
}

func TestMutationsDisabledWithoutToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{options: func(o *httpapi.Options) { o.Token = "" }})
	e.seed()
	for _, method := range []string{http.MethodPost, http.MethodDelete} {
		for _, auth := range []string{"", bearer} {
			e.do(method, acceptedPath, `{"destination":"api.github.com"}`, auth).
				requireError(t, http.StatusServiceUnavailable, "disabled", "mutations are disabled until EGRESSD_API_TOKEN is set")
		}
	}
	var apps struct {
		Apps []appJSON `json:"apps"`
	}
	e.getJSON("/api/v1/apps", &apps)
	require.Len(t, apps.Apps, 4, "reads still work")
	acc, err := e.db.AcceptedAll(context.Background())
	require.NoError(t, err)
	require.Empty(t, acc)
}

// TestAcceptUnknownApp: accepting for an app egressd never saw is a 404
// (a typo would otherwise go unnoticed while the real alert keeps firing),
// unless the body forces it.
func TestAcceptUnknownApp(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.record(novel(recyclarr, github, ago(time.Hour)))
	ctx := context.Background()

	e.do(http.MethodPost, "/api/v1/apps/media/nosuch/accepted", `{"destination":"api.github.com","port":443}`, bearer).
		requireError(t, http.StatusNotFound, "not_found", `unknown app media/nosuch; "force": true to accept ahead of its first flow`)
	e.do(http.MethodPost, acceptedPath, `{"destination":"api.github.com","port":443,"cluster":"edge"}`, bearer).
		requireError(t, http.StatusNotFound, "not_found", "unknown app media/recyclarr in cluster edge")
	acc, err := e.db.AcceptedAll(ctx)
	require.NoError(t, err)
	require.Empty(t, acc, "nothing is stored for an unknown app")
	require.Zero(t, e.changed.Load())

	// Known in its cluster, or in every cluster: accepted.
	r := e.do(http.MethodPost, acceptedPath, `{"destination":"api.github.com","port":443,"cluster":"default"}`, bearer)
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)

	// Forced: accepted ahead of the app's first flow.
	r = e.do(http.MethodPost, "/api/v1/apps/media/nosuch/accepted", `{"destination":"api.github.com","port":443,"force":true}`, bearer)
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	var got acceptedJSON
	r.json(t, &got)
	require.Equal(t, "nosuch", got.Accepted.App)
	acc, err = e.db.AcceptedAll(ctx)
	require.NoError(t, err)
	require.Len(t, acc, 2)
}
