package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/egressd/egressd"
)

// Query parameter limits.
const (
	// MaxWindow is the longest window a request may ask for.
	MaxWindow = 90 * 24 * time.Hour
	// DefaultBaselineWindow is the baseline route's window, as
	// `egressd baseline export` has it.
	DefaultBaselineWindow = 168 * time.Hour
	// DefaultLimit and MaxLimit bound a page of every listing.
	DefaultLimit = egressd.DefaultPageSize
	MaxLimit     = egressd.MaxPageSize
)

// maxEcho bounds how much of a rejected value an error message repeats.
const maxEcho = 80

// echo returns s for an error message, shortened to maxEcho bytes.
func echo(s string) string {
	if len(s) > maxEcho {
		return strings.ToValidUTF8(s[:maxEcho], "") + "..."
	}
	return s
}

// appParam returns the app the path names (any cluster), validated.
func appParam(r *http.Request) (egressd.App, error) {
	ns, name := chi.URLParam(r, "namespace"), chi.URLParam(r, "app")
	if !egressd.ValidNamespace(ns) {
		return egressd.App{}, egressd.Errorf(egressd.EINVALID, "namespace %q in the path: want a Kubernetes namespace name (lower-case letters, digits and '-', at most %d characters)", echo(ns), egressd.MaxNamespaceLen)
	}
	if !egressd.ValidAppName(name) {
		return egressd.App{}, egressd.Errorf(egressd.EINVALID, "app %q in the path: want letters, digits, '-', '_' or '.', starting and ending with a letter or digit, at most %d characters", echo(name), egressd.MaxAppLen)
	}
	return egressd.App{Namespace: ns, Name: name}, nil
}

// fingerprintParam returns the anomaly fingerprint the path names.
func fingerprintParam(r *http.Request) (string, error) {
	fp := chi.URLParam(r, "fingerprint")
	if !validFingerprint(fp) {
		return "", egressd.Errorf(egressd.EINVALID, "fingerprint %q in the path: want an anomaly's fingerprint, as the alert's fingerprint annotation shows it (letters, digits, '.', '_', ':' or '-', at most 128 characters)", echo(fp))
	}
	return fp, nil
}

func validFingerprint(fp string) bool {
	if len(fp) == 0 || len(fp) > 128 {
		return false
	}
	for i := 0; i < len(fp); i++ {
		switch c := fp[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// query is a request's query parameters, each known to the route and given
// at most once.
type query url.Values

// parseQuery checks the query against the parameters the route takes: a
// misspelt parameter is an error, not a silently ignored filter.
func parseQuery(r *http.Request, allowed ...string) (query, error) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, egressd.Errorf(egressd.EINVALID, "query string: %v", err)
	}
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(allowed, k) {
			if len(allowed) == 0 {
				return nil, egressd.Errorf(egressd.EINVALID, "unknown query parameter %q: this route takes none", echo(k))
			}
			return nil, egressd.Errorf(egressd.EINVALID, "unknown query parameter %q: this route takes %s", echo(k), strings.Join(allowed, ", "))
		}
		if len(v[k]) > 1 {
			return nil, egressd.Errorf(egressd.EINVALID, "query parameter %s given %d times: give it once", k, len(v[k]))
		}
	}
	return query(v), nil
}

// get returns the parameter's value and whether it was given.
func (q query) get(name string) (string, bool) {
	v, ok := q[name]
	if !ok {
		return "", false
	}
	return v[0], true
}

// window returns the window parameter, def when it is absent.
func (q query) window(def time.Duration) (time.Duration, error) {
	s, ok := q.get("window")
	if !ok {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > MaxWindow {
		return 0, egressd.Errorf(egressd.EINVALID, "window %q: want a duration greater than 0 and at most %s (90 days), such as 168h", echo(s), durationString(MaxWindow))
	}
	return d, nil
}

// at returns the at parameter, def when it is absent.
func (q query) at(def time.Time) (time.Time, error) {
	s, ok := q.get("at")
	if !ok {
		return def, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, egressd.Errorf(egressd.EINVALID, "at %q: want an RFC3339 time such as 2026-11-08T00:00:00Z (in a URL, write + in an offset as %%2B)", echo(s))
	}
	return t.UTC(), nil
}

// limit returns the limit parameter, DefaultLimit when it is absent.
func (q query) limit() (int, error) {
	s, ok := q.get("limit")
	if !ok {
		return DefaultLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxLimit {
		return 0, egressd.Errorf(egressd.EINVALID, "limit %q: want an integer from 1 to %d", echo(s), MaxLimit)
	}
	return n, nil
}

// cluster returns the cluster parameter, "" (every cluster) when absent.
func (q query) cluster() (string, error) {
	s, ok := q.get("cluster")
	if !ok {
		return "", nil
	}
	if err := (egressd.App{Cluster: s, Namespace: "x", Name: "x"}).Validate(); err != nil || s == "" {
		return "", egressd.Errorf(egressd.EINVALID, "cluster %q: want a cluster name (letters, digits, '-', '_' or '.', at most %d characters)", echo(s), egressd.MaxClusterLen)
	}
	return s, nil
}

// durationString writes whole hours as "2160h" rather than "2160h0m0s".
func durationString(d time.Duration) string {
	if d%time.Hour == 0 {
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	}
	return d.String()
}

// Cursors: the "next" value of a page, passed back as the after parameter.
// A cursor is the key of the last row of its page, as JSON in unpadded
// base64url; "k" names the listing, so that a cursor of one listing given
// to another is an error rather than a silently wrong page. Clients treat
// cursors as opaque; their content may change between versions.
const (
	cursorApps         = "apps"
	cursorDestinations = "destinations"
	cursorAnomalies    = "anomalies"
)

// maxCursorLen bounds the after parameter: a cursor holds at most a few
// names of bounded length.
const maxCursorLen = 2048

// appCursor continues GET /api/v1/apps.
type appCursor struct {
	Kind      string `json:"k"`
	Cluster   string `json:"c"`
	Namespace string `json:"n"`
	App       string `json:"a"`
}

// destinationCursor continues GET .../destinations.
type destinationCursor struct {
	Kind     string `json:"k"`
	Cluster  string `json:"c"`
	Name     string `json:"d"`
	Port     uint16 `json:"p"`
	Protocol string `json:"r"`
}

// anomalyCursor continues GET /api/v1/anomalies.
type anomalyCursor struct {
	Kind        string    `json:"k"`
	Time        time.Time `json:"t"`
	Fingerprint string    `json:"f"`
}

// encodeCursor returns the after value of a cursor.
func encodeCursor(c any) string {
	b, _ := json.Marshal(c) // plain structs: cannot fail
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor parses the after parameter s into c and reports whether it
// is well-formed; the caller checks the listing and the values.
func decodeCursor(s string, c any) bool {
	if len(s) > maxCursorLen {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(c) == nil && !dec.More()
}

// badCursor is the error of every after value that is not a cursor of the
// listing: it names the parameter and says what to pass instead.
func badCursor(s string) error {
	return egressd.Errorf(egressd.EINVALID, "after %q: not a cursor of this listing: pass the \"next\" value of the previous page of the same route unchanged, or leave after out for the first page", echo(s))
}

// appsAfter returns the after parameter of the apps listing, nil when
// absent.
func (q query) appsAfter() (*egressd.App, error) {
	s, ok := q.get("after")
	if !ok {
		return nil, nil
	}
	// Bounds, not name rules: the cursor repeats a stored app, and the
	// listing must get past any app storage holds.
	var c appCursor
	if !decodeCursor(s, &c) || c.Kind != cursorApps || len(c.Cluster) > maxCursorName ||
		!cursorName(c.Namespace) || !cursorName(c.App) {
		return nil, badCursor(s)
	}
	return &egressd.App{Cluster: c.Cluster, Namespace: c.Namespace, Name: c.App}, nil
}

// destinationsAfter returns the after parameter of a destinations listing,
// nil when absent.
func (q query) destinationsAfter() (*egressd.DestinationCursor, error) {
	s, ok := q.get("after")
	if !ok {
		return nil, nil
	}
	var c destinationCursor
	if !decodeCursor(s, &c) || c.Kind != cursorDestinations || len(c.Cluster) > maxCursorName ||
		!cursorName(c.Name) || !cursorName(c.Protocol) {
		return nil, badCursor(s)
	}
	return &egressd.DestinationCursor{Cluster: c.Cluster, Destination: egressd.Destination{Name: c.Name, Port: c.Port, Protocol: c.Protocol}}, nil
}

// maxCursorName bounds each name in a cursor: a DNS name is at most 253
// bytes, a Kubernetes name less.
const maxCursorName = 255

// cursorName reports whether s can be a name in a cursor.
func cursorName(s string) bool {
	return s != "" && len(s) <= maxCursorName
}

// anomaliesAfter returns the after parameter of the anomalies listing, nil
// when absent.
func (q query) anomaliesAfter() (*egressd.AnomalyCursor, error) {
	s, ok := q.get("after")
	if !ok {
		return nil, nil
	}
	var c anomalyCursor
	if !decodeCursor(s, &c) || c.Kind != cursorAnomalies || c.Time.IsZero() || !validFingerprint(c.Fingerprint) {
		return nil, badCursor(s)
	}
	return &egressd.AnomalyCursor{Time: c.Time, Fingerprint: c.Fingerprint}, nil
}
