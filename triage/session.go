package triage

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gorilla/securecookie"
)

// cookieName is the session cookie.
const cookieName = "egressd_triage"

// maxUserLen bounds the name an operator signs in with.
const maxUserLen = 64

// newCookies returns the signer of session cookies: HMAC-SHA256 under a key
// derived from the token, so that every replica accepts the same sessions
// and a new token ends them all. The value is signed, not encrypted: it
// holds only the name and the times securecookie adds.
func newCookies(token string, ttl time.Duration) *securecookie.SecureCookie {
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write([]byte("egressd triage session v1"))
	sc := securecookie.New(mac.Sum(nil), nil)
	sc.MaxAge(int(ttl / time.Second))
	sc.SetSerializer(securecookie.JSONEncoder{})
	return sc
}

// sessionValue is what the cookie carries.
type sessionValue struct {
	User string `json:"u"`
}

// session returns who is signed in, or "" (no cookie, a forged or expired
// one, or actions disabled). securecookie checks the signature and the age.
func (p *pages) session(r *http.Request) string {
	if p.cookies == nil {
		return ""
	}
	c, err := r.Cookie(cookieName)
	if err != nil {
		return ""
	}
	var v sessionValue
	if err := p.cookies.Decode(cookieName, c.Value, &v); err != nil {
		return ""
	}
	if !validUser(v.User) {
		return ""
	}
	return v.User
}

// setSession writes the session cookie; an empty user clears it.
func (p *pages) setSession(w http.ResponseWriter, r *http.Request, user string) error {
	c := &http.Cookie{
		Name: cookieName, Path: Prefix, HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: p.secure || r.TLS != nil,
	}
	if user == "" {
		c.MaxAge = -1
	} else {
		v, err := p.cookies.Encode(cookieName, sessionValue{User: user})
		if err != nil {
			return err
		}
		c.Value, c.MaxAge = v, int(p.opts.SessionTTL/time.Second)
	}
	http.SetCookie(w, c)
	return nil
}

// validUser reports whether a name can be recorded: 1 to maxUserLen
// printable characters.
func validUser(s string) bool {
	return s != "" && len(s) <= maxUserLen && utf8.ValidString(s) &&
		strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0
}

// tokenMatches compares a token with the configured one in constant time:
// through SHA-256, so neither how much of a guess was right nor the
// token's length shows in the timing.
func (p *pages) tokenMatches(tok string) bool {
	h := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(h[:], p.token[:]) == 1
}

// loginData is the login page.
type loginData struct {
	page
	Next, Name, Error string
}

// safeNext returns where to go after signing in: a page of the triage
// pages, never another site ("//evil.example", "/\evil.example").
func safeNext(next string) string {
	if strings.HasPrefix(next, Prefix+"/") && !strings.ContainsAny(next, "\\\r\n") && !strings.HasPrefix(next, "//") {
		return next
	}
	return Prefix + "/"
}

func (p *pages) loginForm(w http.ResponseWriter, r *http.Request) {
	if p.cookies == nil {
		p.message(w, r, http.StatusServiceUnavailable, "Sign-in disabled", "Actions are disabled until egressd is given an API token (EGRESSD_API_TOKEN).")
		return
	}
	p.render(w, r, http.StatusOK, "login", loginData{page: p.page(r, "Sign in"), Next: safeNext(r.URL.Query().Get("next"))})
}

// login checks the token and starts a session. A wrong token is answered
// 401 with the form again; refusals are logged at debug level only, since
// anyone can send them.
func (p *pages) login(w http.ResponseWriter, r *http.Request) {
	if p.cookies == nil {
		p.message(w, r, http.StatusServiceUnavailable, "Sign-in disabled", "Actions are disabled until egressd is given an API token (EGRESSD_API_TOKEN).")
		return
	}
	if err := r.ParseForm(); err != nil {
		p.message(w, r, http.StatusBadRequest, "Not accepted", "The form could not be read: "+bounded(err.Error(), 200))
		return
	}
	d := loginData{page: p.page(r, "Sign in"), Next: safeNext(r.PostForm.Get("next")), Name: strings.TrimSpace(r.PostForm.Get("name"))}
	switch {
	case !validUser(d.Name):
		d.Error = "Give your name (1 to 64 printable characters): it is recorded with what you accept or dismiss."
		p.render(w, r, http.StatusBadRequest, "login", d)
		return
	case !p.tokenMatches(r.PostForm.Get("token")):
		p.log.Debug("triage_login_refused", "remote", r.RemoteAddr)
		d.Error = "Wrong token: use the API token egressd was given (EGRESSD_API_TOKEN)."
		p.render(w, r, http.StatusUnauthorized, "login", d)
		return
	}
	if err := p.setSession(w, r, d.Name); err != nil {
		p.fail(w, r, err)
		return
	}
	p.log.Info("triage_login", "user", d.Name, "remote", r.RemoteAddr)
	http.Redirect(w, r, d.Next, http.StatusSeeOther)
}

func (p *pages) logout(w http.ResponseWriter, r *http.Request) {
	if p.cookies != nil {
		_ = p.setSession(w, r, "")
	}
	http.Redirect(w, r, Prefix+"/", http.StatusSeeOther)
}

// act runs an action for a signed-in operator; anyone else gets a page
// that says to sign in (401), or that actions are disabled (503).
func (p *pages) act(fn func(w http.ResponseWriter, r *http.Request, user string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if p.cookies == nil {
			p.message(w, r, http.StatusServiceUnavailable, "Actions disabled", "Actions are disabled until egressd is given an API token (EGRESSD_API_TOKEN).")
			return
		}
		user := p.session(r)
		if user == "" {
			p.message(w, r, http.StatusUnauthorized, "Sign in first", "Accepting or dismissing needs a sign-in: open "+Prefix+"/login, then the anomaly again.")
			return
		}
		if err := r.ParseForm(); err != nil {
			p.message(w, r, http.StatusBadRequest, "Not accepted", "The form could not be read: "+bounded(err.Error(), 200))
			return
		}
		fn(w, r, user)
	}
}
