package egressd

import (
	"net/netip"
	"strconv"
	"strings"
)

// Protocols a destination port can carry, as Cilium writes them in toPorts.
const (
	ProtoTCP    = "TCP"
	ProtoUDP    = "UDP"
	ProtoSCTP   = "SCTP"
	ProtoICMPv4 = "ICMPv4"
	ProtoICMPv6 = "ICMPv6"
	ProtoAny    = "ANY"
)

// MaxNameLen is the longest DNS name egressd keeps (RFC 1035, without the
// trailing dot).
const MaxNameLen = 253

// Destination is where an app connects: a DNS name or, when no name is known,
// an IP address, with the port and protocol.
type Destination struct {
	Name     string
	Port     uint16
	Protocol string
}

// IsIP reports whether the destination is a bare IP address rather than a name.
func (d Destination) IsIP() bool {
	_, err := netip.ParseAddr(d.Name)
	return err == nil
}

// PortString returns the port as baseline files and policies write it: "443/TCP".
func (d Destination) PortString() string {
	return FormatPort(d.Port, d.Protocol)
}

// String returns "name:port/proto".
func (d Destination) String() string {
	return d.Name + ":" + d.PortString()
}

// FormatPort returns "443/TCP".
func FormatPort(port uint16, proto string) string {
	return strconv.Itoa(int(port)) + "/" + proto
}

// ParsePort parses "443/TCP" (protocol case-insensitive; "443" alone means TCP).
func ParsePort(s string) (uint16, string, error) {
	num, proto, ok := strings.Cut(s, "/")
	if !ok {
		proto = ProtoTCP
	}
	n, err := strconv.ParseUint(num, 10, 16)
	if err != nil {
		return 0, "", Errorf(EINVALID, "invalid port %q: want NUMBER/PROTOCOL such as 443/TCP, with a number from 0 to 65535", s)
	}
	p, ok := CanonicalProtocol(proto)
	if !ok {
		return 0, "", Errorf(EINVALID, "invalid protocol in port %q: want TCP, UDP, SCTP, ICMPv4, ICMPv6 or ANY", s)
	}
	return uint16(n), p, nil
}

// CanonicalProtocol returns the canonical spelling of a protocol name.
func CanonicalProtocol(s string) (string, bool) {
	for _, p := range []string{ProtoTCP, ProtoUDP, ProtoSCTP, ProtoICMPv4, ProtoICMPv6, ProtoAny} {
		if strings.EqualFold(s, p) {
			return p, true
		}
	}
	return "", false
}

// NormalizeName lower-cases a DNS name, removes one trailing dot and checks
// that what remains is a DNS name egressd can store: at most 253 characters,
// labels of 1 to 63 letters, digits, '-' or '_'. It returns false for anything
// else, including empty names and names with control characters.
func NormalizeName(s string) (string, bool) {
	s = strings.TrimSuffix(s, ".")
	if !validName(s, false) {
		return "", false
	}
	return lowerASCII(s), true
}

// ValidPattern reports whether s is a destination name or a Cilium toFQDNs
// matchPattern: a DNS name in which a label may be "*" or contain '*', and
// which may start with "**." (any depth). It also accepts IP addresses.
func ValidPattern(s string) bool {
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	if strings.HasPrefix(s, "**.") {
		s = s[3:]
	}
	return s == "*" || validName(s, true)
}

func validName(s string, wildcard bool) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	label := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			label++
		case c == '*' && wildcard:
			label++
		case c == '.':
			if label == 0 {
				return false
			}
			label = 0
			continue
		default:
			return false
		}
		if label > 63 {
			return false
		}
	}
	return label > 0
}

func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}
