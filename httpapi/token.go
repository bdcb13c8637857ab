package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"strings"
)

// MinTokenLen is the shortest Token Validate accepts.
const MinTokenLen = 16

// redactedToken is how a set Token prints.
const redactedToken = "[REDACTED]"

// Token is the bearer token that authorizes mutations (cmd/egressd reads it
// from EGRESSD_API_TOKEN). It prints "[REDACTED]" (or "" when unset)
// through every fmt verb, log/slog and encoders that use MarshalText, so
// Options can be logged and shown in errors; string(token) is the only way
// to the secret.
type Token string

// String returns "[REDACTED]", or "" for an unset token.
func (t Token) String() string {
	if t == "" {
		return ""
	}
	return redactedToken
}

// Format writes the redacted token for every verb, including %d and %x,
// which would otherwise print the underlying string.
func (t Token) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprintf(f, "httpapi.Token(%q)", t.String())
		return
	}
	_, _ = f.Write([]byte(t.String()))
}

// LogValue returns the redacted token for log/slog.
func (t Token) LogValue() slog.Value {
	return slog.StringValue(t.String())
}

// MarshalText returns the redacted token, so that encoding/json and similar
// encoders never write the secret either.
func (t Token) MarshalText() ([]byte, error) {
	return []byte(t.String()), nil
}

// validate reports whether a set token can authorize anything: long enough
// to resist guessing, and without the spaces and control characters an
// Authorization header cannot carry intact. The message never contains the
// token.
func (t Token) validate() error {
	if t == "" {
		return nil
	}
	if len(t) < MinTokenLen || strings.IndexFunc(string(t), func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return fmt.Errorf("httpapi: Options.Token (EGRESSD_API_TOKEN) must be at least %d characters without spaces or control characters: generate one with `openssl rand -hex 32`", MinTokenLen)
	}
	return nil
}

// tokenHash is the SHA-256 of a token. Comparing hashes in constant time
// compares tokens of any length without revealing, by timing, how much of a
// guess was right or how long the token is.
type tokenHash [sha256.Size]byte

func hashToken(s string) tokenHash {
	return sha256.Sum256([]byte(s))
}

func (h *tokenHash) equal(o tokenHash) bool {
	return subtle.ConstantTimeCompare(h[:], o[:]) == 1
}

// bearer returns the token of an "Authorization: Bearer TOKEN" header value
// (the scheme is case-insensitive, RFC 7235).
func bearer(header string) (string, bool) {
	scheme, tok, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}
