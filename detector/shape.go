package detector

import (
	"math"
	"net/netip"

	"golang.org/x/net/publicsuffix"
)

// Shape of a name asked through a DNS tunnel: data encoded into the labels
// below a domain the tunnel's server answers for. The encodings tunnels use
// (hex, base32, base64) write long runs of letters and digits interleaved,
// with the character entropy of random data; names people and programs
// choose are words, numbers and hyphens.
const (
	// tunnelMinRun is the shortest run of letters and digits, without a
	// hyphen, that counts as encoded data. dnscat2, iodine and dns2tcp
	// fill labels of up to 63 characters; words and host names with
	// numbers are shorter.
	tunnelMinRun = 24
	// tunnelMinEntropy is the least Shannon entropy, in bits per
	// character, of such a run. Random hex of 24 characters has about 3.5
	// (at least 2.8 in 2000 draws), base32 about 4.2; a letter repeated
	// (padding) has 0.
	tunnelMinEntropy = 3.0
)

// registrableDomain returns the name's registrable domain, its public
// suffix and one label more ("example.co.uk" for "a.b.example.co.uk"), by
// the public suffix list. An IP address, a suffix itself or a name the list
// cannot split is its own domain.
func registrableDomain(name string) string {
	if _, err := netip.ParseAddr(name); err == nil {
		return name
	}
	d, err := publicsuffix.EffectiveTLDPlusOne(name)
	if err != nil {
		return name
	}
	return d
}

// tunnelShaped reports whether the part of name below domain (its
// registrable domain) holds a run of at least tunnelMinRun letters and
// digits, interleaved, with at least tunnelMinEntropy bits per character.
// It allocates nothing; most names are rejected by their length alone.
func tunnelShaped(name, domain string) bool {
	end := shapedRun(name)
	return end >= 0 && end <= len(name)-len(domain)
}

// shapedRun returns where the first tunnel-shaped run of name ends, or -1.
// A run below the registrable domain ends before it: the first run found
// decides for any domain.
func shapedRun(name string) int {
	if len(name) < tunnelMinRun {
		return -1
	}
	start := 0
	for i := 0; i <= len(name); i++ {
		if i < len(name) && isAlnum(name[i]) {
			continue
		}
		if run := name[start:i]; len(run) >= tunnelMinRun && interleaved(run) && entropy(run) >= tunnelMinEntropy {
			return i
		}
		start = i + 1
	}
	return -1
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c >= 'A' && c <= 'Z'
}

// interleaved reports whether letters and digits alternate at least twice
// in s ("ab12cd" but not "backup2024"): encoded data scatters digits, names
// put a number at the end.
func interleaved(s string) bool {
	changes := 0
	for i := 1; i < len(s); i++ {
		if isDigit(s[i]) != isDigit(s[i-1]) {
			changes++
		}
	}
	return changes >= 2
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// entropy is the Shannon entropy of s's bytes, in bits per character.
func entropy(s string) float64 {
	if s == "" {
		return 0
	}
	var counts [256]uint16 // a name is at most 253 bytes
	for i := 0; i < len(s); i++ {
		counts[s[i]]++
	}
	n := float64(len(s))
	h := 0.0
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / n
			h -= p * math.Log2(p)
		}
	}
	return h
}
