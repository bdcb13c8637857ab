package egressd

// HostNamespace is the namespace under which host-network traffic is
// attributed: a node's own egress is the app host/<node>. A real namespace
// called "host" would share these apps; the readable form was chosen anyway.
const HostNamespace = "host"

// Length limits for names read from flows. They follow Kubernetes (a namespace
// is a DNS label, a workload or node name a DNS subdomain) except MaxAppLen,
// which leaves room for ".json" within the 255-byte file name limit.
const (
	MaxNamespaceLen = 63
	MaxAppLen       = 250
	MaxClusterLen   = 63
	MaxPodLen       = 253
)

// App is a workload: the unit egressd learns a baseline for.
type App struct {
	Cluster   string
	Namespace string
	Name      string
}

// String returns "namespace/name", the form used in logs, files and alerts.
func (a App) String() string {
	return a.Namespace + "/" + a.Name
}

// InCluster names the app in messages: "namespace/name", with " in
// cluster CLUSTER" when it is limited to one cluster.
func (a App) InCluster() string {
	if a.Cluster == "" {
		return a.String()
	}
	return a.String() + " in cluster " + a.Cluster
}

// Validate reports whether the app's names are safe to use as file and
// directory names and in alerts.
func (a App) Validate() error {
	if !ValidNamespace(a.Namespace) {
		return Errorf(EINVALID, "invalid namespace %q: want a DNS label (lower-case letters, digits and '-', at most %d characters)", a.Namespace, MaxNamespaceLen)
	}
	if !ValidAppName(a.Name) {
		return Errorf(EINVALID, "invalid app name %q in namespace %s: want letters, digits, '-', '_' or '.', starting and ending with a letter or digit, at most %d characters", a.Name, a.Namespace, MaxAppLen)
	}
	if a.Cluster != "" && !validLabelValue(a.Cluster, MaxClusterLen) {
		return Errorf(EINVALID, "invalid cluster name %q", a.Cluster)
	}
	return nil
}

// ParseApp parses "namespace/name".
func ParseApp(s string) (App, error) {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			a := App{Namespace: s[:i], Name: s[i+1:]}
			if err := a.Validate(); err != nil {
				return App{}, err
			}
			return a, nil
		}
	}
	return App{}, Errorf(EINVALID, "invalid app %q: want NAMESPACE/APP", s)
}

// ValidNamespace reports whether s is a Kubernetes namespace name (an RFC 1123
// DNS label).
func ValidNamespace(s string) bool {
	if len(s) == 0 || len(s) > MaxNamespaceLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}

// ValidAppName reports whether s can name an app: a workload name, a label
// value or a node name. It never contains '/', never starts with '.', and so
// can never be "." or ".." or escape a directory.
func ValidAppName(s string) bool {
	return validLabelValue(s, MaxAppLen)
}

// ValidPodName reports whether s is a Kubernetes pod name (a DNS subdomain).
func ValidPodName(s string) bool {
	if len(s) == 0 || len(s) > MaxPodLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '-' || c == '.') && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}

func validLabelValue(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case (c == '-' || c == '_' || c == '.') && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}
