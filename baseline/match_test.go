package baseline_test

import (
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/baseline"
	"github.com/stretchr/testify/require"
)

// matchNameTests is the pattern semantics table, shared with the fuzz seed
// corpus and the Matcher tests.
var matchNameTests = []struct {
	pattern string
	name    string
	want    bool
}{
	// matchName: exact, ignoring ASCII case and one trailing dot.
	{"api.github.com", "api.github.com", true},
	{"api.github.com", "API.GitHub.COM.", true},
	{"API.GITHUB.COM.", "api.github.com", true},
	{"api.github.com", "github.com", false},
	{"api.github.com", "xapi.github.com", false},
	{"api.github.com", "api.github.com..", false},
	{"", "", false},
	{".", ".", false},
	{"1.2.3.4", "1.2.3.4", true},
	{"1.2.3.4", "1.2.3.40", false},
	{"2001:DB8::1", "2001:db8:0::1", true},
	{"::ffff:1.2.3.4", "1.2.3.4", false},

	// '*' matches zero or more DNS characters within one label.
	{"*.example.com", "api.example.com", true},
	{"*.example.com", "API.Example.COM.", true},
	{"*.example.com", "_srv.example.com", true},
	{"*.Example.com", "api.example.com", true},
	{"*.example.com.", "api.example.com", true},
	{"*.example.com", "example.com", false},
	{"*.example.com", "a.b.example.com", false},
	{"*.example.com", "evil-example.com", false},
	{"*.example.com", "api.example.com.evil.net", false},
	{"*.example.com", "a..example.com", false},
	{"*example.com", "example.com", true},
	{"*example.com", "myexample.com", true},
	{"*example.com", "a.example.com", false},
	{"api-*.example.com", "api-v1.example.com", true},
	{"api-*.example.com", "api-.example.com", true},
	{"api-*.example.com", "api.example.com", false},
	{"*.ci*.io", "anysub.cilium.io", true},
	{"*.ci*.io", "anysub.ci.io", true},
	{"*.ci*.io", "cilium.io", false},
	{"a*b*c.com", "abc.com", true},
	{"a*b*c.com", "axxbyyc.com", true},
	{"a*b*c.com", "abcbc.com", true},
	{"a*b*c.com", "acb.com", false},
	{"a*b*c.com", "a.b.c.com", false},
	{"*.*.example.com", "a.b.example.com", true},
	{"*.*.example.com", "a.example.com", false},
	{"a.**.com", "a.b.com", true}, // '**' inside the pattern is one label
	{"a.**.com", "a.b.c.com", false},
	{"**example.com", "example.com", true}, // no dot after: same as '*'
	{"**example.com", "a.example.com", false},

	// A leading "**." matches one or more whole labels.
	{"**.example.com", "a.example.com", true},
	{"**.example.com", "a.b.c.example.com", true},
	{"**.example.com", "A.B.Example.Com.", true},
	{"**.example.com", "example.com", false},
	{"**.example.com", "aexample.com", false},
	{"**.example.com", "a.example.org", false},
	{"***.example.com", "a.b.example.com", true},
	{"**.*.example.com", "a.b.example.com", true},
	{"**.*.example.com", "x.y.z.example.com", true},
	{"**.*.example.com", "b.example.com", false},
	{"**.api-*.example.com", "x.api-v2.example.com", true},

	// A pattern of only '*' matches every DNS name.
	{"*", "com", true},
	{"*", "a.b.c.example.com", true},
	{"*", "Example.COM.", true},
	{"**", "a.b", true},
	{"*.", "a.b", true},
	{"*", "", false},
	{"*", "not valid!", false},
	{"*", "a..b", false},
	{"*", "0..", false}, // one trailing dot goes, not two (found by FuzzMatchName)
	{"*.example.com", "a.example.com..", false},

	// Patterns never match IP addresses: Cilium's toFQDNs only sees names.
	{"*", "1.2.3.4", false},
	{"*.2.3.4", "1.2.3.4", false},
	{"*.1.2.3", "a.1.2.3", true},
	{"*", "2001:db8::1", false},
}

func TestMatchName(t *testing.T) {
	t.Parallel()
	for _, tt := range matchNameTests {
		t.Run(tt.pattern+" "+tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, baseline.MatchName(tt.pattern, tt.name), "MatchName(%q, %q)", tt.pattern, tt.name)
			require.Equal(t, tt.want, refMatchName(tt.pattern, tt.name), "reference(%q, %q)", tt.pattern, tt.name)
		})
	}
}

// refMatchName is MatchName written the straightforward way, the way Cilium
// matches a matchPattern (cilium/cilium pkg/fqdn/matchpattern,
// ToAnchoredRegexp): turn the pattern into a regular expression over the
// FQDN with a trailing dot, and match. FuzzMatchName checks that the label
// matcher agrees with it.
func refMatchName(pattern, name string) bool {
	p := strings.TrimSuffix(pattern, ".")
	if !strings.Contains(p, "*") {
		n := strings.TrimSuffix(name, ".")
		if p == "" || n == "" {
			return false
		}
		if refLower(p) == refLower(n) {
			return true
		}
		a, err1 := netip.ParseAddr(p)
		b, err2 := netip.ParseAddr(n)
		return err1 == nil && err2 == nil && a == b
	}
	n, ok := egressd.NormalizeName(name)
	if !ok {
		return false
	}
	if _, err := netip.ParseAddr(n); err == nil {
		return false
	}
	re := regexp.MustCompile(ciliumRegexp(refLower(p) + "."))
	return re.MatchString(n + ".")
}

// ciliumRegexp follows Cilium's ToAnchoredRegexp and escapeRegexpCharacters.
func ciliumRegexp(pattern string) string {
	const chars = "[-a-zA-Z0-9_]"
	if strings.Trim(strings.TrimSuffix(pattern, "."), "*") == "" {
		return "(^(" + chars + "+[.])+$)|(^[.]$)"
	}
	var b strings.Builder
	b.WriteString("^")
	i := 0
	stars := len(pattern) - len(strings.TrimLeft(pattern, "*"))
	if stars >= 2 && stars < len(pattern) && pattern[stars] == '.' {
		b.WriteString("(" + chars + "+([.]" + chars + "+){0,})[.]")
		i = stars + 1
	}
	for ; i < len(pattern); i++ {
		switch c := pattern[i]; {
		case c == '.':
			b.WriteString("[.]")
		case c == '*':
			for i+1 < len(pattern) && pattern[i+1] == '*' {
				i++
			}
			b.WriteString(chars + "*")
		case c >= 0x80:
			// Cilium rejects non-ASCII patterns; no DNS name holds such a
			// byte, so it is a class that matches nothing.
			b.WriteString(`[^\x00-\x{10FFFF}]`)
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return b.String()
}

func refLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func TestMatcherAgreesWithMatchName(t *testing.T) {
	t.Parallel()
	for _, tt := range matchNameTests {
		if !egressd.ValidPattern(strings.TrimSuffix(tt.pattern, ".")) {
			continue // a Matcher is built from loaded, valid baselines
		}
		m := baseline.NewMatcher(egressd.Baseline{Namespace: "ns", App: "app", Destinations: []egressd.BaselineDestination{
			dest(t, tt.pattern, "443/TCP"),
		}})
		require.Equal(t, tt.want, m.Match(tt.name, 443, "TCP"), "Match(%q) with pattern %q", tt.name, tt.pattern)
		require.False(t, m.Match(tt.name, 80, "TCP"), "Match(%q) on another port", tt.name)
	}
}

func TestMatcher(t *testing.T) {
	t.Parallel()
	b := egressd.Baseline{Namespace: "media", App: "recyclarr", Destinations: []egressd.BaselineDestination{
		dest(t, "api.github.com", "443/TCP"),
		dest(t, "*.githubusercontent.com", "443/TCP"),
		dest(t, "**.sonarr.tv", "443/TCP", "80/TCP"),
		dest(t, "dns.example.net", "53/ANY"),
		dest(t, "ntp.example.net", "0/UDP"),
		dest(t, "anything.example.net", "0/ANY"),
		dest(t, "1.1.1.1", "853/TCP"),
		dest(t, "2001:db8::53", "53/UDP"),
	}}
	m := baseline.NewMatcher(b)
	tests := []struct {
		name  string
		port  uint16
		proto string
		want  bool
	}{
		{"api.github.com", 443, "TCP", true},
		{"API.GitHub.com.", 443, "TCP", true},
		{"api.github.com", 443, "tcp", true},
		{"api.github.com", 80, "TCP", false},
		{"api.github.com", 443, "UDP", false},
		{"github.com", 443, "TCP", false},
		{"raw.githubusercontent.com", 443, "TCP", true},
		{"a.raw.githubusercontent.com", 443, "TCP", false},
		{"githubusercontent.com", 443, "TCP", false},
		{"download.sonarr.tv", 80, "TCP", true},
		{"a.b.c.sonarr.tv", 443, "TCP", true},
		{"sonarr.tv", 443, "TCP", false},
		{"a.sonarr.tv", 8080, "TCP", false},
		{"dns.example.net", 53, "UDP", true},
		{"dns.example.net", 53, "TCP", true},
		{"dns.example.net", 54, "UDP", false},
		{"ntp.example.net", 123, "UDP", true},
		{"ntp.example.net", 123, "TCP", false},
		{"anything.example.net", 1, "SCTP", true},
		{"1.1.1.1", 853, "TCP", true},
		{"1.1.1.1", 53, "UDP", false},
		{"2001:DB8:0::53", 53, "UDP", true},
		{"2001:db8::53", 53, "UDP", true},
		{"2001:db8::54", 53, "UDP", false},
		{"", 443, "TCP", false},
		{"evil.com", 443, "TCP", false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, m.Match(tt.name, tt.port, tt.proto), "Match(%q, %d, %q)", tt.name, tt.port, tt.proto)
	}

	unbounded := b
	unbounded.Unbounded = true
	require.True(t, baseline.NewMatcher(unbounded).Match("evil.com", 4444, "TCP"), "an unbounded baseline allows everything")
	require.False(t, baseline.NewMatcher(egressd.Baseline{}).Match("evil.com", 443, "TCP"))
}
