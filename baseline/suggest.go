package baseline

import (
	"net/netip"
	"slices"
	"strings"

	"golang.org/x/net/publicsuffix"

	"github.com/egressd/egressd"
)

// Suggestion bounds.
const (
	// MinSuggestionEvidence is how many sibling names (names that differ
	// only in their first label) make a suggestion.
	MinSuggestionEvidence = 5
	// maxSuggestionExamples is how many of the names a suggestion shows.
	maxSuggestionExamples = 3
)

// Suggest proposes, for each group of at least MinSuggestionEvidence listed
// names that differ only in their first label (per-tenant buckets under one
// storage endpoint, per-region API hosts), the tightest Cilium matchPattern
// covering them: the labels they share, and in the first label their
// common prefix and suffix around a single '*' (which matches within one
// label). The pattern never widens above a registrable domain: names whose
// parent is a public suffix of the ICANN section (com, co.uk) get none.
// When the parent is a suffix of the list's private section (a shared
// cloud endpoint such as s3.amazonaws.com), the suggestion is made with a
// warning: anyone can register a name there, which is the classic path to
// exfiltrate data to one's own bucket. Ports are those of the covered
// names; suggestions are sorted by pattern. Patterns and IP addresses are
// never grouped.
func Suggest(ds []egressd.BaselineDestination) []egressd.BaselineSuggestion {
	groups := map[string][]int{} // parent -> indexes in ds
	for i, d := range ds {
		if isPattern(d.Name) {
			continue
		}
		if _, err := netip.ParseAddr(d.Name); err == nil {
			continue
		}
		_, parent, ok := strings.Cut(d.Name, ".")
		if !ok || parent == "" {
			continue
		}
		groups[parent] = append(groups[parent], i)
	}
	var out []egressd.BaselineSuggestion
	for parent, idx := range groups {
		if len(idx) < MinSuggestionEvidence {
			continue
		}
		suffix, icann := publicsuffix.PublicSuffix(parent)
		shared := false
		switch {
		case suffix == parent && (icann || !strings.Contains(suffix, ".")):
			// "*.com": above every registrable domain.
			continue
		case suffix == parent:
			shared = true
		}
		firsts := make([]string, len(idx))
		var ports []egressd.Port
		for j, i := range idx {
			firsts[j], _, _ = strings.Cut(ds[i].Name, ".")
			for _, p := range ds[i].Ports {
				if !slices.Contains(ports, p) {
					ports = append(ports, p)
				}
			}
		}
		pre, suf := commonAffixes(firsts)
		pattern := pre + "*" + suf + "." + parent
		if !egressd.ValidPattern(pattern) {
			continue
		}
		warning := ""
		if shared {
			warning = "the pattern spans names anyone can register under the shared endpoint " + parent +
				" (public suffix list): another owner's " + pre + "attacker" + suf + "." + parent +
				" would be allowed too; prefer listing the names"
		}
		examples := make([]string, 0, maxSuggestionExamples)
		for _, i := range idx[:min(len(idx), maxSuggestionExamples)] {
			examples = append(examples, ds[i].Name)
		}
		slices.Sort(examples)
		out = append(out, egressd.BaselineSuggestion{Pattern: pattern, Ports: sortPorts(ports), Evidence: len(idx), Examples: examples, Warning: warning})
	}
	slices.SortFunc(out, func(a, b egressd.BaselineSuggestion) int { return strings.Compare(a.Pattern, b.Pattern) })
	return out
}

// commonAffixes returns the longest prefix and suffix all of ss share, not
// overlapping in the shortest of them.
func commonAffixes(ss []string) (string, string) {
	pre := ss[0]
	for _, s := range ss[1:] {
		n := 0
		for n < len(pre) && n < len(s) && pre[n] == s[n] {
			n++
		}
		pre = pre[:n]
	}
	shortest := len(ss[0])
	for _, s := range ss {
		shortest = min(shortest, len(s))
	}
	suf := ss[0]
	for _, s := range ss[1:] {
		n := 0
		for n < len(suf) && n < len(s) && suf[len(suf)-1-n] == s[len(s)-1-n] {
			n++
		}
		suf = suf[len(suf)-n:]
	}
	if len(pre) > shortest {
		pre = pre[:shortest]
	}
	if len(pre)+len(suf) > shortest {
		suf = suf[len(pre)+len(suf)-shortest:]
	}
	return pre, suf
}
