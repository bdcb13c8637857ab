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
	// Pods is what export learnt of the app's pods: how a policy selects
	// them and which DNS servers they asked. Nil when nothing is known
	// (files written before egressd stored pods' labels): policies then
	// select the pods by an app label.
	Pods *BaselinePods
	// Suggestions are patterns export proposes for many sibling names,
	// with their evidence. Nothing reads them but people: the detector and
	// the policy generator judge Destinations only, until a person moves a
	// suggestion there.
	Suggestions []BaselineSuggestion
}

// BaselineSuggestion is a Cilium matchPattern that would cover Evidence of
// the app's listed names (Examples are some of them) on Ports. Warning,
// when set, says why the pattern deserves a closer look: it spans names
// that different owners can register.
type BaselineSuggestion struct {
	Pattern  string
	Ports    []Port
	Evidence int
	Examples []string
	Warning  string
}

// BaselinePods is how a policy selects an app's pods and allows its DNS.
type BaselinePods struct {
	// Selector holds Kubernetes labels that all the app's pods carried and
	// no pod of another app of its namespace carried all of: the policy's
	// endpointSelector matchLabels.
	Selector map[string]string
	// Unselectable, when Selector is empty, says why no labels could
	// select exactly the app's pods: the app then gets no policy.
	Unselectable string
	// Resolvers are the DNS servers the app's pods asked, sorted by kind
	// then address.
	Resolvers []BaselineResolver
}

// BaselineResolver is a DNS server a policy allows. Addr is empty for
// ResolverCluster.
type BaselineResolver struct {
	Kind ResolverKind
	Addr string
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
