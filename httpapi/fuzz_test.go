package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

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
	store := &fakeStore{accept: func(_ context.Context, a egressd.Accepted) error {
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
		default:
			t.Fatalf("body %q: status %d, error %+v: want 400 invalid or 413 too_large", body, rec.Code, e.Error)
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
