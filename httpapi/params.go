package httpapi

import (
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
	"github.com/egressd/egressd/postgres"
)

// Query parameter limits.
const (
	// MaxWindow is the longest window a request may ask for.
	MaxWindow = 90 * 24 * time.Hour
	// DefaultBaselineWindow is the baseline route's window, as
	// `egressd baseline export` has it.
	DefaultBaselineWindow = 168 * time.Hour
	// DefaultLimit and MaxLimit bound a page of anomalies.
	DefaultLimit = 100
	MaxLimit     = 1000
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

// cursor is the JSON inside a page cursor. Clients treat the cursor as
// opaque; its content may change between versions.
type cursor struct {
	Time        time.Time `json:"t"`
	Fingerprint string    `json:"f"`
}

// encodeCursor returns the cursor that continues a listing after a.
func encodeCursor(a egressd.Anomaly) string {
	b, _ := json.Marshal(cursor{Time: a.Time, Fingerprint: a.Fingerprint}) // cannot fail
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor parses the after parameter.
func decodeCursor(s string) (*postgres.AnomalyCursor, error) {
	bad := egressd.Errorf(egressd.EINVALID, "after %q: not a cursor of this API: pass the \"next\" value of the previous page unchanged", echo(s))
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, bad
	}
	var c cursor
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil || c.Time.IsZero() || !validFingerprint(c.Fingerprint) {
		return nil, bad
	}
	return &postgres.AnomalyCursor{Time: c.Time, Fingerprint: c.Fingerprint}, nil
}
