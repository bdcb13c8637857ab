package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/stretchr/testify/require"

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

func TestEndpoints(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	promauto.With(reg).NewCounter(prometheus.CounterOpts{Name: "egressd_test_total", Help: "x"}).Add(3)
	var readyErr error
	srv := httptest.NewServer(httpapi.NewRouter(httpapi.Options{
		Gatherer: reg,
		Ready:    func(context.Context) error { return readyErr },
	}))
	defer srv.Close()

	code, body := get(t, srv.URL+"/healthz")
	require.Equal(t, http.StatusOK, code)
	require.JSONEq(t, `{"status":"ok"}`, body)

	code, _ = get(t, srv.URL+"/readyz")
	require.Equal(t, http.StatusOK, code)
	readyErr = errors.New("hubble stream not established")
	code, body = get(t, srv.URL+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	var v map[string]string
	require.NoError(t, json.Unmarshal([]byte(body), &v))
	require.Equal(t, "hubble stream not established", v["reason"])

	code, body = get(t, srv.URL+"/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "egressd_test_total 3")

	code, _ = get(t, srv.URL+"/nope")
	require.Equal(t, http.StatusNotFound, code)
}
