package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/egressd/egressd"
)

// ReadyFunc reports whether egressd can do its job; a non-nil error makes
// /readyz answer 503 with the error's message.
type ReadyFunc func(ctx context.Context) error

// AppReader lists apps (*postgres.DB).
type AppReader interface {
	// AppSummaries returns the page of apps f selects.
	AppSummaries(ctx context.Context, f egressd.AppFilter) ([]egressd.AppSummary, error)
	AppClusters(ctx context.Context, namespace, name string) ([]string, error)
}

// DestinationReader reads what an app reached (*postgres.DB). Both methods
// return an error matching egressd.ErrNotFound for an unknown app.
type DestinationReader interface {
	AppDestinations(ctx context.Context, f egressd.DestinationFilter) ([]egressd.DestinationRollup, error)
	AppWindowEntries(ctx context.Context, app egressd.App, from, to time.Time) ([]egressd.WindowEntry, error)
}

// AnomalyReader reads anomalies (*postgres.DB).
type AnomalyReader interface {
	Anomalies(ctx context.Context, f egressd.AnomalyFilter) ([]egressd.Anomaly, error)
	Anomaly(ctx context.Context, fingerprint string) (egressd.Anomaly, error)
}

// AcceptStore keeps the destinations operators accepted (*postgres.DB).
// Accept also resolves the firing novel-destination anomalies it covers.
type AcceptStore interface {
	Accept(ctx context.Context, a egressd.Accepted) error
	Unaccept(ctx context.Context, app egressd.App, dest egressd.Destination) (bool, error)
	IsAccepted(ctx context.Context, app egressd.App, dest egressd.Destination) (bool, error)
}

// AppFlags says how the detector treats an app (the detector).
type AppFlags interface {
	// Unbounded reports whether the app raises no novelty, by
	// configuration or by its baseline file.
	Unbounded(app egressd.App) bool
}

// AppFlagsFunc adapts a function to AppFlags.
type AppFlagsFunc func(app egressd.App) bool

// Unbounded calls f.
func (f AppFlagsFunc) Unbounded(app egressd.App) bool { return f(app) }

// Backends are what the API reads and changes. cmd/egressd sets the
// stores to its *postgres.DB.
type Backends struct {
	Apps         AppReader
	Destinations DestinationReader
	Anomalies    AnomalyReader
	Accepted     AcceptStore
	// Flags marks unbounded apps; nil reports none.
	Flags AppFlags
	// AcceptedChanged, when set, is called after an acceptance was stored
	// or taken back: the place to wake the alert sender (its resolve is
	// due) and refresh the detector's accepted set.
	AcceptedChanged func()
	// Pages, when set, is mounted at PagesPath: the triage pages alerts
	// link to (package triage), which bound and authorize their own
	// requests.
	Pages http.Handler
}

// PagesPath is where Backends.Pages is mounted.
const PagesPath = "/triage"

func (b Backends) validate() error {
	switch {
	case b.Apps == nil:
		return errors.New("httpapi: Backends.Apps is nil")
	case b.Destinations == nil:
		return errors.New("httpapi: Backends.Destinations is nil")
	case b.Anomalies == nil:
		return errors.New("httpapi: Backends.Anomalies is nil")
	case b.Accepted == nil:
		return errors.New("httpapi: Backends.Accepted is nil")
	}
	return nil
}

// Options configure the HTTP API. They print with the token redacted.
type Options struct {
	// Gatherer serves /metrics; nil leaves /metrics out.
	Gatherer prometheus.Gatherer
	// Ready answers /readyz; nil is always ready.
	Ready ReadyFunc
	// ReadyDetail, when set, says what is degraded without making egressd
	// unready (the volume rule's Prometheus failing): a non-empty answer is
	// the "detail" of a 200 /readyz.
	ReadyDetail func() string
	// ReadyTimeout bounds one readiness check.
	ReadyTimeout time.Duration
	// Token authorizes mutations (Authorization: Bearer TOKEN). Empty
	// disables them: they answer 503 while reads keep working.
	Token Token
	// LearningPeriod is the detector's: an app first seen less than this
	// ago is listed as learning.
	LearningPeriod time.Duration
	// RequestTimeout bounds each /api request.
	RequestTimeout time.Duration
	// MaxBodyBytes bounds a request body; a larger one is answered 413.
	MaxBodyBytes int64
	// MaxClientRequests bounds the /api requests one client (a remote IP
	// address; an IPv6 /64) has in flight; one more is answered 429 with
	// Retry-After. Behind a proxy every request comes from the proxy's
	// address: raise it there, or limit at the proxy.
	MaxClientRequests int
	// ReadHeaderTimeout, ReadTimeout (header and body), WriteTimeout (from
	// the end of the request's header to the end of the answer) and
	// IdleTimeout (a keep-alive connection between requests) bound how
	// long a connection can be held; NewServer sets them. WriteTimeout
	// must exceed RequestTimeout, so that a request that runs out of time
	// is still answered 504.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	// Now is the clock of learning states, default baseline times and
	// acceptances; nil is time.Now.
	Now func() time.Time
}

// DefaultOptions returns the options egressd serves with: no token
// (mutations disabled), a 24 h learning period, 10 s per request, 64 KiB
// bodies, 4 API requests in flight per client; a connection gets 10 s for
// its request header, 15 s for the whole request, 30 s for the answer, and
// is closed after 60 s idle.
func DefaultOptions() Options {
	return Options{
		ReadyTimeout:      2 * time.Second,
		LearningPeriod:    24 * time.Hour,
		RequestTimeout:    10 * time.Second,
		MaxBodyBytes:      64 << 10,
		MaxClientRequests: 4,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
}

// Validate reports the first invalid option, naming the field.
func (o Options) Validate() error {
	switch {
	case o.ReadyTimeout <= 0:
		return fmt.Errorf("httpapi: Options.ReadyTimeout must be > 0, got %s", o.ReadyTimeout)
	case o.LearningPeriod < 0:
		return fmt.Errorf("httpapi: Options.LearningPeriod must be >= 0, got %s", o.LearningPeriod)
	case o.RequestTimeout <= 0:
		return fmt.Errorf("httpapi: Options.RequestTimeout must be > 0, got %s", o.RequestTimeout)
	case o.MaxBodyBytes <= 0:
		return fmt.Errorf("httpapi: Options.MaxBodyBytes must be > 0, got %d", o.MaxBodyBytes)
	case o.MaxClientRequests <= 0:
		return fmt.Errorf("httpapi: Options.MaxClientRequests must be > 0, got %d", o.MaxClientRequests)
	case o.ReadHeaderTimeout <= 0:
		return fmt.Errorf("httpapi: Options.ReadHeaderTimeout must be > 0, got %s", o.ReadHeaderTimeout)
	case o.ReadTimeout < o.ReadHeaderTimeout:
		return fmt.Errorf("httpapi: Options.ReadTimeout (%s) must be >= ReadHeaderTimeout (%s)", o.ReadTimeout, o.ReadHeaderTimeout)
	case o.WriteTimeout <= o.RequestTimeout:
		return fmt.Errorf("httpapi: Options.WriteTimeout (%s) must be longer than RequestTimeout (%s)", o.WriteTimeout, o.RequestTimeout)
	case o.IdleTimeout <= 0:
		return fmt.Errorf("httpapi: Options.IdleTimeout must be > 0, got %s", o.IdleTimeout)
	}
	return o.Token.validate()
}

// NewServer returns the HTTP server of handler h (from New) with the
// connection timeouts of opts: a client can hold a connection only as long
// as it sends its request or reads its answer, and an idle keep-alive
// connection is closed.
func NewServer(opts Options, h http.Handler) (*http.Server, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: opts.ReadHeaderTimeout,
		ReadTimeout:       opts.ReadTimeout,
		WriteTimeout:      opts.WriteTimeout,
		IdleTimeout:       opts.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
	}, nil
}

// maxHeaderBytes bounds a request's header: a bearer token and a cursor
// fit many times over.
const maxHeaderBytes = 64 << 10

// server holds what the handlers share.
type server struct {
	opts    Options
	b       Backends
	log     *slog.Logger
	metrics *Metrics
	token   *tokenHash // nil: mutations disabled
	// root is the router, to find the methods a path allows.
	root    chi.Router
	clients *clientLimiter
}

// New returns the HTTP handler of egressd serve: the operator API under
// /api/v1 (see the package documentation), /healthz, /readyz and /metrics.
// A nil logger discards; nil metrics are not registered anywhere.
func New(opts Options, b Backends, logger *slog.Logger, m *Metrics) (http.Handler, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := b.validate(); err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	s := &server{opts: opts, b: b, log: logger, metrics: m, clients: newClientLimiter(opts.MaxClientRequests)}
	if opts.Token != "" {
		h := hashToken(string(opts.Token))
		s.token = &h
	}

	r := s.router()
	r.Route("/api/v1", func(r chi.Router) {
		r.Use(s.perClient, s.limits)
		r.Get("/apps", s.listApps)
		r.Get("/apps/{namespace}/{app}/destinations", s.appDestinations)
		r.Get("/apps/{namespace}/{app}/baseline", s.appBaseline)
		r.Get("/anomalies", s.listAnomalies)
		r.Get("/anomalies/{fingerprint}", s.getAnomaly)
		r.Group(func(r chi.Router) {
			r.Use(s.authorize)
			r.Post("/apps/{namespace}/{app}/accepted", s.accept)
			r.Delete("/apps/{namespace}/{app}/accepted", s.unaccept)
		})
	})
	if b.Pages != nil {
		// The per-client cap covers the pages too: they read the same
		// database pool.
		r.Mount(PagesPath, s.perClient(b.Pages))
	}
	return r, nil
}

// router returns the root router with the middleware every route shares,
// JSON answers for unknown routes and methods, and the probes.
func (s *server) router() chi.Router {
	r := chi.NewRouter()
	s.root = r
	// instrument is outermost, so it counts what recoverer answers; both
	// are set before any route, so subrouters inherit the handlers below.
	// HEAD is answered as GET without the body, and OPTIONS with the
	// methods the path allows (RFC 9110, 9.3.2 and 9.3.7).
	r.Use(s.instrument, s.recoverer, middleware.GetHead, s.options)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, egressd.Errorf(egressd.ENOTFOUND, "no route %s %s: see docs/api.md for the /api/v1 routes", echo(r.Method), echo(r.URL.Path)))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		// A 405 names the methods that are allowed (RFC 9110, 15.5.6).
		allow := s.allowed(r)
		w.Header().Set("Allow", strings.Join(allow, ", "))
		s.writeError(w, r, egressd.Errorf(codeMethodNotAllowed, "method %s not allowed on %s: it allows %s", echo(r.Method), echo(r.URL.Path), strings.Join(allow, ", ")))
	})
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Get("/readyz", func(w http.ResponseWriter, req *http.Request) {
		ctx, cancel := context.WithTimeout(req.Context(), s.opts.ReadyTimeout)
		defer cancel()
		if s.opts.Ready != nil {
			if err := s.opts.Ready(ctx); err != nil {
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
				return
			}
		}
		body := map[string]string{"status": "ready"}
		if s.opts.ReadyDetail != nil {
			if d := s.opts.ReadyDetail(); d != "" {
				body["detail"] = d
			}
		}
		writeJSON(w, http.StatusOK, body)
	})
	if s.opts.Gatherer != nil {
		r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{}))
	}
	return r
}

// routePattern returns the chi route pattern the request matched, or
// unmatchedRoute; complete once routing is done.
func routePattern(r *http.Request) string {
	if rc := chi.RouteContext(r.Context()); rc != nil {
		if p := rc.RoutePattern(); p != "" {
			return p
		}
	}
	return unmatchedRoute
}

// instrument counts and times every request by route pattern, and logs it
// at debug level. It never logs headers: the Authorization header carries
// the token.
func (s *server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		code := ww.Status()
		if code == 0 {
			code = http.StatusOK
		}
		d := time.Since(start)
		route := routePattern(r)
		s.metrics.observe(r.Method, route, code, d)
		s.log.Debug("http_request", "method", methodLabel(r.Method), "route", route, "path", echo(r.URL.Path),
			"status", code, "bytes", ww.BytesWritten(), "duration", d)
	})
}

// recoverer answers a panic with a JSON 500 instead of a dropped
// connection, and logs it with its stack.
func (s *server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler { //nolint:errorlint // the sentinel is re-panicked as is
				panic(v)
			}
			s.log.Error("http_panic", "method", methodLabel(r.Method), "route", routePattern(r), "err", fmt.Sprint(v), "stack", string(debug.Stack()))
			if ww, ok := w.(middleware.WrapResponseWriter); ok && ww.Status() != 0 {
				return // the answer has started; nothing sensible can follow
			}
			writeJSON(w, http.StatusInternalServerError, errorBody{Error: errorJSON{Code: egressd.EINTERNAL, Message: "internal error"}})
		}()
		next.ServeHTTP(w, r)
	})
}

// limits bounds an API request: its time and its body. It also keeps
// answers out of caches and content sniffing.
func (s *server) limits(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), s.opts.RequestTimeout)
		defer cancel()
		r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// authorize lets a mutation through only with the configured bearer token.
// Without a token, mutations are disabled (503). Neither the token nor the
// header is ever logged.
func (s *server) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.token == nil {
			s.writeError(w, r, egressd.Errorf(codeDisabled, "mutations are disabled until EGRESSD_API_TOKEN is set"))
			return
		}
		// Refusals are counted and logged at debug level only: anyone who
		// reaches the listener can send them, as fast as they like.
		tok, ok := bearer(r.Header.Get("Authorization"))
		if !ok {
			s.metrics.unauthorized(unauthorizedNoToken)
			s.log.Debug("http_unauthorized", "reason", unauthorizedNoToken, "method", methodLabel(r.Method), "route", routePattern(r), "remote", r.RemoteAddr)
			w.Header().Set("WWW-Authenticate", `Bearer realm="egressd"`)
			s.writeError(w, r, egressd.Errorf(egressd.EUNAUTHORIZED, "missing \"Authorization: Bearer TOKEN\" header: mutations need the token egressd was given in EGRESSD_API_TOKEN"))
			return
		}
		if !s.token.equal(hashToken(tok)) {
			s.metrics.unauthorized(unauthorizedWrongToken)
			s.log.Debug("http_unauthorized", "reason", unauthorizedWrongToken, "method", methodLabel(r.Method), "route", routePattern(r), "remote", r.RemoteAddr)
			w.Header().Set("WWW-Authenticate", `Bearer realm="egressd", error="invalid_token"`)
			s.writeError(w, r, egressd.Errorf(egressd.EUNAUTHORIZED, "wrong bearer token"))
			return
		}
		next.ServeHTTP(w, r)
	})
}
