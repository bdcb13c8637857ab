package triage_test

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/alerts"
	"github.com/egressd/egressd/httpapi"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgtest"
	"github.com/egressd/egressd/triage"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// now is the pages' clock: an hour boundary.
var now = time.Date(2026, 11, 8, 12, 0, 0, 0, time.UTC)

const testToken = "s3cr3t-t0ken-0123456789abcdef"

var (
	recyclarr = egressd.App{Cluster: "homelab", Namespace: "media", Name: "recyclarr"}
	sonarr    = egressd.App{Cluster: "homelab", Namespace: "media", Name: "sonarr"}

	github = egressd.Destination{Name: "api.github.com", Port: 443, Protocol: egressd.ProtoTCP}
	cdn1   = egressd.Destination{Name: "a1.cdn.example.net", Port: 443, Protocol: egressd.ProtoTCP}
	cdn2   = egressd.Destination{Name: "a2.cdn.example.net", Port: 443, Protocol: egressd.ProtoTCP}
	cdn3   = egressd.Destination{Name: "a3.cdn.example.net", Port: 443, Protocol: egressd.ProtoTCP}
	cdn80  = egressd.Destination{Name: "a4.cdn.example.net", Port: 80, Protocol: egressd.ProtoTCP}
)

// env is the HTTP API with the triage pages mounted, over a real database
// that holds: recyclarr's week of destinations, two firing novel
// anomalies of recyclarr under cdn.example.net, one on port 80, and a
// volume anomaly of sonarr.
type env struct {
	t       *testing.T
	db      *postgres.DB
	srv     *httptest.Server
	changed atomic.Int32
	// Anomalies recorded.
	novel, sibling, port80, volume egressd.Anomaly
}

// newEnv starts the server; wrap, when set, wraps the anomaly reader (to
// add the evidence storage does not keep yet).
func newEnv(t *testing.T, wrap func(triage.AnomalyReader) triage.AnomalyReader) *env {
	t.Helper()
	ctx := t.Context()
	e := &env{t: t, db: pgtest.NewDB(t)}
	var dests []egressd.DestinationRollup
	var hours []egressd.HourlyRollup
	for i, d := range []egressd.Destination{github, cdn1, cdn2, cdn3, cdn80} {
		seen := now.Add(-time.Duration(i+1) * time.Hour)
		dests = append(dests, egressd.DestinationRollup{App: recyclarr, Destination: d, FirstSeen: seen, LastSeen: seen,
			Flows: int64(10 + i), Verdicts: egressd.VerdictSet(0).Add(egressd.VerdictForwarded), ExamplePod: "recyclarr-7d9f8b6c5d-x2k9p"})
		hours = append(hours, egressd.HourlyRollup{App: recyclarr, Destination: d, Hour: seen, Flows: int64(10 + i)})
	}
	dests = append(dests, egressd.DestinationRollup{App: sonarr, Destination: cdn2, FirstSeen: now.Add(-48 * time.Hour), LastSeen: now.Add(-time.Hour),
		Flows: 99, Verdicts: egressd.VerdictSet(0).Add(egressd.VerdictForwarded), ExamplePod: "sonarr-5c6d7e-abcde"})
	require.NoError(t, e.db.WriteRollup(ctx, &egressd.Rollup{Destinations: dests, Hourly: hours}))

	record := func(kind egressd.AnomalyKind, app egressd.App, d egressd.Destination, at time.Time, fp string) egressd.Anomaly {
		a := egressd.Anomaly{Fingerprint: fp, Kind: kind, App: app, Destination: d, Time: at, Pod: app.Name + "-7d9f8b6c5d-x2k9p",
			Verdict: egressd.VerdictForwarded, BaselineSource: "window", Summary: app.String() + " reached " + d.String() + ", new for this app"}
		_, err := e.db.RecordAnomaly(ctx, a, []string{"http://alertmanager.test:9093"}, now)
		require.NoError(t, err)
		return a
	}
	e.novel = record(egressd.AnomalyNovelDestination, recyclarr, cdn2, now.Add(-3*time.Hour), egressd.NoveltyFingerprint(recyclarr, cdn2))
	e.sibling = record(egressd.AnomalyNovelDestination, recyclarr, cdn3, now.Add(-4*time.Hour), egressd.NoveltyFingerprint(recyclarr, cdn3))
	e.port80 = record(egressd.AnomalyNovelDestination, recyclarr, cdn80, now.Add(-5*time.Hour), egressd.NoveltyFingerprint(recyclarr, cdn80))
	e.volume = record(egressd.AnomalyEgressVolume, sonarr, egressd.Destination{}, now.Add(-2*time.Hour), egressd.VolumeFingerprint(sonarr, now.Add(-2*time.Hour)))

	var reader triage.AnomalyReader = e.db
	if wrap != nil {
		reader = wrap(reader)
	}
	opts := triage.DefaultOptions()
	opts.Token = testToken
	opts.Now = func() time.Time { return now }
	pages, err := triage.New(opts, triage.Backends{Anomalies: reader, Traffic: e.db, Actions: e.db, Changed: func() { e.changed.Add(1) }}, nil)
	require.NoError(t, err)
	apiOpts := httpapi.DefaultOptions()
	apiOpts.Token = testToken
	h, err := httpapi.New(apiOpts, httpapi.Backends{Apps: e.db, Destinations: e.db, Anomalies: e.db, Accepted: e.db, Pages: pages}, nil, nil)
	require.NoError(t, err)
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	return e
}

// client returns an HTTP client with a cookie jar that does not follow
// redirects, so tests see them.
func (e *env) client() *http.Client {
	jar, err := cookiejar.New(nil)
	require.NoError(e.t, err)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// do sends a request and returns the status, the body and the response.
func (e *env) do(c *http.Client, method, path string, form url.Values, header map[string]string) (int, string, *http.Response) {
	e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.srv.URL+path, body)
	require.NoError(e.t, err)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return resp.StatusCode, string(b), resp
}

// login signs c in as alice.
func (e *env) login(c *http.Client) {
	e.t.Helper()
	st, body, resp := e.do(c, http.MethodPost, "/triage/login", url.Values{"name": {"alice"}, "token": {testToken}, "next": {"/triage/"}}, nil)
	require.Equal(e.t, http.StatusSeeOther, st, body)
	require.Equal(e.t, "/triage/", resp.Header.Get("Location"))
}

func (e *env) resolution(fp string) (egressd.Anomaly, egressd.Resolution) {
	e.t.Helper()
	a, err := e.db.Anomaly(context.Background(), fp)
	require.NoError(e.t, err)
	r, err := e.db.Resolution(context.Background(), fp)
	require.NoError(e.t, err)
	return a, r
}

func TestAlertLinksToTheAnomalyPage(t *testing.T) {
	t.Parallel()
	require.Equal(t, alerts.Link("https://egressd.example", "c0ffee"), triage.Link("https://egressd.example/", "c0ffee"))
	require.Equal(t, httpapi.PagesPath, triage.Prefix)
}

func TestLogin(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.client()

	st, body, resp := e.do(c, http.MethodPost, "/triage/login", url.Values{"name": {"mallory"}, "token": {"wrong-token-0123456789"}}, nil)
	require.Equal(t, http.StatusUnauthorized, st)
	require.Contains(t, body, "Wrong token")
	require.Empty(t, resp.Cookies(), "a failed sign-in set a cookie")

	st, body, _ = e.do(c, http.MethodPost, "/triage/login", url.Values{"name": {""}, "token": {testToken}}, nil)
	require.Equal(t, http.StatusBadRequest, st)
	require.Contains(t, body, "Give your name")

	// A session cookie: HttpOnly, SameSite=Strict, scoped to the pages,
	// expiring; after sign-in, back where the form said, never off-site.
	st, _, resp = e.do(c, http.MethodPost, "/triage/login", url.Values{"name": {"alice"}, "token": {testToken}, "next": {"//evil.example/x"}}, nil)
	require.Equal(t, http.StatusSeeOther, st)
	require.Equal(t, "/triage/", resp.Header.Get("Location"))
	require.Len(t, resp.Cookies(), 1)
	ck := resp.Cookies()[0]
	require.True(t, ck.HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, ck.SameSite)
	require.Equal(t, "/triage", ck.Path)
	require.Equal(t, int((12 * time.Hour).Seconds()), ck.MaxAge)
	require.False(t, ck.Secure, "Secure on plain http: the browser would drop it")

	st, body, _ = e.do(c, http.MethodGet, "/triage/", nil, nil)
	require.Equal(t, http.StatusOK, st)
	require.Contains(t, body, "alice")
	require.Contains(t, body, "sign out")
}

func TestActionsNeedASession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	path := triage.AnomalyPath(e.novel.Fingerprint) + "/dismiss"

	st, body, _ := e.do(e.client(), http.MethodPost, path, url.Values{}, nil)
	require.Equal(t, http.StatusUnauthorized, st)
	require.Contains(t, body, "Sign in first")

	// A forged cookie (signed with another token) is nobody.
	st, _, _ = e.do(e.client(), http.MethodPost, path, url.Values{}, map[string]string{"Cookie": "egressd_triage=eyJ1IjoibWFsbG9yeSJ9"})
	require.Equal(t, http.StatusUnauthorized, st)

	a, r := e.resolution(e.novel.Fingerprint)
	require.True(t, a.ResolvedAt.IsZero(), "resolved without a session")
	require.Zero(t, r)
}

// TestCrossOriginFormsAreRefused: a signed-in browser tricked into posting
// from another site is refused, whatever cookie it carries.
func TestCrossOriginFormsAreRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.client()
	e.login(c)
	path := triage.AnomalyPath(e.novel.Fingerprint) + "/dismiss"
	for _, h := range []map[string]string{
		{"Sec-Fetch-Site": "cross-site"},
		{"Origin": "http://evil.example"},
	} {
		st, body, _ := e.do(c, http.MethodPost, path, url.Values{}, h)
		require.Equal(t, http.StatusForbidden, st, "%v", h)
		require.Contains(t, body, "sent from another site")
	}
	a, _ := e.resolution(e.novel.Fingerprint)
	require.True(t, a.ResolvedAt.IsZero(), "a cross-origin form resolved the anomaly")

	// The same form from the page itself goes through.
	st, _, _ := e.do(c, http.MethodPost, path, url.Values{}, map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": e.srv.URL})
	require.Equal(t, http.StatusSeeOther, st)
	require.Equal(t, int32(1), e.changed.Load())
}

func TestDismiss(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.client()
	e.login(c)
	st, body, resp := e.do(c, http.MethodPost, triage.AnomalyPath(e.volume.Fingerprint)+"/dismiss", url.Values{}, nil)
	require.Equal(t, http.StatusSeeOther, st, body)
	require.Equal(t, triage.AnomalyPath(e.volume.Fingerprint), resp.Header.Get("Location"))

	a, r := e.resolution(e.volume.Fingerprint)
	require.Equal(t, now, a.ResolvedAt)
	require.Equal(t, egressd.Resolution{Kind: egressd.ResolutionDismissed, By: "alice", At: now}, r)
	ds, err := e.db.Deliveries(t.Context(), e.volume.Fingerprint)
	require.NoError(t, err)
	require.Equal(t, postgres.DeliveryResolved, ds[0].State, "the resolve is not queued for Alertmanager")
	acc, err := e.db.AcceptedAll(t.Context())
	require.NoError(t, err)
	require.Empty(t, acc, "dismissing accepted something")

	// The page says who ended it; a volume anomaly offers no acceptance.
	st, body, _ = e.do(c, http.MethodGet, triage.AnomalyPath(e.volume.Fingerprint), nil, nil)
	require.Equal(t, http.StatusOK, st)
	require.Contains(t, body, "dismissed by <strong>alice</strong>")
	st, body, _ = e.do(c, http.MethodPost, triage.AnomalyPath(e.volume.Fingerprint)+"/accept", url.Values{}, nil)
	require.Equal(t, http.StatusBadRequest, st)
	require.Contains(t, body, "no destination to accept")
}

func TestAcceptPattern(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.client()
	e.login(c)
	page := triage.AnomalyPath(e.novel.Fingerprint)

	// The page suggests the pattern and, previewed, lists the names it
	// covers among what the app reached.
	st, body, _ := e.do(c, http.MethodGet, page, nil, nil)
	require.Equal(t, http.StatusOK, st)
	require.Contains(t, body, `value="*.cdn.example.net"`)
	st, body, _ = e.do(c, http.MethodGet, page+"?pattern="+url.QueryEscape("*.CDN.example.net."), nil, nil)
	require.Equal(t, http.StatusOK, st)
	covered := body[strings.Index(body, `id="covered"`):]
	covered = covered[:strings.Index(covered, "</ul>")]
	for _, n := range []string{cdn1.Name, cdn2.Name, cdn3.Name, cdn80.Name} {
		require.Contains(t, covered, n)
	}
	require.NotContains(t, covered, github.Name)

	for _, tt := range []struct{ pattern, want string }{
		{"", "pattern is empty"},
		{"a2.cdn.example.net", "has no '*'"},
		{"*.net", "is a public suffix"},
		{"*.co.uk", "is a public suffix"},
		{"*", "too broad"},
		{"*.other.example.net", "does not cover a2.cdn.example.net"},
		{"<script>*.example.net", "is not a toFQDNs pattern"},
	} {
		st, body, _ := e.do(c, http.MethodPost, page+"/accept-pattern", url.Values{"pattern": {tt.pattern}}, nil)
		require.Equal(t, http.StatusBadRequest, st, tt.pattern)
		require.Contains(t, body, html.EscapeString(tt.want), tt.pattern)
		require.NotContains(t, body, "<script>", "unescaped input")
	}
	acc, err := e.db.AcceptedAll(t.Context())
	require.NoError(t, err)
	require.Empty(t, acc, "a refused pattern was accepted")

	st, body, _ = e.do(c, http.MethodPost, page+"/accept-pattern", url.Values{"pattern": {"*.cdn.example.net"}}, nil)
	require.Equal(t, http.StatusSeeOther, st, body)
	acc, err = e.db.AcceptedAll(t.Context())
	require.NoError(t, err)
	require.Equal(t, []egressd.Accepted{{App: recyclarr, Destination: egressd.Destination{Name: "*.cdn.example.net", Port: 443, Protocol: "TCP"}, By: "alice", At: now}}, acc)
	want := egressd.Resolution{Kind: egressd.ResolutionAcceptedPattern, By: "alice", At: now, Note: "*.cdn.example.net 443/TCP"}
	for _, fp := range []string{e.novel.Fingerprint, e.sibling.Fingerprint} {
		a, r := e.resolution(fp)
		require.Equal(t, now, a.ResolvedAt, a.Destination.String())
		require.Equal(t, want, r)
	}
	// Another port is not covered; another app's anomaly is untouched.
	a, _ := e.resolution(e.port80.Fingerprint)
	require.True(t, a.ResolvedAt.IsZero(), "the pattern on 443 resolved the port-80 anomaly")
	a, _ = e.resolution(e.volume.Fingerprint)
	require.True(t, a.ResolvedAt.IsZero())

	st, body, _ = e.do(c, http.MethodGet, page, nil, nil)
	require.Equal(t, http.StatusOK, st)
	require.Contains(t, body, "accepted as a pattern by <strong>alice</strong> (*.cdn.example.net 443/TCP)")
}

func TestAnomalyPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	c := e.client()
	st, body, resp := e.do(c, http.MethodGet, triage.AnomalyPath(e.novel.Fingerprint), nil, nil)
	require.Equal(t, http.StatusOK, st)
	require.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'none'")
	require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	for _, want := range []string{
		"media/recyclarr", "a2.cdn.example.net:443/TCP", "Firing since",
		`id="own"`, "recyclarr-7d9f8b6c5d-x2k9p", // recent flows and pods
		`id="others"`, "media/sonarr", // another app using it
		`id="baseline"`, "api.github.com", // the app's week
		`id="signin-act"`, // actions need a sign-in
	} {
		require.Contains(t, body, want)
	}
	require.NotContains(t, body, `id="accept"`, "action forms shown without a session")

	// Hostile or unknown fingerprints.
	st, body, _ = e.do(c, http.MethodGet, "/triage/anomalies/"+url.PathEscape("<script>x"), nil, nil)
	require.Equal(t, http.StatusBadRequest, st)
	require.Contains(t, body, "is not an anomaly&#39;s fingerprint")
	require.NotContains(t, body, "<script>x")
	st, body, _ = e.do(c, http.MethodGet, "/triage/anomalies/0123456789abcdef0123456789abcdef", nil, nil)
	require.Equal(t, http.StatusNotFound, st)
	require.Contains(t, body, "No anomaly has the fingerprint")
}

// evidenceReader adds severities and evidence to what storage returns,
// by destination: what the detector fills in on main.
type evidenceReader struct {
	triage.AnomalyReader
	add func(*egressd.Anomaly)
}

func (r evidenceReader) Anomalies(ctx context.Context, f egressd.AnomalyFilter) ([]egressd.Anomaly, error) {
	as, err := r.AnomalyReader.Anomalies(ctx, f)
	for i := range as {
		r.add(&as[i])
	}
	return as, err
}

func (r evidenceReader) Anomaly(ctx context.Context, fp string) (egressd.Anomaly, error) {
	a, err := r.AnomalyReader.Anomaly(ctx, fp)
	r.add(&a)
	return a, err
}

func TestSeverityAndEvidenceAreShown(t *testing.T) {
	t.Parallel()
	add := func(a *egressd.Anomaly) {
		switch a.Destination {
		case cdn2:
			a.Severity = egressd.SeverityInfo
		case cdn3:
			a.Severity = egressd.SeverityCritical
			a.Evidence = egressd.Evidence{
				OtherApps: 0, Domain: "example.net", DomainApps: 1,
				KnownPorts: []string{"80/TCP"}, Siblings: []string{"a1.cdn.example.net"},
				Labels: 4, LongestLabel: 2, Entropy: 1.5, PortClass: "well-known",
				Pods:    []string{"recyclarr-7d9f8b6c5d-zzzzz"},
				Reasons: []string{"never reached by any app in the cluster", "<b>odd</b> name"},
			}
		case cdn80:
			a.Severity = egressd.SeverityWarning
		}
	}
	e := newEnv(t, func(r triage.AnomalyReader) triage.AnomalyReader { return evidenceReader{r, add} })
	c := e.client()

	// The list: critical, warning, info, then the unranked volume anomaly,
	// whatever their times.
	st, body, _ := e.do(c, http.MethodGet, "/triage/", nil, nil)
	require.Equal(t, http.StatusOK, st)
	order := []string{e.sibling.Fingerprint, e.port80.Fingerprint, e.novel.Fingerprint, e.volume.Fingerprint}
	last := -1
	for _, fp := range order {
		i := strings.Index(body, triage.AnomalyPath(fp))
		require.Greater(t, i, last, "anomaly %s out of order in:\n%s", fp, body)
		last = i
	}
	require.Contains(t, body, "never reached by any app in the cluster; &lt;b&gt;odd&lt;/b&gt; name")

	st, body, _ = e.do(c, http.MethodGet, triage.AnomalyPath(e.sibling.Fingerprint), nil, nil)
	require.Equal(t, http.StatusOK, st)
	for _, want := range []string{
		`class="badge sev-critical" id="severity">critical`, "Why critical",
		"<li>never reached by any app in the cluster</li>", "<li>&lt;b&gt;odd&lt;/b&gt; name</li>",
		"example.net: 1 other apps", "never before", "80/TCP", "a1.cdn.example.net",
		"4 labels, longest 2, entropy 1.50 bits/char; well-known port",
		"recyclarr-7d9f8b6c5d-zzzzz",
	} {
		require.Contains(t, body, want)
	}
}

// TestBehindHTTPSProxy: with an https --external-url, the session cookie
// is Secure, and a form posted from that origin through a proxy that
// rewrites Host is accepted, while other origins are still refused.
func TestBehindHTTPSProxy(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	opts := triage.DefaultOptions()
	opts.Token = testToken
	opts.ExternalURL = "https://egressd.example.com"
	pages, err := triage.New(opts, triage.Backends{Anomalies: db, Traffic: db, Actions: db}, nil)
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/triage/", http.StripPrefix("/triage", pages))
	e := &env{t: t, db: db, srv: httptest.NewServer(mux)}
	t.Cleanup(e.srv.Close)

	form := url.Values{"name": {"alice"}, "token": {testToken}}
	st, _, resp := e.do(e.client(), http.MethodPost, "/triage/login", form,
		map[string]string{"Origin": "https://egressd.example.com", "Sec-Fetch-Site": "cross-site"})
	require.Equal(t, http.StatusSeeOther, st)
	require.Len(t, resp.Cookies(), 1)
	require.True(t, resp.Cookies()[0].Secure)

	st, _, resp = e.do(e.client(), http.MethodPost, "/triage/login", form,
		map[string]string{"Origin": "https://evil.example.com", "Sec-Fetch-Site": "cross-site"})
	require.Equal(t, http.StatusForbidden, st)
	require.Empty(t, resp.Cookies())

	_, err = triage.New(triage.Options{SessionTTL: time.Hour, Window: time.Hour, RequestTimeout: time.Second, ExternalURL: "egressd.example.com"},
		triage.Backends{Anomalies: db, Traffic: db, Actions: db}, nil)
	require.ErrorContains(t, err, "Options.ExternalURL")
}
