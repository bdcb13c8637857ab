package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/httpapi"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestProbesMetricsAndUnknownRoutes(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	e := newEnv(t, envOpts{reg: reg})
	e.seed()

	r := e.get("/healthz")
	require.Equal(t, http.StatusOK, r.status)
	require.JSONEq(t, `{"status":"ok"}`, string(r.body))
	require.Equal(t, http.StatusOK, e.get("/readyz").status)

	require.Equal(t, http.StatusOK, e.get("/api/v1/apps/media/recyclarr/destinations").status)
	require.Equal(t, http.StatusOK, e.get("/api/v1/apps/home/home-assistant/destinations").status)
	e.get("/api/v1/apps/media/nope/destinations").requireError(t, http.StatusNotFound, "not_found")
	e.get("/nope").requireError(t, http.StatusNotFound, "not_found", "/nope")
	e.get("/api/v1/nope").requireError(t, http.StatusNotFound, "not_found")
	e.do(http.MethodPatch, "/api/v1/apps", "", "").requireError(t, http.StatusMethodNotAllowed, "method_not_allowed", "PATCH")
	e.do("BREW", "/api/v1/apps", "", "").requireError(t, http.StatusMethodNotAllowed, "method_not_allowed")

	body := string(e.get("/metrics").body)
	for _, want := range []string{
		`egressd_httpapi_requests_total{code="200",method="GET",route="/api/v1/apps/{namespace}/{app}/destinations"} 2`,
		`egressd_httpapi_requests_total{code="404",method="GET",route="/api/v1/apps/{namespace}/{app}/destinations"} 1`,
		// Unknown paths count under the pattern of the router that
		// answered: a bounded set.
		`egressd_httpapi_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`egressd_httpapi_requests_total{code="404",method="GET",route="/api/v1/*"} 1`,
		`egressd_httpapi_requests_total{code="405",method="PATCH",route="/api/v1/*"} 1`,
		`egressd_httpapi_requests_total{code="405",method="other",route="unmatched"} 1`,
		`egressd_httpapi_requests_total{code="200",method="GET",route="/healthz"} 1`,
		`egressd_httpapi_request_duration_seconds_count{method="GET",route="/api/v1/apps/{namespace}/{app}/destinations"} 3`,
	} {
		require.Contains(t, body, want)
	}
	// Label values never come from the request as written.
	for _, raw := range []string{"recyclarr", "home-assistant", "nope", "BREW"} {
		require.NotContains(t, body, raw)
	}
}

func TestRequestTimeout(t *testing.T) {
	t.Parallel()
	f := &fakeStore{appSummaries: func(ctx context.Context, _ egressd.AppFilter) ([]egressd.AppSummary, error) {
		<-ctx.Done()
		return nil, fmt.Errorf("read app summaries: %w", ctx.Err())
	}}
	e := newEnv(t, envOpts{backends: f.backends(), options: func(o *httpapi.Options) { o.RequestTimeout = 50 * time.Millisecond }})
	start := time.Now()
	e.get("/api/v1/apps").requireError(t, http.StatusGatewayTimeout, "timeout", "longer than 50ms")
	require.Less(t, time.Since(start), 5*time.Second)
	require.Contains(t, e.logs.String(), "http_request_timeout")
}

func TestInternalErrorsAreLoggedNotShown(t *testing.T) {
	t.Parallel()
	f := &fakeStore{appSummaries: func(context.Context, egressd.AppFilter) ([]egressd.AppSummary, error) {
		return nil, errors.New(`read app summaries: connect to postgres://egressd:xxxxx@db:5432/egressd: server at 10.0.0.7 refused`)
	}}
	e := newEnv(t, envOpts{backends: f.backends()})
	r := e.get("/api/v1/apps")
	r.requireError(t, http.StatusInternalServerError, "internal")
	require.JSONEq(t, `{"error":{"code":"internal","message":"internal error"}}`, string(r.body))
	logs := e.logs.String()
	require.Equal(t, 1, strings.Count(logs, "http_request_failed"), "logged once:\n%s", logs)
	require.Contains(t, logs, "10.0.0.7 refused")
	require.Contains(t, logs, `route=/api/v1/apps`)
}

func TestPanicAnswersJSON(t *testing.T) {
	t.Parallel()
	f := &fakeStore{appSummaries: func(context.Context, egressd.AppFilter) ([]egressd.AppSummary, error) {
		panic("bug")
	}}
	reg := prometheus.NewRegistry()
	e := newEnv(t, envOpts{backends: f.backends(), reg: reg})
	e.get("/api/v1/apps").requireError(t, http.StatusInternalServerError, "internal", "internal error")
	require.Contains(t, e.logs.String(), "http_panic")
	require.Contains(t, string(e.get("/metrics").body), `egressd_httpapi_requests_total{code="500",method="GET",route="/api/v1/apps"} 1`)
}

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	f := &fakeStore{}
	tests := []struct {
		name   string
		change func(*httpapi.Options, *httpapi.Backends)
		want   string
	}{
		{"request timeout", func(o *httpapi.Options, _ *httpapi.Backends) { o.RequestTimeout = 0 }, "Options.RequestTimeout must be > 0"},
		{"body size", func(o *httpapi.Options, _ *httpapi.Backends) { o.MaxBodyBytes = -1 }, "Options.MaxBodyBytes must be > 0"},
		{"learning period", func(o *httpapi.Options, _ *httpapi.Backends) { o.LearningPeriod = -time.Hour }, "Options.LearningPeriod must be >= 0"},
		{"ready timeout", func(o *httpapi.Options, _ *httpapi.Backends) { o.ReadyTimeout = 0 }, "Options.ReadyTimeout must be > 0"},
		{"short token", func(o *httpapi.Options, _ *httpapi.Backends) { o.Token = "hunter2" }, "at least 16 characters"},
		{"token with a space", func(o *httpapi.Options, _ *httpapi.Backends) { o.Token = "hunter2 hunter2 hunter2" }, "without spaces"},
		{"no apps store", func(_ *httpapi.Options, b *httpapi.Backends) { b.Apps = nil }, "Backends.Apps is nil"},
		{"no accept store", func(_ *httpapi.Options, b *httpapi.Backends) { b.Accepted = nil }, "Backends.Accepted is nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, b := httpapi.DefaultOptions(), *f.backends()
			tt.change(&o, &b)
			_, err := httpapi.New(o, b, nil, nil)
			require.ErrorContains(t, err, tt.want)
			require.NotContains(t, err.Error(), "hunter2", "the token is never in an error")
		})
	}
	require.NoError(t, httpapi.DefaultOptions().Validate(), "no token: mutations disabled, valid")
}

func TestReadyzReportsWhy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{options: func(o *httpapi.Options) {
		o.Ready = func(context.Context) error { return errors.New("hubble stream not established") }
	}})
	r := e.get("/readyz")
	require.Equal(t, http.StatusServiceUnavailable, r.status)
	var v map[string]string
	require.NoError(t, json.Unmarshal(r.body, &v))
	require.Equal(t, "hubble stream not established", v["reason"])
}
