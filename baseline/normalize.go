package baseline

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/egressd/egressd"
)

// canonicalName returns the form a destination name takes in a file: IP
// addresses in netip's canonical form, DNS names lower-cased without the
// trailing dot, and, when patterns is set, Cilium matchPatterns lower-cased.
// It returns false for anything else.
func canonicalName(s string, patterns bool) (string, bool) {
	t := strings.TrimSuffix(s, ".")
	if addr, err := netip.ParseAddr(t); err == nil {
		// A zone ("fe80::1%eth0") names an interface of the node that saw
		// the flow; it means nothing in a baseline or a policy.
		if addr.Zone() != "" {
			return "", false
		}
		return addr.String(), true
	}
	if strings.IndexByte(t, '*') >= 0 {
		if !patterns || !egressd.ValidPattern(t) {
			return "", false
		}
		return lowerASCII(t), true
	}
	return egressd.NormalizeName(s)
}

// isPattern reports whether a destination name is a matchPattern.
func isPattern(name string) bool {
	return strings.IndexByte(name, '*') >= 0
}

// comparePorts orders ports by number, then protocol.
func comparePorts(a, b egressd.Port) int {
	if c := cmp.Compare(a.Number, b.Number); c != 0 {
		return c
	}
	return strings.Compare(a.Protocol, b.Protocol)
}

// sortPorts sorts ports in file order and removes duplicates, in place.
func sortPorts(ports []egressd.Port) []egressd.Port {
	slices.SortFunc(ports, comparePorts)
	return slices.Compact(ports)
}

// covers reports whether port entry p allows q: port 0 stands for every port
// and protocol ANY for every protocol, as in Cilium's toPorts.
func covers(p, q egressd.Port) bool {
	return (p.Number == 0 || p.Number == q.Number) && (p.Protocol == egressd.ProtoAny || p.Protocol == q.Protocol)
}

// coveredBy reports whether one of ports allows q.
func coveredBy(ports []egressd.Port, q egressd.Port) bool {
	for _, p := range ports {
		if covers(p, q) {
			return true
		}
	}
	return false
}

// normalize returns a copy of b in file form: names canonical, destinations
// sorted by name, ports sorted and unique. It reports the first thing that
// cannot be written to a file.
func normalize(b egressd.Baseline) (egressd.Baseline, error) {
	if err := (egressd.App{Namespace: b.Namespace, Name: b.App}).Validate(); err != nil {
		return egressd.Baseline{}, err
	}
	out := b
	out.Note = validUTF8(b.Note)
	pods, err := normalizePods(b.Pods)
	if err != nil {
		return egressd.Baseline{}, egressd.Errorf(egressd.EINVALID, "baseline %s/%s: %s", b.Namespace, b.App, egressd.ErrorMessage(err))
	}
	out.Pods = pods
	if out.Suggestions, err = normalizeSuggestions(b.Suggestions); err != nil {
		return egressd.Baseline{}, egressd.Errorf(egressd.EINVALID, "baseline %s/%s: %s", b.Namespace, b.App, egressd.ErrorMessage(err))
	}
	out.Destinations = nil
	if len(b.Destinations) > 0 {
		out.Destinations = make([]egressd.BaselineDestination, len(b.Destinations))
	}
	for i, d := range b.Destinations {
		name, ok := canonicalName(d.Name, true)
		if !ok {
			return egressd.Baseline{}, egressd.Errorf(egressd.EINVALID, "baseline %s/%s: %s", b.Namespace, b.App, invalidNameMessage(d.Name))
		}
		if len(d.Ports) == 0 {
			return egressd.Baseline{}, egressd.Errorf(egressd.EINVALID, "baseline %s/%s: destination %q has no ports", b.Namespace, b.App, d.Name)
		}
		ports := make([]egressd.Port, len(d.Ports))
		for j, p := range d.Ports {
			proto, ok := egressd.CanonicalProtocol(p.Protocol)
			if !ok {
				return egressd.Baseline{}, egressd.Errorf(egressd.EINVALID, "baseline %s/%s: destination %q: invalid protocol %q: want TCP, UDP, SCTP, ICMPv4, ICMPv6 or ANY", b.Namespace, b.App, d.Name, p.Protocol)
			}
			ports[j] = egressd.Port{Number: p.Number, Protocol: proto}
		}
		out.Destinations[i] = egressd.BaselineDestination{Name: name, Ports: sortPorts(ports), Note: validUTF8(d.Note)}
	}
	slices.SortFunc(out.Destinations, func(a, b egressd.BaselineDestination) int {
		return strings.Compare(a.Name, b.Name)
	})
	for i := 1; i < len(out.Destinations); i++ {
		if out.Destinations[i].Name == out.Destinations[i-1].Name {
			return egressd.Baseline{}, egressd.Errorf(egressd.EINVALID, "baseline %s/%s: duplicate destination %q", b.Namespace, b.App, out.Destinations[i].Name)
		}
	}
	return out, nil
}

func invalidNameMessage(name string) string {
	return "invalid destination name " + quote(name) + ": want a DNS name (api.example.com), an IP address, or a Cilium matchPattern (*.example.com, **.example.com)"
}

// validUTF8 replaces each byte of s that is not valid UTF-8 with U+FFFD, as
// encoding/json does when it reads or writes a string, so that a note
// reads back as it was written.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		b.WriteRune(r) // utf8.RuneError is U+FFFD
		i += size
	}
	return b.String()
}

// normalizeSuggestions checks and copies suggestions: patterns valid and
// lower-cased, ports canonical and sorted, examples valid names, sorted by
// pattern. Nil stays nil.
func normalizeSuggestions(ss []egressd.BaselineSuggestion) ([]egressd.BaselineSuggestion, error) {
	if len(ss) == 0 {
		return nil, nil
	}
	out := make([]egressd.BaselineSuggestion, len(ss))
	for i, s := range ss {
		if !isPattern(s.Pattern) || !egressd.ValidPattern(s.Pattern) {
			return nil, egressd.Errorf(egressd.EINVALID, "suggestion %s is not a Cilium matchPattern such as *.example.com", quote(s.Pattern))
		}
		if s.Evidence < 0 {
			return nil, egressd.Errorf(egressd.EINVALID, "suggestion %s: negative evidence", s.Pattern)
		}
		ports := make([]egressd.Port, len(s.Ports))
		for j, p := range s.Ports {
			proto, ok := egressd.CanonicalProtocol(p.Protocol)
			if !ok {
				return nil, egressd.Errorf(egressd.EINVALID, "suggestion %s: invalid protocol %q", s.Pattern, p.Protocol)
			}
			ports[j] = egressd.Port{Number: p.Number, Protocol: proto}
		}
		out[i] = egressd.BaselineSuggestion{Pattern: lowerASCII(s.Pattern), Ports: sortPorts(ports), Evidence: s.Evidence,
			Examples: slices.Clone(s.Examples), Warning: validUTF8(s.Warning)}
		for j, e := range out[i].Examples {
			out[i].Examples[j] = validUTF8(e)
		}
		if len(out[i].Examples) == 0 {
			out[i].Examples = nil
		}
	}
	slices.SortStableFunc(out, func(a, b egressd.BaselineSuggestion) int { return strings.Compare(a.Pattern, b.Pattern) })
	return out, nil
}
