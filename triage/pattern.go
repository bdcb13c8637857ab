package triage

import (
	"net/netip"
	"strings"

	"golang.org/x/net/publicsuffix"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/baseline"
)

// CheckPattern validates a pattern typed on the anomaly page and returns it
// as stored (lower case, no trailing dot): a Cilium toFQDNs matchPattern
// (baseline.MatchName's semantics) whose literal part after the last
// wildcard is at least a registrable domain, and which covers dest. The
// errors are EINVALID and say what to change.
func CheckPattern(raw, dest string) (string, error) {
	s := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(raw), "."))
	switch {
	case s == "":
		return "", egressd.Errorf(egressd.EINVALID, "pattern is empty: write one such as *.example.com")
	case !strings.Contains(s, "*"):
		return "", egressd.Errorf(egressd.EINVALID, "pattern %q has no '*': to accept one name, use \"Accept exactly\"", bounded(s, 80))
	case !egressd.ValidPattern(s):
		return "", egressd.Errorf(egressd.EINVALID, "pattern %q is not a toFQDNs pattern: use letters, digits, '-', '_', '.' and '*' (one label) or a leading '**.' (any depth), e.g. *.example.com", bounded(s, 80))
	}
	if _, err := netip.ParseAddr(dest); err == nil {
		return "", egressd.Errorf(egressd.EINVALID, "%s is an IP address: patterns match DNS names only; accept it exactly", dest)
	}
	// The literal suffix after the last label with a '*'.
	labels := strings.Split(s, ".")
	last := -1
	for i, l := range labels {
		if strings.Contains(l, "*") {
			last = i
		}
	}
	suffix := strings.Join(labels[last+1:], ".")
	if suffix == "" {
		return "", egressd.Errorf(egressd.EINVALID, "pattern %q is too broad: end it with a domain, e.g. *.example.com", bounded(s, 80))
	}
	if etld1, err := publicsuffix.EffectiveTLDPlusOne(suffix); err != nil || !strings.HasSuffix(suffix, etld1) {
		return "", egressd.Errorf(egressd.EINVALID, "pattern %q is too broad: %q is a public suffix, which anyone can register names under; keep at least the registrable domain (such as example.co.uk) after the last '*'", bounded(s, 80), suffix)
	}
	if !baseline.MatchName(s, dest) {
		return "", egressd.Errorf(egressd.EINVALID, "pattern %q does not cover %s: '*' stands for one label (or part of one), '**.' for any number of labels", bounded(s, 80), dest)
	}
	return s, nil
}

// suggestPattern proposes a pattern for name: its first label replaced by
// '*' ("*.cdn.example.com" for "a1.cdn.example.com"), when what is left is
// more than a public suffix; "" for IP addresses and registrable domains.
func suggestPattern(name string) string {
	if _, err := netip.ParseAddr(name); err == nil {
		return ""
	}
	_, rest, ok := strings.Cut(name, ".")
	if !ok {
		return ""
	}
	if _, err := CheckPattern("*."+rest, name); err != nil {
		return ""
	}
	return "*." + rest
}

// covered returns the names among names that pattern matches, sorted and
// without repeats.
func covered(pattern string, names []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, n := range names {
		if !seen[n] && baseline.MatchName(pattern, n) {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}
