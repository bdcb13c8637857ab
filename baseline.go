package egressd

// BaselineAPIVersion and BaselineKind head every baseline file.
const (
	BaselineAPIVersion = "egressd.io/v1"
	BaselineKind       = "EgressBaseline"
)

// Baseline is an app's known external destinations: what the baseliner
// exports to a GitOps repository and what the detector compares against.
type Baseline struct {
	Namespace string
	App       string
	// Unbounded apps (crawlers, proxies, CI runners) reach arbitrary
	// destinations by design: they raise volume anomalies only.
	Unbounded bool
	// Note is free text an operator wrote; it survives re-export.
	Note         string
	Destinations []BaselineDestination
}

// BaselineDestination is one name, IP or Cilium toFQDNs pattern and the ports
// the app uses on it.
type BaselineDestination struct {
	// Name is a DNS name, an IP address, or a pattern ("*.example.com",
	// "**.example.com") written by hand.
	Name  string
	Ports []Port
	// Note is free text an operator wrote; an entry with a note is kept on
	// re-export even when the window no longer shows it.
	Note string
}

// Port is a port and protocol, written "443/TCP".
type Port struct {
	Number   uint16
	Protocol string
}

// String returns "443/TCP".
func (p Port) String() string {
	return FormatPort(p.Number, p.Protocol)
}
