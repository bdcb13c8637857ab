package baseline

import (
	"net/netip"
	"strings"

	"github.com/egressd/egressd"
)

// Pattern semantics follow Cilium's toFQDNs matchPattern as implemented in
// github.com/cilium/cilium v1.20.2 (the version in go.mod),
// pkg/fqdn/matchpattern/matchpattern.go: ToAnchoredRegexp and
// escapeRegexpCharacters compile a lower-cased pattern into a regular
// expression over the FQDN with its trailing dot:
//
//   - a pattern made only of '*' ("*", "**", optionally with a trailing dot,
//     dnsWildcardRegex) matches every name: `(^([-a-zA-Z0-9_]+[.])+$)|(^[.]$)`;
//   - a leading run of two or more '*' followed by '.' ("**.example.com",
//     subdomainWildcardSpecifierPrefix) matches one or more whole labels:
//     dnsWildcardREGroup, `([-a-zA-Z0-9_]+([.][-a-zA-Z0-9_]+){0,})[.]`;
//   - any other run of '*' (wildcardSpecifier) matches zero or more DNS
//     characters within one label, never a dot: `[-a-zA-Z0-9_]*`;
//   - everything else is literal.
//
// Older Cilium releases have no multi-level wildcard: there "**" is read as
// "*", one label ("**." matches any depth only where Cilium supports it).
//
// Cilium matches the regular expression once per DNS answer; egressd matches
// on the hot path of the detector, so a pattern is split into labels once and
// matched label by label without regular expressions. FuzzMatchName holds
// the two to the same answers.

// MatchName reports whether name matches pattern the way Cilium's toFQDNs
// does. A pattern without '*' is a matchName: it matches the same name. A
// pattern with '*' is a matchPattern:
//
//   - a pattern made only of '*' ("*", "**") matches every name;
//   - a leading run of two or more '*' followed by a dot ("**.example.com")
//     matches one or more whole labels: "a.example.com", "a.b.example.com",
//     not "example.com";
//   - any other '*' (a run of them counts as one) matches zero or more DNS
//     characters within one label, never a dot: "*.example.com" matches
//     "api.example.com", not "a.b.example.com" nor "example.com", and
//     "api-*.example.com" matches "api-.example.com";
//   - everything else is literal.
//
// Comparison ignores ASCII case and one trailing dot on either side.
//
// IP addresses are not DNS names: Cilium's toFQDNs never sees them, so a
// pattern never matches an IP address, which only matches the same address
// (compared as an address: "2001:DB8:0::1" is "2001:db8::1"). A name that is
// not a valid DNS name (egressd.NormalizeName) never matches a pattern.
func MatchName(pattern, name string) bool {
	if !isPattern(pattern) {
		return exactMatch(pattern, name)
	}
	n, ok := patternSubject(name)
	if !ok {
		return false
	}
	p := compilePattern(pattern)
	return p.match(n)
}

// exactMatch compares names without case or trailing dot; IP addresses
// compare as addresses, so "2001:DB8:0::1" equals "2001:db8::1".
func exactMatch(a, b string) bool {
	a, b = strings.TrimSuffix(a, "."), strings.TrimSuffix(b, ".")
	if a == "" || b == "" {
		return false
	}
	if equalFoldASCII(a, b) {
		return true
	}
	x, err1 := netip.ParseAddr(a)
	y, err2 := netip.ParseAddr(b)
	return err1 == nil && err2 == nil && x == y
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerByte(a[i]) != lowerByte(b[i]) {
			return false
		}
	}
	return true
}

func lowerByte(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// patternSubject returns name in the form patterns match against (lower
// case, no trailing dot) and false when no pattern may match it: IP addresses
// and anything that is not a valid DNS name.
func patternSubject(name string) (string, bool) {
	n, ok := egressd.NormalizeName(name)
	if !ok {
		return "", false
	}
	if looksNumeric(n) {
		if _, err := netip.ParseAddr(n); err == nil {
			return "", false
		}
	}
	return n, true
}

// looksNumeric reports whether a valid DNS name could be an IPv4 address
// (IPv6 addresses are never valid DNS names), so the hot path parses an
// address only for names made of digits and dots.
func looksNumeric(n string) bool {
	for i := 0; i < len(n); i++ {
		if c := n[i]; (c < '0' || c > '9') && c != '.' {
			return false
		}
	}
	return true
}

// pattern is a compiled matchPattern.
type pattern struct {
	all    bool     // only '*': every name
	multi  bool     // leading "**.": one or more labels before labels
	labels []string // lower-cased labels, each may contain '*'
}

func compilePattern(s string) pattern {
	s = lowerASCII(strings.TrimSuffix(s, "."))
	if s != "" && strings.Trim(s, "*") == "" {
		return pattern{all: true}
	}
	var p pattern
	stars := len(s) - len(strings.TrimLeft(s, "*"))
	if stars >= 2 && stars < len(s) && s[stars] == '.' {
		p.multi = true
		s = s[stars+1:]
	}
	p.labels = strings.Split(s, ".")
	return p
}

// match reports whether n, a name from patternSubject, matches p. Labels are
// compared from the right; a '*' never crosses a dot, so the number of labels
// the pattern covers is fixed and no backtracking across labels is needed.
func (p *pattern) match(n string) bool {
	if p.all {
		return true
	}
	rest := n
	for i := len(p.labels) - 1; i >= 0; i-- {
		dot := strings.LastIndexByte(rest, '.')
		if !matchLabel(p.labels[i], rest[dot+1:]) {
			return false
		}
		if dot < 0 {
			// The name has no labels left: it matches only when the
			// pattern has none left either and needs none more.
			return i == 0 && !p.multi
		}
		rest = rest[:dot]
	}
	// Labels remain in the name, which patternSubject guaranteed are
	// non-empty: they are what a leading "**." stands for.
	return p.multi
}

// matchLabel matches one label against a pattern label in which each '*'
// stands for any run of characters (the label holds only DNS characters, so
// that is Cilium's [-a-zA-Z0-9_]*). Classic linear-time wildcard matching:
// on a mismatch, let the last '*' absorb one more character.
func matchLabel(p, s string) bool {
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case pi < len(p) && p[pi] == s[si]:
			pi++
			si++
		case star >= 0:
			mark++
			pi, si = star+1, mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// Matcher answers whether an app's baseline allows a destination. It is built
// once per baseline and is safe for concurrent use: exact names are one map
// lookup, patterns are compiled when the Matcher is built.
type Matcher struct {
	unbounded bool
	exact     map[string][]egressd.Port
	patterns  []patternPorts
}

type patternPorts struct {
	pattern
	ports []egressd.Port
}

// NewMatcher returns a Matcher for b.
func NewMatcher(b egressd.Baseline) *Matcher {
	m := &Matcher{unbounded: b.Unbounded, exact: make(map[string][]egressd.Port, len(b.Destinations))}
	for _, d := range b.Destinations {
		ports := make([]egressd.Port, 0, len(d.Ports))
		for _, p := range d.Ports {
			if proto, ok := egressd.CanonicalProtocol(p.Protocol); ok {
				ports = append(ports, egressd.Port{Number: p.Number, Protocol: proto})
			}
		}
		if isPattern(d.Name) {
			m.patterns = append(m.patterns, patternPorts{compilePattern(d.Name), ports})
			continue
		}
		name, ok := canonicalName(d.Name, false)
		if !ok {
			continue // Unmarshal rejects such names; nothing can match it
		}
		m.exact[name] = append(m.exact[name], ports...)
	}
	return m
}

// Match reports whether the baseline allows the app to reach name on port
// and protocol: the name is listed, or matches a pattern (see MatchName), with
// a port entry that allows the port. Port 0 in an entry stands for every port
// and protocol ANY for every protocol, so "0/ANY" allows anything. An
// unbounded baseline allows every destination.
func (m *Matcher) Match(name string, port uint16, proto string) bool {
	if m.unbounded {
		return true
	}
	proto = canonicalProto(proto)
	q := egressd.Port{Number: port, Protocol: proto}
	n := lowerASCII(strings.TrimSuffix(name, "."))
	if ports, ok := m.exact[n]; ok && coveredBy(ports, q) {
		return true
	}
	if len(m.patterns) == 0 {
		// Only IPv6 addresses can be spelt in more than one way that
		// lower-casing does not already reconcile.
		return strings.IndexByte(n, ':') >= 0 && m.matchIP(n, q)
	}
	// From name, not n: a trailing dot goes once, "a.." is no name.
	s, ok := patternSubject(name)
	if !ok {
		// IPv4 has one spelling, already looked up.
		return strings.IndexByte(n, ':') >= 0 && m.matchIP(n, q)
	}
	for i := range m.patterns {
		p := &m.patterns[i]
		if coveredBy(p.ports, q) && p.match(s) {
			return true
		}
	}
	return false
}

// matchIP looks an IP address up by its canonical form.
func (m *Matcher) matchIP(n string, q egressd.Port) bool {
	addr, err := netip.ParseAddr(n)
	if err != nil {
		return false
	}
	c := addr.String()
	if c == n {
		return false // already looked up
	}
	ports, ok := m.exact[c]
	return ok && coveredBy(ports, q)
}

// lowerASCII lower-cases ASCII letters only, and allocates only when there
// is one to lower. Cilium rejects patterns with other characters, and DNS
// names hold none, so folding Unicode would only create surprises.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				b[j] = lowerByte(b[j])
			}
			return string(b)
		}
	}
	return s
}

// canonicalProto returns the canonical spelling of a protocol, without work
// for the spellings the collector produces.
func canonicalProto(proto string) string {
	switch proto {
	case egressd.ProtoTCP, egressd.ProtoUDP, egressd.ProtoSCTP, egressd.ProtoICMPv4, egressd.ProtoICMPv6, egressd.ProtoAny:
		return proto
	}
	if p, ok := egressd.CanonicalProtocol(proto); ok {
		return p
	}
	return proto
}
