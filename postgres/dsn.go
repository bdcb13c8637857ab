package postgres

import (
	"log/slog"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// redacted replaces a password wherever a DSN is printed.
const redacted = "xxxxx"

// DSN is a PostgreSQL connection string: a URL (postgres://user:pass@host/db)
// or libpq keyword/value pairs (host=... password=...). It prints with the
// password replaced by "xxxxx" through fmt, slog and encoding, so it can be
// logged and shown in errors; string(dsn) is the only way to the secret.
type DSN string

// String returns the DSN with its password redacted.
func (d DSN) String() string {
	return redact(string(d))
}

// GoString returns the redacted DSN for the %#v verb.
func (d DSN) GoString() string {
	return "postgres.DSN(" + strconv.Quote(d.String()) + ")"
}

// LogValue returns the redacted DSN for log/slog.
func (d DSN) LogValue() slog.Value {
	return slog.StringValue(d.String())
}

// MarshalText returns the redacted DSN, so that encoding/json and similar
// encoders never write the password either.
func (d DSN) MarshalText() ([]byte, error) {
	return []byte(d.String()), nil
}

var (
	// keyword/value form: password='quoted \' value' or password=plain.
	kvPassword = regexp.MustCompile(`(?i)(\b[a-z_]*password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s]*)`)
	// A URL that net/url cannot parse: hide everything between "user:" and
	// the last "@", which may hide the host too, but never leaves part of a
	// password that itself contains "@" or "/".
	brokenURLPassword = regexp.MustCompile(`(://[^:@/]*:).*@`)
)

func redact(s string) string {
	if !strings.HasPrefix(s, "postgres://") && !strings.HasPrefix(s, "postgresql://") {
		return kvPassword.ReplaceAllString(s, "${1}"+redacted)
	}
	u, err := url.Parse(s)
	if err != nil {
		s = brokenURLPassword.ReplaceAllString(s, "${1}"+redacted+"@")
		// The query string may still carry password=...
		return kvPassword.ReplaceAllString(s, "${1}"+redacted)
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), redacted)
	}
	q := u.Query()
	changed := false
	for k := range q {
		if strings.Contains(strings.ToLower(k), "password") {
			q.Set(k, redacted)
			changed = true
		}
	}
	if changed {
		u.RawQuery = q.Encode()
	}
	return u.String()
}
