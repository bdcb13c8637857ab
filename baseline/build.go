package baseline

import (
	"slices"
	"strings"

	"github.com/egressd/egressd"
)

// Build turns the window entries into one baseline per app, sorted by
// namespace then app: one destination per name with the ports of all its
// entries, destinations sorted by name and ports by number then protocol. Bare
// IP addresses stay as names.
//
// Apps are keyed by namespace and app only: the same workload in several
// clusters shares one file. Entries that could not be written to a file (an
// invalid namespace or app, a destination that is neither a DNS name nor an
// IP address, an unknown protocol) are skipped; the collector validates what
// it reads from flows, so they can only come from a bug upstream.
func Build(entries []egressd.WindowEntry) []egressd.Baseline {
	type appKey struct{ namespace, app string }
	type item struct {
		name string
		port egressd.Port
	}
	groups := make(map[appKey][]item)
	// Entries arrive grouped by app, so remember the last app's validity
	// rather than validating every entry.
	var last appKey
	lastValid := false
	for _, e := range entries {
		k := appKey{e.App.Namespace, e.App.Name}
		if k != last || !lastValid {
			last = k
			lastValid = egressd.App{Namespace: k.namespace, Name: k.app}.Validate() == nil
		}
		if !lastValid {
			continue
		}
		name, ok := canonicalName(e.Destination.Name, false)
		if !ok {
			continue
		}
		proto, ok := egressd.CanonicalProtocol(e.Destination.Protocol)
		if !ok {
			continue
		}
		groups[k] = append(groups[k], item{name, egressd.Port{Number: e.Destination.Port, Protocol: proto}})
	}

	out := make([]egressd.Baseline, 0, len(groups))
	for k, items := range groups {
		slices.SortFunc(items, func(a, b item) int {
			if c := strings.Compare(a.name, b.name); c != 0 {
				return c
			}
			return comparePorts(a.port, b.port)
		})
		items = slices.Compact(items)
		b := egressd.Baseline{Namespace: k.namespace, App: k.app}
		for i, it := range items {
			if i == 0 || it.name != items[i-1].name {
				b.Destinations = append(b.Destinations, egressd.BaselineDestination{Name: it.name})
			}
			d := &b.Destinations[len(b.Destinations)-1]
			d.Ports = append(d.Ports, it.port)
		}
		out = append(out, b)
	}
	sortBaselines(out)
	return out
}

// sortBaselines sorts by namespace, then app.
func sortBaselines(bs []egressd.Baseline) {
	slices.SortFunc(bs, func(a, b egressd.Baseline) int {
		return compareApps(egressd.App{Namespace: a.Namespace, Name: a.App}, egressd.App{Namespace: b.Namespace, Name: b.App})
	})
}
