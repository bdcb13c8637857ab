package triage_test

import (
	"strings"
	"testing"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/baseline"
	"github.com/egressd/egressd/triage"
)

// FuzzCheckPattern: whatever is typed into the pattern field, CheckPattern
// either refuses it with an EINVALID error or returns a valid toFQDNs
// pattern, with a '*', lower case, that covers the destination; it never
// panics.
func FuzzCheckPattern(f *testing.F) {
	for _, s := range [][2]string{
		{"*.cdn.example.net", "a1.cdn.example.net"},
		{"**.example.co.uk", "a.b.example.co.uk"},
		{"*.co.uk", "example.co.uk"},
		{"api-*.Example.COM.", "api-1.example.com"},
		{"*", "example.com"},
		{"*.example.com", "203.0.113.7"},
		{"<script>*.example.net", "a.example.net"},
		{"*..example.com", "a.example.com"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, raw, dest string) {
		p, err := triage.CheckPattern(raw, dest)
		if err != nil {
			if egressd.ErrorCode(err) != egressd.EINVALID {
				t.Fatalf("CheckPattern(%q, %q): error code %s: %v", raw, dest, egressd.ErrorCode(err), err)
			}
			return
		}
		if !strings.Contains(p, "*") || !egressd.ValidPattern(p) || strings.ToLower(p) != p {
			t.Fatalf("CheckPattern(%q, %q) = %q: not a lower-case toFQDNs pattern", raw, dest, p)
		}
		if !baseline.MatchName(p, dest) {
			t.Fatalf("CheckPattern(%q, %q) = %q, which does not cover the destination", raw, dest, p)
		}
	})
}

func TestCheckPatternAndSuggestion(t *testing.T) {
	t.Parallel()
	got, err := triage.CheckPattern(" *.CDN.example.net. ", "a1.cdn.example.net")
	if err != nil || got != "*.cdn.example.net" {
		t.Fatalf("CheckPattern = %q, %v; want *.cdn.example.net", got, err)
	}
	if _, err := triage.CheckPattern("*.example.com", "203.0.113.7"); err == nil || !strings.Contains(err.Error(), "IP address") {
		t.Fatalf("a pattern for an IP address: %v", err)
	}
}
