package httpapi_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/httpapi"
)

// clientFrom returns an HTTP client whose connections come from the
// loopback address local (any 127.0.0.0/8 address is this host on Linux).
func clientFrom(local string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

func TestPerClientLimit(t *testing.T) {
	t.Parallel()
	var (
		entered = make(chan struct{}, 10)
		unblock = make(chan struct{})
	)
	f := &fakeStore{appSummaries: func(ctx context.Context, _ egressd.AppFilter) ([]egressd.AppSummary, error) {
		entered <- struct{}{}
		select {
		case <-unblock:
		case <-ctx.Done():
		}
		return nil, nil
	}}
	reg := prometheus.NewRegistry()
	e := newEnv(t, envOpts{backends: f.backends(), reg: reg, options: func(o *httpapi.Options) { o.MaxClientRequests = 2 }})

	first := clientFrom("127.0.0.1")
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			resp, err := first.Get(e.url + "/api/v1/apps")
			if err == nil {
				resp.Body.Close()
			}
		})
	}
	<-entered
	<-entered
	// The third request of the same client is refused at once...
	resp, err := first.Get(e.url + "/api/v1/apps")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	r := response{status: resp.StatusCode, header: resp.Header, body: body}
	r.requireError(t, http.StatusTooManyRequests, "too_many_requests", "2 API requests in flight")
	require.Equal(t, "1", resp.Header.Get("Retry-After"))
	// ... another client's is not, and the probes are never limited.
	other := clientFrom("127.0.0.2")
	go func() {
		resp, err := other.Get(e.url + "/api/v1/apps")
		if err == nil {
			resp.Body.Close()
		}
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("another client's request did not reach the store")
	}
	resp, err = first.Get(e.url + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	close(unblock)
	wg.Wait()
	// Answered requests give their slot back.
	resp, err = first.Get(e.url + "/api/v1/apps")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(e.get("/metrics").body), "egressd_httpapi_client_limited_requests_total 1")
}

func TestHeadAndOptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{reg: prometheus.NewRegistry()})
	e.seed()

	// HEAD is GET without the body (RFC 9110, 9.3.2).
	for _, path := range []string{"/api/v1/apps", "/api/v1/apps/media/recyclarr/destinations", "/healthz", "/readyz", "/metrics"} {
		get, head := e.get(path), e.do(http.MethodHead, path, "", "")
		require.Equal(t, http.StatusOK, head.status, "HEAD %s", path)
		require.Equal(t, get.header.Get("Content-Type"), head.header.Get("Content-Type"), "HEAD %s", path)
		require.Empty(t, head.body, "HEAD %s", path)
		require.NotEmpty(t, get.body, "GET %s", path)
	}
	e.do(http.MethodHead, "/api/v1/apps/media/nope/destinations", "", "").requireStatusOnly(t, http.StatusNotFound)

	// OPTIONS lists what the path allows (9.3.7); 405 does too (15.5.6).
	tests := []struct {
		path  string
		allow string
	}{
		{"/api/v1/apps", "GET, HEAD, OPTIONS"},
		{"/api/v1/anomalies/abc", "GET, HEAD, OPTIONS"},
		{acceptedPath, "POST, DELETE, OPTIONS"},
		{"/metrics", "GET, HEAD, OPTIONS"},
	}
	for _, tt := range tests {
		r := e.do(http.MethodOptions, tt.path, "", "")
		require.Equal(t, http.StatusNoContent, r.status, "OPTIONS %s: %s", tt.path, r.body)
		require.Equal(t, tt.allow, r.header.Get("Allow"), "OPTIONS %s", tt.path)
		require.Empty(t, r.body)
	}
	e.do(http.MethodOptions, "/api/v1/nope", "", "").requireError(t, http.StatusNotFound, "not_found", "/api/v1/nope")

	for _, tt := range []struct{ method, path, allow string }{
		{http.MethodPatch, "/api/v1/apps", "GET, HEAD, OPTIONS"},
		{http.MethodPost, "/api/v1/apps", "GET, HEAD, OPTIONS"},
		{"BREW", "/api/v1/apps", "GET, HEAD, OPTIONS"},
		{http.MethodGet, acceptedPath, "POST, DELETE, OPTIONS"},
		{http.MethodHead, acceptedPath, "POST, DELETE, OPTIONS"},
		{http.MethodPost, "/healthz", "GET, HEAD, OPTIONS"},
		{http.MethodDelete, "/metrics", "GET, HEAD, OPTIONS"},
	} {
		r := e.do(tt.method, tt.path, "", "")
		require.Equal(t, http.StatusMethodNotAllowed, r.status, "%s %s: %s", tt.method, tt.path, r.body)
		require.Equal(t, tt.allow, r.header.Get("Allow"), "%s %s", tt.method, tt.path)
		if tt.method != http.MethodHead {
			r.requireError(t, http.StatusMethodNotAllowed, "method_not_allowed", "it allows "+tt.allow)
		}
	}
}

// requireStatusOnly checks the status of an answer without a body (HEAD).
func (r response) requireStatusOnly(t *testing.T, status int) {
	t.Helper()
	require.Equal(t, status, r.status)
	require.Empty(t, r.body)
}

func TestUnauthorizedCountedNotWarned(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	e := newEnv(t, envOpts{reg: reg})
	body := `{"destination":"api.github.com","port":443}`
	for range 3 {
		e.do(http.MethodPost, acceptedPath, body, "").requireError(t, http.StatusUnauthorized, "unauthorized")
	}
	e.do(http.MethodDelete, acceptedPath, body, "Bearer "+strings.Repeat("x", 20)).requireError(t, http.StatusUnauthorized, "unauthorized")
	metrics := string(e.get("/metrics").body)
	require.Contains(t, metrics, `egressd_httpapi_unauthorized_requests_total{reason="no_token"} 3`)
	require.Contains(t, metrics, `egressd_httpapi_unauthorized_requests_total{reason="wrong_token"} 1`)
	logs := e.logs.String()
	require.Equal(t, 4, strings.Count(logs, "level=DEBUG msg=http_unauthorized"), "%s", logs)
	require.NotContains(t, logs, "level=WARN")
}

// TestServerTimeouts checks that NewServer's connections cannot be held: a
// body that stalls and a keep-alive connection left idle are both closed.
func TestServerTimeouts(t *testing.T) {
	t.Parallel()
	opts := httpapi.DefaultOptions()
	opts.ReadHeaderTimeout = 200 * time.Millisecond
	opts.ReadTimeout = 300 * time.Millisecond
	opts.IdleTimeout = 300 * time.Millisecond
	opts.Token = testToken
	f := &fakeStore{}
	h, err := httpapi.New(opts, *f.backends(), nil, nil)
	require.NoError(t, err)
	srv, err := httpapi.NewServer(opts, h)
	require.NoError(t, err)
	require.Equal(t, 30*time.Second, srv.WriteTimeout)
	ts := httptest.NewUnstartedServer(nil)
	ts.Config = srv
	ts.Start()
	t.Cleanup(ts.Close)

	closedWithin := func(t *testing.T, conn net.Conn, d time.Duration) {
		t.Helper()
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(d)))
		_, err := io.Copy(io.Discard, conn) // whatever the server answers, then EOF
		require.NoError(t, err, "the server should have closed the connection within %s", d)
	}
	dial := func(t *testing.T) net.Conn {
		conn, err := net.Dial("tcp", ts.Listener.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	t.Run("slow body", func(t *testing.T) {
		conn := dial(t)
		_, err := io.WriteString(conn, "POST "+acceptedPath+" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+testToken+"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
		require.NoError(t, err)
		closedWithin(t, conn, 5*time.Second)
	})
	t.Run("slow header", func(t *testing.T) {
		conn := dial(t)
		_, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
		require.NoError(t, err)
		closedWithin(t, conn, 5*time.Second)
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		conn := dial(t)
		_, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.False(t, resp.Close, "the connection is kept alive after the answer")
		resp.Body.Close()
		closedWithin(t, conn, 5*time.Second)
	})
}

func TestServerOptionsValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(*httpapi.Options)
		want   string
	}{
		{"per-client limit", func(o *httpapi.Options) { o.MaxClientRequests = 0 }, "Options.MaxClientRequests must be > 0"},
		{"header timeout", func(o *httpapi.Options) { o.ReadHeaderTimeout = 0 }, "Options.ReadHeaderTimeout must be > 0"},
		{"read timeout", func(o *httpapi.Options) { o.ReadTimeout = time.Second }, "Options.ReadTimeout (1s) must be >= ReadHeaderTimeout (10s)"},
		{"write timeout", func(o *httpapi.Options) { o.WriteTimeout = o.RequestTimeout }, "Options.WriteTimeout (10s) must be longer than RequestTimeout (10s)"},
		{"idle timeout", func(o *httpapi.Options) { o.IdleTimeout = 0 }, "Options.IdleTimeout must be > 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := httpapi.DefaultOptions()
			tt.change(&o)
			_, err := httpapi.NewServer(o, http.NotFoundHandler())
			require.ErrorContains(t, err, tt.want)
		})
	}
}
