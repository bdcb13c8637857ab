package triage

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/gorilla/securecookie"

	"github.com/egressd/egressd"
)

// Prefix is where the pages are mounted; links and the session cookie's
// Path use it.
const Prefix = "/triage"

// AnomalyPath returns the path of an anomaly's page.
func AnomalyPath(fingerprint string) string {
	return Prefix + "/anomalies/" + url.PathEscape(fingerprint)
}

// Link returns externalURL followed by the anomaly's page, or "" when
// either is empty: where alerts link (annotation and generatorURL).
func Link(externalURL, fingerprint string) string {
	if externalURL == "" || fingerprint == "" {
		return ""
	}
	return strings.TrimRight(externalURL, "/") + AnomalyPath(fingerprint)
}

// AnomalyReader reads anomalies and how they ended (*postgres.DB).
type AnomalyReader interface {
	Anomalies(ctx context.Context, f egressd.AnomalyFilter) ([]egressd.Anomaly, error)
	Anomaly(ctx context.Context, fingerprint string) (egressd.Anomaly, error)
	Resolution(ctx context.Context, fingerprint string) (egressd.Resolution, error)
}

// TrafficReader reads what apps reached (*postgres.DB).
type TrafficReader interface {
	AppDestinations(ctx context.Context, f egressd.DestinationFilter) ([]egressd.DestinationRollup, error)
	DestinationUsers(ctx context.Context, name string, limit int) ([]egressd.DestinationRollup, error)
	DestinationHours(ctx context.Context, app egressd.App, dest egressd.Destination, from, to time.Time) ([]egressd.HourlyRollup, error)
}

// Actions change what the detector and the alert sender do (*postgres.DB).
type Actions interface {
	// Accept stores an acceptance (an exact destination or a pattern).
	Accept(ctx context.Context, a egressd.Accepted) error
	// ResolveBy resolves an anomaly and records who ended it, and how.
	ResolveBy(ctx context.Context, fingerprint string, r egressd.Resolution) (bool, error)
}

// Backends are what the pages read and change.
type Backends struct {
	Anomalies AnomalyReader
	Traffic   TrafficReader
	Actions   Actions
	// Changed, when set, is called after an action stored something: the
	// place to wake the alert sender (a resolve is due) and refresh the
	// detector's accepted set.
	Changed func()
}

// Options configure the pages.
type Options struct {
	// Token is the API token (EGRESSD_API_TOKEN) that signs operators in;
	// empty disables actions (reads keep working).
	Token string
	// ExternalURL is egressd's URL as operators reach it (--external-url).
	// An https one marks the session cookie Secure, and its origin is
	// trusted for forms (a proxy that rewrites Host).
	ExternalURL string
	// SessionTTL is how long a sign-in lasts.
	SessionTTL time.Duration
	// Window is how far back the app's baseline and the recent flows go.
	Window time.Duration
	// RequestTimeout bounds each request.
	RequestTimeout time.Duration
	// Now is the clock of sessions and actions; nil is time.Now.
	Now func() time.Time
}

// DefaultOptions returns sessions of 12 h, a 7-day window and 10 s per
// request; no token (actions disabled).
func DefaultOptions() Options {
	return Options{SessionTTL: 12 * time.Hour, Window: 7 * 24 * time.Hour, RequestTimeout: 10 * time.Second}
}

// Validate reports the first invalid option, naming the field.
func (o Options) Validate() error {
	switch {
	case o.SessionTTL <= 0:
		return fmt.Errorf("triage: Options.SessionTTL must be > 0, got %s", o.SessionTTL)
	case o.Window <= 0:
		return fmt.Errorf("triage: Options.Window must be > 0, got %s", o.Window)
	case o.RequestTimeout <= 0:
		return fmt.Errorf("triage: Options.RequestTimeout must be > 0, got %s", o.RequestTimeout)
	}
	if o.ExternalURL != "" {
		if _, err := origin(o.ExternalURL); err != nil {
			return fmt.Errorf("triage: Options.ExternalURL: %w", err)
		}
	}
	return nil
}

// origin returns scheme://host of an http(s) URL.
func origin(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q: want an http(s) base URL such as https://egressd.example.com", raw)
	}
	return u.Scheme + "://" + u.Host, nil
}

// maxFormBytes bounds a form's body: a name, a token and a pattern.
const maxFormBytes = 16 << 10

// pages holds what the handlers share.
type pages struct {
	opts    Options
	b       Backends
	log     *slog.Logger
	cookies *securecookie.SecureCookie // nil: actions disabled
	token   [sha256.Size]byte
	secure  bool
}

// New returns the pages' handler. Its routes are relative to where it is
// mounted, which must be Prefix (links and the cookie's path say so). A nil
// logger discards.
func New(opts Options, b Backends, logger *slog.Logger) (http.Handler, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if b.Anomalies == nil || b.Traffic == nil || b.Actions == nil {
		return nil, errors.New("triage: Backends.Anomalies, Traffic and Actions are required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	p := &pages{opts: opts, b: b, log: logger, secure: strings.HasPrefix(opts.ExternalURL, "https://")}
	if opts.Token != "" {
		p.token = sha256.Sum256([]byte(opts.Token))
		p.cookies = newCookies(opts.Token, opts.SessionTTL)
	}

	csrf := http.NewCrossOriginProtection()
	if opts.ExternalURL != "" {
		o, _ := origin(opts.ExternalURL) // checked by Validate
		if err := csrf.AddTrustedOrigin(o); err != nil {
			return nil, fmt.Errorf("triage: Options.ExternalURL: %w", err)
		}
	}
	csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.log.Debug("triage_cross_origin_refused", "path", r.URL.Path, "origin", r.Header.Get("Origin"), "remote", r.RemoteAddr)
		p.message(w, r, http.StatusForbidden, "Refused", "This form was sent from another site. Open the page on egressd itself and send it from there.")
	}))

	r := chi.NewRouter()
	r.Use(p.limits, csrf.Handler)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		p.message(w, r, http.StatusNotFound, "Not found", "There is no page here. The list of firing anomalies is at "+Prefix+"/.")
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		p.message(w, r, http.StatusMethodNotAllowed, "Method not allowed", "This page does not take "+r.Method+" requests.")
	})
	r.Get("/", p.list)
	r.Get("/anomalies/{fingerprint}", p.anomaly)
	r.Post("/anomalies/{fingerprint}/accept", p.act(p.acceptExact))
	r.Post("/anomalies/{fingerprint}/accept-pattern", p.act(p.acceptPattern))
	r.Post("/anomalies/{fingerprint}/dismiss", p.act(p.dismiss))
	r.Get("/login", p.loginForm)
	r.Post("/login", p.login)
	r.Post("/logout", p.logout)
	return r, nil
}

// styleHash is the CSP hash of the pages' one inline style block.
var styleHash = func() string {
	h := sha256.Sum256([]byte(style))
	return "'sha256-" + base64.StdEncoding.EncodeToString(h[:]) + "'"
}()

// limits bounds a request's time and body, and sets the headers every page
// carries: no caching (pages show live state and a session), no sniffing,
// no framing, no referrer beyond egressd, and a policy that runs no script.
func (p *pages) limits(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), p.opts.RequestTimeout)
		defer cancel()
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src "+styleHash+"; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

//go:embed templates/*.html
var templateFS embed.FS

// templates are parsed once: each page is the layout with its own
// "content".
var templates = func() map[string]*template.Template {
	funcs := template.FuncMap{
		"ts":         formatTime,
		"ago":        ago,
		"anomalyURL": AnomalyPath,
		"prefix":     func() string { return Prefix },
		"style":      func() template.CSS { return template.CSS(style) },
		"sevClass":   severityClass,
		"sevName":    severityName,
	}
	out := map[string]*template.Template{}
	for _, page := range []string{"list", "anomaly", "login", "message"} {
		out[page] = template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+page+".html"))
	}
	return out
}()

// render writes page with data, status st.
func (p *pages) render(w http.ResponseWriter, r *http.Request, st int, page string, data any) {
	var b strings.Builder
	if err := templates[page].Execute(&b, data); err != nil {
		p.log.Error("triage_render_failed", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(st)
	_, _ = io.WriteString(w, b.String())
}

// messageData is a page that says one thing.
type messageData struct {
	page
	Title, Text string
}

// message answers a page that says what happened and what to do.
func (p *pages) message(w http.ResponseWriter, r *http.Request, st int, title, text string) {
	p.render(w, r, st, "message", messageData{page: p.page(r, title), Title: title, Text: text})
}

// fail answers err: its message for a user's mistake, a generic one (and
// the error logged once) for anything else.
func (p *pages) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch egressd.ErrorCode(err) {
	case egressd.ENOTFOUND:
		p.message(w, r, http.StatusNotFound, "Not found", egressd.ErrorMessage(err))
	case egressd.EINVALID:
		p.message(w, r, http.StatusBadRequest, "Not accepted", egressd.ErrorMessage(err))
	default:
		if errors.Is(err, context.DeadlineExceeded) {
			p.message(w, r, http.StatusGatewayTimeout, "Timed out", "The database did not answer in time; try again.")
			return
		}
		p.log.Error("triage_request_failed", "method", r.Method, "path", r.URL.Path, "err", err)
		p.message(w, r, http.StatusInternalServerError, "Internal error", "Something went wrong on egressd's side; its log says what.")
	}
}

// page is what the layout shows on every page.
type page struct {
	Title string
	// User is who is signed in; empty when nobody is.
	User string
	// ActionsEnabled is false without a token.
	ActionsEnabled bool
	Path           string
}

func (p *pages) page(r *http.Request, title string) page {
	return page{Title: title, User: p.session(r), ActionsEnabled: p.cookies != nil, Path: r.URL.Path}
}

// fingerprint returns the path's fingerprint, validated before any lookup.
func fingerprint(r *http.Request) (string, error) {
	fp := chi.URLParam(r, "fingerprint")
	if len(fp) == 0 || len(fp) > 128 || strings.IndexFunc(fp, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-')
	}) >= 0 {
		return "", egressd.Errorf(egressd.EINVALID, "%q is not an anomaly's fingerprint: want the fingerprint annotation of an alert (letters, digits, '.', '_', ':' or '-', at most 128 characters)", bounded(fp, 64))
	}
	return fp, nil
}

// bounded cuts s to n bytes for messages (html/template escapes it).
func bounded(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// ago says how long before now t was, roughly.
func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case t.IsZero():
		return ""
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%d days ago", int(d/(24*time.Hour)))
}

func severityClass(s egressd.Severity) string {
	if s.Rank() == 0 {
		return "sev-none"
	}
	return "sev-" + string(s)
}

func severityName(s egressd.Severity) string {
	if s.Rank() == 0 {
		return "unranked"
	}
	return string(s)
}
