package postgres

import (
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/egressd/egressd"
)

// Length bounds on what an anomaly stores. Pods, nodes, summaries and details
// are made of values read from flows; the bounds keep a hostile flow from
// bloating a row or an alert. Longer values are cut at a character boundary
// and end in "…"; the bounds are in bytes.
const (
	// MaxSummaryLen bounds Anomaly.Summary.
	MaxSummaryLen = 4 << 10
	// MaxDetailKeyLen bounds each key of Anomaly.Details.
	MaxDetailKeyLen = 64
	// MaxDetailValueLen bounds each value of Anomaly.Details.
	MaxDetailValueLen = 4 << 10
	// MaxDetailsLen bounds all of Anomaly.Details: keys and values, plus 8
	// bytes per entry. Entries are kept in key order; the value that
	// crosses the bound is cut and the entries after it are left out.
	MaxDetailsLen = 16 << 10
	// MaxErrorLen bounds a delivery's last error.
	MaxErrorLen = 1 << 10
	// maxNameLen bounds pods, nodes, destination names, who accepted,
	// and the baseline source (a DNS subdomain's length).
	maxNameLen = 253
	// maxFingerprintLen and maxKindLen match the table's checks.
	maxFingerprintLen = 128
	maxKindLen        = 64
	// detailEntryOverhead is what each detail costs beyond its key and
	// value in the MaxDetailsLen budget.
	detailEntryOverhead = 8
)

const ellipsis = "…"

// bound returns s as PostgreSQL can store it, at most max bytes: invalid
// UTF-8 becomes U+FFFD and NUL bytes are removed (text and jsonb reject
// both), and a longer string is cut at a character boundary and ends in "…".
func bound(s string, max int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "")
	}
	if len(s) <= max {
		return s
	}
	if max < len(ellipsis) {
		return cutRunes(s, max)
	}
	return cutRunes(s, max-len(ellipsis)) + ellipsis
}

// cutRunes returns the longest prefix of the valid UTF-8 string s that has
// at most n bytes and ends at a character boundary.
func cutRunes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// boundDetails applies the detail bounds (see MaxDetailsLen). It returns nil
// for no details.
func boundDetails(d map[string]string) map[string]string {
	if len(d) == 0 {
		return nil
	}
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make(map[string]string, len(d))
	budget := MaxDetailsLen
	for _, k := range keys {
		bk := bound(k, MaxDetailKeyLen)
		if _, dup := out[bk]; dup || bk == "" {
			// Two keys that only differ beyond the bound, or by bytes
			// that bound removes: keep the first.
			continue
		}
		room := budget - len(bk) - detailEntryOverhead
		if room <= 0 {
			break
		}
		v := bound(d[k], min(room, MaxDetailValueLen))
		out[bk] = v
		budget = room - len(v)
	}
	return out
}

// MaxEvidenceList bounds each list of an anomaly's evidence (ports,
// siblings, pods, reasons); each entry is bounded to 253 bytes.
const MaxEvidenceList = 16

// boundEvidence applies the evidence bounds (see MaxEvidenceList).
func boundEvidence(e egressd.Evidence) egressd.Evidence {
	list := func(l []string) []string {
		if len(l) == 0 {
			return nil
		}
		out := make([]string, 0, min(len(l), MaxEvidenceList))
		for _, s := range l[:min(len(l), MaxEvidenceList)] {
			out = append(out, bound(s, maxNameLen))
		}
		return out
	}
	e.Domain = bound(e.Domain, maxNameLen)
	e.PortClass = bound(e.PortClass, 16)
	e.Incomplete = bound(e.Incomplete, maxNameLen)
	e.KnownPorts, e.Siblings, e.Pods, e.Reasons = list(e.KnownPorts), list(e.Siblings), list(e.Pods), list(e.Reasons)
	if math.IsNaN(e.Entropy) || math.IsInf(e.Entropy, 0) {
		e.Entropy = 0 // not JSON
	}
	return e
}

// utc returns t in UTC, the zero time as it is.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}
