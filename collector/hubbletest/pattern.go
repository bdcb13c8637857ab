package hubbletest

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// The pattern syntax of the fqdn and node_name filters, as in
// cilium/cilium v1.20.2 pkg/hubble/filters/patterns.go: a pattern is
// lower-cased, trimmed and loses one trailing dot; "*" matches any run of
// [-.0-9a-z] (so it crosses dots); the whole name must match.

// fqdnRegexpStr matches an FQDN, including underscores (patterns.go).
const fqdnRegexpStr = `(?:[-0-9_a-z]+(?:\.[-0-9_a-z]+)*)`

func appendFQDNPatternRegexp(sb *strings.Builder, pattern string) error {
	pattern = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(pattern), "."))
	switch {
	case pattern == "":
		return errors.New("empty pattern")
	case strings.HasSuffix(pattern, "."):
		return errors.New("multiple trailing dots in pattern")
	}
	for _, r := range pattern {
		switch {
		case r == '.':
			sb.WriteString(`\.`)
		case r == '*':
			sb.WriteString(`[-.0-9a-z]*`)
		case r == '-', r == '_', '0' <= r && r <= '9', 'a' <= r && r <= 'z':
			sb.WriteRune(r)
		default:
			return fmt.Errorf("invalid rune %q in pattern %q", r, pattern)
		}
	}
	return nil
}

func compileFQDNPatterns(patterns []string) (*regexp.Regexp, error) {
	var sb strings.Builder
	sb.WriteString(`\A(?:`)
	for i, p := range patterns {
		if i > 0 {
			sb.WriteByte('|')
		}
		if err := appendFQDNPatternRegexp(&sb, p); err != nil {
			return nil, err
		}
	}
	sb.WriteString(`)\z`)
	return regexp.Compile(sb.String())
}

// compileNodeNamePatterns accepts "node" (any cluster) and "cluster/node";
// an empty side matches any name.
func compileNodeNamePatterns(patterns []string) (*regexp.Regexp, error) {
	var sb strings.Builder
	sb.WriteString(`\A(?:`)
	for i, p := range patterns {
		if i > 0 {
			sb.WriteByte('|')
		}
		if p == "" {
			return nil, errors.New("empty pattern")
		}
		var cluster, node string
		switch parts := strings.Split(p, "/"); len(parts) {
		case 1:
			node = parts[0]
		case 2:
			cluster, node = parts[0], parts[1]
		default:
			return nil, fmt.Errorf("too many slashes in pattern %q", p)
		}
		for j, part := range []string{cluster, node} {
			if j == 1 {
				sb.WriteByte('/')
			}
			if part == "" {
				sb.WriteString(fqdnRegexpStr)
			} else if err := appendFQDNPatternRegexp(&sb, part); err != nil {
				return nil, err
			}
		}
	}
	sb.WriteString(`)\z`)
	return regexp.Compile(sb.String())
}
