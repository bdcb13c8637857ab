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
	var b Builder
	for _, e := range entries {
		b.Add(e)
	}
	return b.Baselines()
}

// Builder is Build fed one entry at a time, as a window streams from the
// database (postgres.DB.EachWindowDestination): entries may come in any
// order, and a repeated entry counts once. Only the names and ports are
// kept, never the list of entries. The zero value is ready to use.
type Builder struct {
	groups map[builderApp][]builderItem
	// Entries usually come grouped by app, so the last app's validity is
	// remembered rather than checked for every entry.
	last      builderApp
	lastValid bool
}

type builderApp struct{ namespace, app string }

type builderItem struct {
	name string
	port egressd.Port
}

// Add adds e to its app's baseline; see Build for the entries skipped.
func (b *Builder) Add(e egressd.WindowEntry) {
	if b.groups == nil {
		b.groups = make(map[builderApp][]builderItem)
	}
	k := builderApp{e.App.Namespace, e.App.Name}
	if k != b.last || !b.lastValid {
		b.last = k
		b.lastValid = egressd.App{Namespace: k.namespace, Name: k.app}.Validate() == nil
	}
	if !b.lastValid {
		return
	}
	name, ok := canonicalName(e.Destination.Name, false)
	if !ok {
		return
	}
	proto, ok := egressd.CanonicalProtocol(e.Destination.Protocol)
	if !ok {
		return
	}
	b.groups[k] = append(b.groups[k], builderItem{name, egressd.Port{Number: e.Destination.Port, Protocol: proto}})
}

// Baselines returns the baselines of the entries added, as Build does.
func (b *Builder) Baselines() []egressd.Baseline {
	out := make([]egressd.Baseline, 0, len(b.groups))
	for k, items := range b.groups {
		slices.SortFunc(items, func(a, b builderItem) int {
			if c := strings.Compare(a.name, b.name); c != 0 {
				return c
			}
			return comparePorts(a.port, b.port)
		})
		items = slices.Compact(items)
		bl := egressd.Baseline{Namespace: k.namespace, App: k.app}
		for i, it := range items {
			if i == 0 || it.name != items[i-1].name {
				bl.Destinations = append(bl.Destinations, egressd.BaselineDestination{Name: it.name})
			}
			d := &bl.Destinations[len(bl.Destinations)-1]
			d.Ports = append(d.Ports, it.port)
		}
		out = append(out, bl)
	}
	sortBaselines(out)
	return out
}

// Take returns the baselines of the entries added since the last Take, as
// Baselines does, and forgets those entries: a window that streams one app
// at a time (postgres.DB.EachWindowApp) is built with one Builder, an app
// added then taken at a time.
func (b *Builder) Take() []egressd.Baseline {
	out := b.Baselines()
	clear(b.groups)
	return out
}

// sortBaselines sorts by namespace, then app.
func sortBaselines(bs []egressd.Baseline) {
	slices.SortFunc(bs, func(a, b egressd.Baseline) int {
		return compareApps(egressd.App{Namespace: a.Namespace, Name: a.App}, egressd.App{Namespace: b.Namespace, Name: b.App})
	})
}
