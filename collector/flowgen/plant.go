package flowgen

import (
	"net/netip"
	"time"
)

// The functions below build Events for Scenario.Extra: the anomalies that
// detection tests plant into a scenario. Source is "namespace/name" of a
// workload, or "host/<node>". Each event is rendered exactly like routine
// traffic of the same kind.

// NovelName is a connection to a name the app never used, which Hubble
// reports in destination_names.
func NovelName(at time.Time, source, name string, ip netip.Addr, port uint16) Event {
	return Event{At: at, Source: source, Do: []Action{Connect{
		To:    &Remote{Name: name, IPs: []netip.Addr{ip}, TTL: 300, Identity: World()},
		Port:  port,
		Names: NamesInFlow,
	}}}
}

// DNSOnlyName is a connection to a new name that flows do not carry: only
// the DNS answer the pod got just before names the address.
func DNSOnlyName(at time.Time, source, name string, ip netip.Addr, port uint16) Event {
	return Event{At: at, Source: source, Do: []Action{Connect{
		To:    &Remote{Name: name, IPs: []netip.Addr{ip}, TTL: 300, Identity: World()},
		Port:  port,
		Names: NamesInDNSOnly,
	}}}
}

// BareIP is a connection to a hard-coded address, with no DNS lookup.
func BareIP(at time.Time, source string, ip netip.Addr, port uint16) Event {
	return Event{At: at, Source: source, Do: []Action{Connect{
		To:    &Remote{IPs: []netip.Addr{ip}, Identity: World()},
		Port:  port,
		Names: NoNames,
	}}}
}

// DroppedAttempt is a connection to a hard-coded address that the policy
// drops: recorded, never part of a baseline.
func DroppedAttempt(at time.Time, source string, ip netip.Addr, port uint16) Event {
	return Event{At: at, Source: source, Do: []Action{Connect{
		To:     &Remote{IPs: []netip.Addr{ip}, Identity: World()},
		Port:   port,
		Names:  NoNames,
		Denied: true,
	}}}
}

// VolumeBurst is count connections to a remote spread over d: far more flows
// than the app's usual rate. Use one of the app's usual destinations to test
// volume detection alone.
func VolumeBurst(at time.Time, source string, to *Remote, port uint16, names NameSource, count int, d time.Duration) Event {
	return Event{At: at, Source: source, Do: []Action{Connect{
		To:    to,
		Port:  port,
		Names: names,
		Count: count,
		Over:  d,
	}}}
}

// Remote returns the remote host with the given DNS name that the scenario's
// routines use, or nil: events can reuse an app's usual destination.
func (s Scenario) Remote(name string) *Remote {
	for _, w := range s.Workloads {
		for _, rt := range w.Routines {
			for _, a := range rt.Do {
				switch a := a.(type) {
				case Connect:
					if a.To.Name == name {
						return a.To
					}
				case Lookup:
					if a.Of.Name == name {
						return a.Of
					}
				}
			}
		}
	}
	return nil
}
