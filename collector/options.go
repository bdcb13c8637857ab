package collector

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"
)

// Options configure how flows become observations.
type Options struct {
	// AppPrecedence lists where an app's name comes from, first match
	// wins: "workload" (source.workloads[0].name), "label:KEY" (a pod
	// label such as app.kubernetes.io/name) and "pod" (the pod name without
	// its ReplicaSet, StatefulSet or Job suffix). At most 7 labels.
	AppPrecedence []string
	// InternalCIDRs are networks that are never internet egress even when
	// Cilium calls them "world": node, LAN and VPC addresses.
	InternalCIDRs []netip.Prefix
	// ClusterDomains are DNS suffixes of in-cluster names, which are
	// never destinations.
	ClusterDomains []string
	// Cluster names the cluster when flows do not carry it.
	Cluster string
	// DNSMinTTL is the shortest time a DNS answer names its addresses,
	// whatever its TTL (as Cilium's --tofqdns-min-ttl): connections often
	// outlive the TTL of the answer that started them.
	DNSMinTTL time.Duration
	// DNSMaxEntries bounds the (pod, address) -> name cache, and
	// DNSMaxEntriesPerPod the entries of one pod in it: a pod at its bound
	// gets no new answer in until the last of its answers expires
	// (egressd_collector_dns_cache_pod_full_total).
	DNSMaxEntries       int
	DNSMaxEntriesPerPod int
	// DedupWindow is how long a flow is remembered to drop Hubble's
	// duplicates (the inclusive `since`, Relay replays after a node
	// reconnects). DedupMaxEntries bounds that memory.
	DedupWindow     time.Duration
	DedupMaxEntries int
	// MaxClockSkew is how far ahead of Now a flow's time may be. A flow
	// further ahead, or from before 2000, is rejected at the door: it is
	// not an observation and does not move its source's cursor (a cursor
	// in the future would make a restarted collector skip every real
	// flow). It is counted in egressd_flows_rejected_total{reason="clock"}
	// and logged, rate limited, with its node. In a replay, a flow more
	// than MaxClockSkew after the capture's flows before it is also
	// rejected unless the flows after it confirm the jump (see ReplayFrom).
	MaxClockSkew time.Duration
	// MaxApps bounds the apps the pipeline hands its sinks, so that pods
	// that each make an app of their own (bare pods without labels: the
	// pod's name is the app) cost bounded memory and rows. Apps already
	// stored (KeepApp) and apps already handed over are kept; past half of
	// it, a new app is kept only if a hash of its name falls in one in
	// 100 (so an app is always kept or always not); at the bound, no new
	// app is. Observations of apps not kept are counted
	// (egressd_collector_observations_apps_sampled_total) and logged, rate
	// limited (apps_not_kept).
	MaxApps int
	// Now is the receiving clock that MaxClockSkew is measured from.
	Now func() time.Time
	// Log receives the rejected-flow lines; nil logs nothing.
	Log *slog.Logger
}

// DefaultInternalCIDRs are the loopback, link-local, private (RFC 1918,
// RFC 6598 shared, IPv6 ULA) and documentation-free special ranges.
var DefaultInternalCIDRs = []string{
	"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
	"127.0.0.0/8", "169.254.0.0/16", "0.0.0.0/8",
	"fc00::/7", "fe80::/10", "::1/128",
}

// DefaultOptions returns the default options.
func DefaultOptions() Options {
	o := Options{
		AppPrecedence:  []string{"workload", "label:app.kubernetes.io/name", "label:app", "label:k8s-app", "pod"},
		ClusterDomains: []string{"cluster.local"},
		DNSMinTTL:      time.Hour,
		DNSMaxEntries:  200_000,
		// A pod reaching thousands of addresses within an answer's life
		// (an hour at least: DNSMinTTL) is a crawler, or an attack.
		DNSMaxEntriesPerPod: 5_000,
		DedupWindow:         5 * time.Minute,
		DedupMaxEntries:     500_000,
		MaxClockSkew:        5 * time.Minute,
		MaxApps:             100_000,
		Now:                 time.Now,
	}
	for _, c := range DefaultInternalCIDRs {
		o.InternalCIDRs = append(o.InternalCIDRs, netip.MustParsePrefix(c))
	}
	return o
}

// Validate reports the first invalid field.
func (o Options) Validate() error {
	if len(o.AppPrecedence) == 0 {
		return fmt.Errorf("collector: Options.AppPrecedence is empty: want e.g. workload,label:app,pod")
	}
	labels := 0
	for _, p := range o.AppPrecedence {
		switch {
		case p == "workload", p == "pod":
		case strings.HasPrefix(p, "label:") && len(p) > len("label:"):
			labels++
		default:
			return fmt.Errorf("collector: Options.AppPrecedence entry %q: want workload, pod or label:KEY", p)
		}
	}
	if labels > maxLabelKeys-1 {
		return fmt.Errorf("collector: Options.AppPrecedence has %d labels, at most %d are supported", labels, maxLabelKeys-1)
	}
	if o.DNSMinTTL < 0 {
		return fmt.Errorf("collector: Options.DNSMinTTL must be >= 0")
	}
	if o.DNSMaxEntries <= 0 {
		return fmt.Errorf("collector: Options.DNSMaxEntries must be > 0")
	}
	if o.DNSMaxEntriesPerPod <= 0 {
		return fmt.Errorf("collector: Options.DNSMaxEntriesPerPod must be > 0")
	}
	if o.DedupWindow <= 0 {
		return fmt.Errorf("collector: Options.DedupWindow must be > 0")
	}
	if o.DedupMaxEntries <= 0 {
		return fmt.Errorf("collector: Options.DedupMaxEntries must be > 0")
	}
	if o.MaxClockSkew <= 0 {
		return fmt.Errorf("collector: Options.MaxClockSkew must be > 0 (--max-clock-skew)")
	}
	if o.MaxApps <= 0 {
		return fmt.Errorf("collector: Options.MaxApps must be > 0 (--max-apps)")
	}
	if o.Now == nil {
		return fmt.Errorf("collector: Options.Now must be set")
	}
	for _, d := range o.ClusterDomains {
		if _, ok := normalizeDomain(d); !ok {
			return fmt.Errorf("collector: Options.ClusterDomains entry %q is not a DNS name", d)
		}
	}
	return nil
}

func normalizeDomain(d string) (string, bool) {
	d = strings.TrimPrefix(strings.TrimSuffix(strings.ToLower(d), "."), ".")
	if d == "" || strings.ContainsAny(d, " /\\") {
		return "", false
	}
	return d, true
}

// ParseCIDRs parses a comma-separated list of CIDRs, naming the bad entry.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("invalid CIDR %q: want e.g. 10.0.0.0/8", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
