package baseline

import (
	"slices"
	"strings"

	"github.com/egressd/egressd"
)

// Merge returns the baseline to write for an app whose window shows live,
// keeping the hand edits of existing, its file (nil when there is none):
//
//   - Namespace and App come from live; Unbounded and Note from existing;
//     Pods from live, its selector (or why there is none) and its
//     resolvers each from existing when live knows nothing of them.
//   - Existing pattern entries (names containing '*') are kept with their
//     ports and notes. A live destination that a kept pattern matches (see
//     MatchName) is folded into it: its ports join the first matching
//     pattern in name order, unless a matching pattern already allows them,
//     and it is not listed on its own.
//   - Existing entries with a note are kept, even when live no longer has
//     them; live ports of the same name join them unless already allowed.
//   - Every other existing entry is dropped in favour of live: names that
//     left the window leave the file.
//
// "Already allowed" follows Matcher: port 0 allows every port and protocol
// ANY every protocol, so an entry written as "0/ANY" never grows. A note
// entry takes precedence over a pattern for its own name. Both arguments are
// expected in the form Build and Unmarshal return; the result is sorted.
// Merge is idempotent: merging its result with the same live set again gives
// the same baseline, which is why a second export changes no byte.
func Merge(existing *egressd.Baseline, live egressd.Baseline) egressd.Baseline {
	out := egressd.Baseline{Namespace: live.Namespace, App: live.App, Pods: mergePods(existing, live.Pods)}
	if existing != nil {
		out.Unbounded = existing.Unbounded
		out.Note = existing.Note
		for _, d := range existing.Destinations {
			if isPattern(d.Name) || d.Note != "" {
				out.Destinations = append(out.Destinations, cloneDestination(d))
			}
		}
	}
	// Sorting the kept entries first makes "the first matching pattern"
	// independent of the order of the file.
	sortDestinations(out.Destinations)
	var (
		kept     = make(map[string]int, len(out.Destinations))
		patterns []int
		compiled []pattern
	)
	for i, d := range out.Destinations {
		kept[d.Name] = i
		if isPattern(d.Name) {
			patterns = append(patterns, i)
			compiled = append(compiled, compilePattern(d.Name))
		}
	}

	var listed []egressd.BaselineDestination
	var matching []int
	for _, d := range live.Destinations {
		if i, ok := kept[d.Name]; ok {
			addPorts(&out.Destinations[i], d.Ports)
			continue
		}
		matching = matching[:0]
		if s, ok := patternSubject(d.Name); ok {
			for j, p := range compiled {
				if p.match(s) {
					matching = append(matching, patterns[j])
				}
			}
		}
		if len(matching) == 0 {
			listed = append(listed, cloneDestination(egressd.BaselineDestination{Name: d.Name, Ports: d.Ports}))
			continue
		}
		for _, q := range d.Ports {
			allowed := false
			for _, i := range matching {
				if coveredBy(out.Destinations[i].Ports, q) {
					allowed = true
					break
				}
			}
			if !allowed {
				first := &out.Destinations[matching[0]]
				first.Ports = append(first.Ports, q)
			}
		}
	}
	out.Destinations = append(out.Destinations, listed...)
	for i := range out.Destinations {
		out.Destinations[i].Ports = sortPorts(out.Destinations[i].Ports)
	}
	sortDestinations(out.Destinations)
	return out
}

// addPorts adds to d the ports it does not already allow.
func addPorts(d *egressd.BaselineDestination, ports []egressd.Port) {
	for _, q := range ports {
		if !coveredBy(d.Ports, q) {
			d.Ports = append(d.Ports, q)
		}
	}
}

func cloneDestination(d egressd.BaselineDestination) egressd.BaselineDestination {
	d.Ports = slices.Clone(d.Ports)
	return d
}

func sortDestinations(ds []egressd.BaselineDestination) {
	slices.SortFunc(ds, func(a, b egressd.BaselineDestination) int {
		return strings.Compare(a.Name, b.Name)
	})
}

// mergePods returns live's pods, completed with what existing's file knows
// and live does not: the selector (or why there is none) and the resolvers.
func mergePods(existing *egressd.Baseline, live *egressd.BaselinePods) *egressd.BaselinePods {
	if existing == nil || existing.Pods == nil {
		return live
	}
	if live == nil {
		return existing.Pods
	}
	out := *live
	if len(out.Selector) == 0 && out.Unselectable == "" {
		out.Selector, out.Unselectable = existing.Pods.Selector, existing.Pods.Unselectable
	}
	if len(out.Resolvers) == 0 {
		out.Resolvers = existing.Pods.Resolvers
	}
	return &out
}
