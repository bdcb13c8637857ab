package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/httpapi"
)

// FuzzAcceptBody feeds arbitrary bodies to POST and DELETE .../accepted:
// the handler never panics, answers a success or a 400/413 with a JSON
// error body, and only ever stores a valid key.
func FuzzAcceptBody(f *testing.F) {
	for _, seed := range []string{
		`{"destination":"api.github.com","port":443,"protocol":"TCP","by":"alice"}`,
		`{"destination":"203.0.113.7"}`,
		`{"destination":"::ffff:203.0.113.7","port":0,"protocol":"any","cluster":"edge"}`,
		`{"destination":"*.github.com"}`,
		`{"destination":"a.example","port":70000}`,
		`{"destination":"a.example","port":1e3}`,
		`{"destination":"a.example"}{}`,
		`{"destination":"a.example","extra":true}`,
		`{"Destination":"A.EXAMPLE."}`,
		`{"destination":"fe80::1%eth0"}`,
		`{"by":"\u0000"}`,
		`[]`, `null`, `""`, `{`, ``,
		`{"destination":"a.example","by":"` + strings.Repeat("x", 600) + `"}`,
	} {
		f.Add([]byte(seed), false)
		f.Add([]byte(seed), true)
	}
	var stored error
	store := &fakeStore{appClusters: seenEverywhere, accept: func(_ context.Context, a egressd.Accepted) error {
		stored = validKey(a)
		return nil
	}}
	opts := httpapi.DefaultOptions()
	opts.Token = testToken
	opts.MaxBodyBytes = 512 // small, so fuzzing reaches the limit
	h, err := httpapi.New(opts, *store.backends(), nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, del bool) {
		method, ok := http.MethodPost, map[int]bool{200: true, 201: true}
		if del {
			method, ok = http.MethodDelete, map[int]bool{204: true}
		}
		stored = nil
		req := httptest.NewRequest(method, "/api/v1/apps/media/recyclarr/accepted", strings.NewReader(string(body)))
		req.Header.Set("Authorization", bearer)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if stored != nil {
			t.Fatalf("body %q: stored an invalid key: %v", body, stored)
		}
		if ok[rec.Code] {
			return
		}
		var e apiError
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
			t.Fatalf("body %q: status %d with a body that is not a JSON error: %q", body, rec.Code, rec.Body)
		}
		switch {
		case rec.Code == http.StatusBadRequest && e.Error.Code == egressd.EINVALID && e.Error.Message != "":
		case rec.Code == http.StatusRequestEntityTooLarge && e.Error.Code == "too_large":
		case rec.Code == http.StatusNotFound && e.Error.Code == egressd.ENOTFOUND && strings.Contains(e.Error.Message, "unknown app"):
			// A valid key of a cluster the app was never seen in.
		default:
			t.Fatalf("body %q: status %d, error %+v: want 400 invalid, 413 too_large or 404 unknown app", body, rec.Code, e.Error)
		}
	})
}

// validKey reports what is wrong with an acceptance the handler stored.
func validKey(a egressd.Accepted) error {
	if err := a.App.Validate(); err != nil {
		return err
	}
	d := a.Destination
	if ip, err := netip.ParseAddr(d.Name); err == nil {
		if ip.Unmap().String() != d.Name {
			return egressd.Errorf(egressd.EINVALID, "IP %q not canonical", d.Name)
		}
	} else if n, ok := egressd.NormalizeName(d.Name); !ok || n != d.Name {
		return egressd.Errorf(egressd.EINVALID, "name %q not normalized", d.Name)
	}
	if p, ok := egressd.CanonicalProtocol(d.Protocol); !ok || p != d.Protocol {
		return egressd.Errorf(egressd.EINVALID, "protocol %q", d.Protocol)
	}
	if a.By == "" || a.At.IsZero() {
		return egressd.Errorf(egressd.EINVALID, "by %q at %s", a.By, a.At)
	}
	return nil
}

// readStore is a fake store whose apps exist, so that requests for them
// reach the window and baseline code rather than stop at "not found".
type readStore struct{ fakeStore }

func (s *readStore) AppClusters(context.Context, string, string) ([]string, error) {
	return []string{"default"}, nil
}

func (s *readStore) AppWindowEntries(_ context.Context, app egressd.App, from, to time.Time) ([]egressd.WindowEntry, error) {
	app.Cluster = "default"
	return []egressd.WindowEntry{{App: app, Destination: egressd.Destination{Name: "api.github.com", Port: 443, Protocol: egressd.ProtoTCP}, FirstSeen: from, LastSeen: to, Flows: 1}}, nil
}

// readParams are what a 400 from a read route names first: the parameter
// at fault, or the query string as a whole.
var readParams = []string{"namespace ", "app ", "app:", "fingerprint ", "window ", "at ", "limit ", "cluster ", "cluster:", "after ", "state ", "kind ", "query string", "unknown query parameter", "query parameter "}

// FuzzReadParams feeds arbitrary path segments and query strings to the read
// routes: they never answer 5xx for bad input, every error is a JSON body,
// and a 400 names the parameter at fault.
func FuzzReadParams(f *testing.F) {
	for _, seed := range []struct {
		route               uint8
		ns, app, fp, rawQry string
	}{
		{0, "", "", "", "window=24h"},
		{0, "", "", "", "window=-1h"},
		{0, "", "", "", "window=999999h&window=1h"},
		{0, "", "", "", "limit=1&after=eyJrIjoiYXBwcyIsImMiOiIiLCJuIjoibWVkaWEiLCJhIjoieCJ9"},
		{0, "", "", "", "after=eyJrIjoiZGVzdGluYXRpb25zIn0"},
		{1, "media", "recyclarr", "", "limit=1000&after=eyJrIjoiZGVzdGluYXRpb25zIiwiYyI6IiIsImQiOiJ4IiwicCI6NDQzLCJyIjoiVENQIn0"},
		{1, "media", "recyclarr", "", "window=168h&cluster=edge"},
		{1, "..", "..", "", ""},
		{1, "../../etc", "passwd", "", ""},
		{1, "media", "%2e%2e", "", "cluster=../x"},
		{1, "/etc", "/passwd", "", "cluster="},
		{2, "media", "recyclarr", "", "at=2026-11-08T00:00:00Z&window=90h"},
		{2, "media", "recyclarr", "", "at=0000-01-01T00:00:00Z&window=2160h"},
		{2, "media", "recyclarr", "", "at=9999-12-31T23:59:59Z"},
		{2, "media", "recyclarr", "", "at=yesterday"},
		{2, "media", "recyclarr", "", "at=2026-11-08T00:00:00+01:00"},
		{3, "", "", "", "limit=99999999999999999999&state=all"},
		{3, "", "", "", "limit=-1&kind=novel_destination"},
		{3, "", "", "", "app=media/recyclarr&cluster=default&after=eyJ0IjoiMjAyNi0xMS0wOFQwMDowMDowMFoiLCJmIjoieCJ9"},
		{3, "", "", "", "after=%zz&app=../x"},
		{3, "", "", "", "cluster=edge"},
		{4, "", "", "abc:123", ""},
		{4, "", "", "../../etc/passwd", "x=1"},
		{5, "apps/media/recyclarr/destinations/../../../../etc", "", "", ""},
		{5, "apps//destinations", "", "", ""},
		{5, "anomalies/\x00", "", "", ";;;&&&==="},
	} {
		f.Add(seed.route, seed.ns, seed.app, seed.fp, seed.rawQry)
	}
	store := &readStore{}
	opts := httpapi.DefaultOptions()
	opts.Now = func() time.Time { return now }
	h, err := httpapi.New(opts, httpapi.Backends{Apps: store, Destinations: store, Anomalies: store, Accepted: store}, nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, route uint8, ns, app, fp, rawQuery string) {
		var p string
		switch route % 6 {
		case 0:
			p = "/api/v1/apps"
		case 1:
			p = "/api/v1/apps/" + url.PathEscape(ns) + "/" + url.PathEscape(app) + "/destinations"
		case 2:
			p = "/api/v1/apps/" + url.PathEscape(ns) + "/" + url.PathEscape(app) + "/baseline"
		case 3:
			p = "/api/v1/anomalies"
		case 4:
			p = "/api/v1/anomalies/" + url.PathEscape(fp)
		default:
			// The path as a client might send it, unescaped.
			p = "/api/v1/" + ns
		}
		u, err := url.Parse(p)
		if err != nil {
			// Not something an HTTP server would hand to the handler.
			u = &url.URL{Path: p}
		}
		u.RawQuery = rawQuery
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.URL = u
		req.RequestURI = u.RequestURI()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("GET %s?%s: status %d for a client's input: %s", p, rawQuery, rec.Code, rec.Body)
		}
		if rec.Code < 300 {
			return
		}
		var e apiError
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
			t.Fatalf("GET %s?%s: status %d with a body that is not a JSON error: %q", p, rawQuery, rec.Code, rec.Body)
		}
		if rec.Code != http.StatusBadRequest {
			return
		}
		for _, name := range readParams {
			if strings.HasPrefix(e.Error.Message, name) {
				return
			}
		}
		t.Fatalf("GET %s?%s: 400 %q names no parameter", p, rawQuery, e.Error.Message)
	})
}
