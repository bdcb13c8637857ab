package hubbletest

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// predicate reports whether a flow matches one FlowFilter.
type predicate func(*flow.Flow) bool

// filterBuilder builds the predicate for one set field of a FlowFilter. The
// field is known to be set.
type filterBuilder func(ff *flow.FlowFilter) (predicate, error)

// filterBuilders maps each supported FlowFilter field (by proto name) to its
// builder. Each builder follows the Hubble source file named beside it, in
// cilium/cilium v1.20.2 pkg/hubble/filters/.
var filterBuilders = map[protoreflect.Name]filterBuilder{
	// uuid.go: exact match.
	"uuid": func(ff *flow.FlowFilter) (predicate, error) {
		ids := ff.GetUuid()
		return func(f *flow.Flow) bool { return slices.Contains(ids, f.GetUuid()) }, nil
	},
	// ip.go: exact address string, or CIDR when the value contains "/".
	"source_ip": func(ff *flow.FlowFilter) (predicate, error) {
		return ipFilter(ff.GetSourceIp(), func(f *flow.Flow) string { return f.GetIP().GetSource() })
	},
	"source_ip_xlated": func(ff *flow.FlowFilter) (predicate, error) {
		return ipFilter(ff.GetSourceIpXlated(), func(f *flow.Flow) string { return f.GetIP().GetSourceXlated() })
	},
	"destination_ip": func(ff *flow.FlowFilter) (predicate, error) {
		return ipFilter(ff.GetDestinationIp(), func(f *flow.Flow) string { return f.GetIP().GetDestination() })
	},
	// ip.go: filterByIPVersion.
	"ip_version": func(ff *flow.FlowFilter) (predicate, error) {
		vs := ff.GetIpVersion()
		return func(f *flow.Flow) bool { return slices.Contains(vs, f.GetIP().GetIpVersion()) }, nil
	},
	// k8s.go: "ns/pod-prefix"; "ns/" is the whole namespace; a value
	// without "/" is a pod prefix in namespace "default".
	"source_pod": func(ff *flow.FlowFilter) (predicate, error) {
		return namespacedNameFilter(ff.GetSourcePod(), func(f *flow.Flow) (string, string) {
			return f.GetSource().GetNamespace(), f.GetSource().GetPodName()
		})
	},
	"destination_pod": func(ff *flow.FlowFilter) (predicate, error) {
		return namespacedNameFilter(ff.GetDestinationPod(), func(f *flow.Flow) (string, string) {
			return f.GetDestination().GetNamespace(), f.GetDestination().GetPodName()
		})
	},
	"source_service": func(ff *flow.FlowFilter) (predicate, error) {
		return namespacedNameFilter(ff.GetSourceService(), func(f *flow.Flow) (string, string) {
			return f.GetSourceService().GetNamespace(), f.GetSourceService().GetName()
		})
	},
	"destination_service": func(ff *flow.FlowFilter) (predicate, error) {
		return namespacedNameFilter(ff.GetDestinationService(), func(f *flow.Flow) (string, string) {
			return f.GetDestinationService().GetNamespace(), f.GetDestinationService().GetName()
		})
	},
	// fqdn.go + patterns.go: whole-name patterns where "*" matches
	// [-.0-9a-z]*; patterns are lower-cased and lose one trailing dot, the
	// flow's names are compared as they are.
	"source_fqdn": func(ff *flow.FlowFilter) (predicate, error) {
		return fqdnFilter(ff.GetSourceFqdn(), (*flow.Flow).GetSourceNames)
	},
	"destination_fqdn": func(ff *flow.FlowFilter) (predicate, error) {
		return fqdnFilter(ff.GetDestinationFqdn(), (*flow.Flow).GetDestinationNames)
	},
	// fqdn.go: filterByDNSQueries, unanchored RE2 on l7.dns.query.
	"dns_query": func(ff *flow.FlowFilter) (predicate, error) {
		res := make([]*regexp.Regexp, 0, len(ff.GetDnsQuery()))
		for _, p := range ff.GetDnsQuery() {
			re, err := regexp.Compile(p)
			if err != nil {
				return nil, fmt.Errorf("invalid DNS query regexp %q: %w", p, err)
			}
			res = append(res, re)
		}
		return func(f *flow.Flow) bool {
			dns := f.GetL7().GetDns()
			if dns == nil {
				return false
			}
			return slices.ContainsFunc(res, func(re *regexp.Regexp) bool { return re.MatchString(dns.GetQuery()) })
		}, nil
	},
	// labels.go: Kubernetes label selectors over Cilium labels.
	"source_label": func(ff *flow.FlowFilter) (predicate, error) {
		return labelFilter(ff.GetSourceLabel(), func(f *flow.Flow) []string { return f.GetSource().GetLabels() })
	},
	"destination_label": func(ff *flow.FlowFilter) (predicate, error) {
		return labelFilter(ff.GetDestinationLabel(), func(f *flow.Flow) []string { return f.GetDestination().GetLabels() })
	},
	"node_labels": func(ff *flow.FlowFilter) (predicate, error) {
		return labelFilter(ff.GetNodeLabels(), (*flow.Flow).GetNodeLabels)
	},
	// workload.go: any of the endpoint's workloads matches a filter whose
	// set fields (name, kind) are equal.
	"source_workload": func(ff *flow.FlowFilter) (predicate, error) {
		return workloadFilter(ff.GetSourceWorkload(), (*flow.Flow).GetSource), nil
	},
	"destination_workload": func(ff *flow.FlowFilter) (predicate, error) {
		return workloadFilter(ff.GetDestinationWorkload(), (*flow.Flow).GetDestination), nil
	},
	// cluster_name.go: exact; empty names are rejected.
	"source_cluster_name": func(ff *flow.FlowFilter) (predicate, error) {
		return clusterNameFilter(ff.GetSourceClusterName(), (*flow.Flow).GetSource)
	},
	"destination_cluster_name": func(ff *flow.FlowFilter) (predicate, error) {
		return clusterNameFilter(ff.GetDestinationClusterName(), (*flow.Flow).GetDestination)
	},
	// traffic_direction.go, verdict.go: any listed value.
	"traffic_direction": func(ff *flow.FlowFilter) (predicate, error) {
		ds := ff.GetTrafficDirection()
		return func(f *flow.Flow) bool { return slices.Contains(ds, f.GetTrafficDirection()) }, nil
	},
	"verdict": func(ff *flow.FlowFilter) (predicate, error) {
		vs := ff.GetVerdict()
		return func(f *flow.Flow) bool { return slices.Contains(vs, f.GetVerdict()) }, nil
	},
	// event_type.go: type 0 matches any type; sub_type only counts when
	// match_sub_type is set.
	"event_type": func(ff *flow.FlowFilter) (predicate, error) {
		types := ff.GetEventType()
		return func(f *flow.Flow) bool {
			ev := f.GetEventType()
			if ev == nil {
				return false
			}
			return slices.ContainsFunc(types, func(t *flow.EventTypeFilter) bool {
				if t.GetType() != 0 && t.GetType() != ev.GetType() {
					return false
				}
				return !t.GetMatchSubType() || t.GetSubType() == ev.GetSubType()
			})
		}, nil
	},
	// protocol.go: L4 protocols by which l4 oneof is set, "dns" and "http"
	// by which l7 record is set; case-insensitive; unknown names rejected.
	"protocol": func(ff *flow.FlowFilter) (predicate, error) {
		return protocolFilter(ff.GetProtocol())
	},
	// port.go: TCP, UDP or SCTP port, decimal.
	"source_port": func(ff *flow.FlowFilter) (predicate, error) {
		return portFilter(ff.GetSourcePort(), sourcePort)
	},
	"destination_port": func(ff *flow.FlowFilter) (predicate, error) {
		return portFilter(ff.GetDestinationPort(), destinationPort)
	},
	// reply.go, with one deliberate extension: see replyFilter.
	"reply": func(ff *flow.FlowFilter) (predicate, error) {
		return replyFilter(ff.GetReply()), nil
	},
	// identity.go: numeric security identity of the endpoint.
	"source_identity": func(ff *flow.FlowFilter) (predicate, error) {
		return identityFilter(ff.GetSourceIdentity(), (*flow.Flow).GetSource), nil
	},
	"destination_identity": func(ff *flow.FlowFilter) (predicate, error) {
		return identityFilter(ff.GetDestinationIdentity(), (*flow.Flow).GetDestination), nil
	},
	// tcp.go: a filter matches when all its flags are set on the flow.
	"tcp_flags": func(ff *flow.FlowFilter) (predicate, error) {
		return tcpFlagsFilter(ff.GetTcpFlags()), nil
	},
	// nodename.go + patterns.go: "node", "cluster/node", with "*" globs.
	"node_name": func(ff *flow.FlowFilter) (predicate, error) {
		return nodeNameFilter(ff.GetNodeName())
	},
	// http.go: filterByHTTPMethods, case-insensitive.
	"http_method": func(ff *flow.FlowFilter) (predicate, error) {
		methods := ff.GetHttpMethod()
		return func(f *flow.Flow) bool {
			h := f.GetL7().GetHttp()
			if h.GetMethod() == "" {
				return false
			}
			return slices.ContainsFunc(methods, func(m string) bool { return strings.EqualFold(m, h.GetMethod()) })
		}, nil
	},
	// experimental only holds cel_expression, which is not supported; an
	// empty experimental message is accepted and ignored, as Hubble does.
	"experimental": func(ff *flow.FlowFilter) (predicate, error) {
		exp := ff.GetExperimental()
		if len(exp.GetCelExpression()) > 0 {
			return nil, errors.New(`unsupported FlowFilter field "experimental.cel_expression"`)
		}
		if u := exp.ProtoReflect().GetUnknown(); len(u) > 0 {
			return nil, fmt.Errorf("FlowFilter.experimental has fields unknown to this server (field numbers %v)", unknownFieldNumbers(u))
		}
		return nil, nil
	},
}

// SupportedFilterFields returns the proto names of the FlowFilter fields the
// server implements, sorted. A request using any other field is rejected
// with codes.InvalidArgument naming it (Hubble would apply it, or, for a
// field it does not know, silently ignore it).
//
// Semantics follow cilium/cilium v1.20.2 pkg/hubble/filters: within one
// FlowFilter every set field must match, and a field matches when any of its
// values does. Notably: source_pod/destination_pod "ns/" selects a
// namespace, "ns/prefix" pods by name prefix, and a value without "/" means
// namespace "default"; IPs match exactly or by CIDR; labels take Kubernetes
// selectors ("k8s:app=foo", "app in (a,b)", "!key", "reserved:world"), where
// a key without a "source:" prefix matches any source; fqdn and node_name
// take whole-name patterns with "*"; dns_query is an unanchored regexp;
// event_type type 0 matches any type.
//
// One deliberate extension: reply follows Hubble (is_reply; a dropped flow
// without is_reply counts as not a reply), but a flow without is_reply that
// is not dropped falls back to the deprecated reply field, which is how the
// Cilium 1.10 agents that recorded egressd's sample flows filtered it. Real
// Hubble never matches such a flow with a reply filter.
func SupportedFilterFields() []string {
	names := make([]string, 0, len(filterBuilders))
	for n := range filterBuilders {
		names = append(names, string(n))
	}
	sort.Strings(names)
	return names
}

// compileFilters builds one predicate per FlowFilter; where names the list
// in errors ("whitelist", "blacklist").
func compileFilters(where string, ffs []*flow.FlowFilter) ([]predicate, error) {
	ps := make([]predicate, 0, len(ffs))
	for i, ff := range ffs {
		p, err := compileFilter(ff)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", where, i, err)
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// compileFilter builds the predicate of one FlowFilter: all set fields must
// match (Hubble's BuildFilterList and FilterFuncs.MatchAll). An empty
// FlowFilter matches every flow, so an empty blacklist entry blocks all.
func compileFilter(ff *flow.FlowFilter) (predicate, error) {
	m := ff.ProtoReflect()
	if u := m.GetUnknown(); len(u) > 0 {
		return nil, fmt.Errorf("FlowFilter has fields unknown to this server (field numbers %v)", unknownFieldNumbers(u))
	}
	var ps []predicate
	fields := m.Descriptor().Fields()
	// Walk in descriptor order so that the field named by an error does not
	// depend on map or Range iteration order.
	for i := range fields.Len() {
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue
		}
		build, ok := filterBuilders[fd.Name()]
		if !ok {
			return nil, fmt.Errorf("unsupported FlowFilter field %q (supported: %s)", fd.Name(), strings.Join(SupportedFilterFields(), ", "))
		}
		p, err := build(ff)
		if err != nil {
			return nil, fmt.Errorf("FlowFilter.%s: %w", fd.Name(), err)
		}
		if p != nil {
			ps = append(ps, p)
		}
	}
	return func(f *flow.Flow) bool {
		for _, p := range ps {
			if !p(f) {
				return false
			}
		}
		return true
	}, nil
}

func ipFilter(values []string, get func(*flow.Flow) string) (predicate, error) {
	var addrs []string
	var prefixes []netip.Prefix
	for _, v := range values {
		if strings.Contains(v, "/") {
			p, err := netip.ParsePrefix(v)
			if err != nil {
				return nil, fmt.Errorf("invalid IP prefix %q: %w", v, err)
			}
			prefixes = append(prefixes, p)
			continue
		}
		if _, err := netip.ParseAddr(v); err != nil {
			return nil, fmt.Errorf("invalid IP address %q: %w", v, err)
		}
		// Hubble compares the strings, not the parsed addresses.
		addrs = append(addrs, v)
	}
	return func(f *flow.Flow) bool {
		ip := get(f)
		if ip == "" {
			return false
		}
		if slices.Contains(addrs, ip) {
			return true
		}
		if len(prefixes) == 0 {
			return false
		}
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return false
		}
		return slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return p.Contains(a) })
	}, nil
}

// parseNamespaceName is Hubble's k8s.ParseNamespaceName
// (pkg/hubble/k8s/utils.go).
func parseNamespaceName(s string) (ns, name string) {
	parts := strings.Split(s, "/")
	switch {
	case len(parts) > 1:
		return parts[0], parts[1]
	case parts[0] == "":
		return "", ""
	default:
		return "default", parts[0]
	}
}

func namespacedNameFilter(values []string, get func(*flow.Flow) (ns, name string)) (predicate, error) {
	type nameFilter struct{ ns, prefix string }
	fs := make([]nameFilter, 0, len(values))
	for _, v := range values {
		if v == "" {
			return nil, errors.New("name must not be empty")
		}
		ns, prefix := parseNamespaceName(v)
		fs = append(fs, nameFilter{ns, prefix})
	}
	return func(f *flow.Flow) bool {
		ns, name := get(f)
		if ns == "" && name == "" {
			return false
		}
		return slices.ContainsFunc(fs, func(nf nameFilter) bool {
			return (nf.prefix == "" || strings.HasPrefix(name, nf.prefix)) && (nf.ns == "" || nf.ns == ns)
		})
	}, nil
}

func fqdnFilter(patterns []string, get func(*flow.Flow) []string) (predicate, error) {
	re, err := compileFQDNPatterns(patterns)
	if err != nil {
		return nil, err
	}
	return func(f *flow.Flow) bool {
		return slices.ContainsFunc(get(f), re.MatchString)
	}, nil
}

func labelFilter(selectors []string, get func(*flow.Flow) []string) (predicate, error) {
	sels := make([]selector, 0, len(selectors))
	for _, s := range selectors {
		sel, err := parseSelector(s)
		if err != nil {
			return nil, fmt.Errorf("invalid label selector %q: %w", s, err)
		}
		sels = append(sels, sel)
	}
	return func(f *flow.Flow) bool {
		ls := parseLabels(get(f))
		return slices.ContainsFunc(sels, func(sel selector) bool { return sel.matches(ls) })
	}, nil
}

func workloadFilter(ws []*flow.Workload, get func(*flow.Flow) *flow.Endpoint) predicate {
	return func(f *flow.Flow) bool {
		for _, w := range get(f).GetWorkloads() {
			if slices.ContainsFunc(ws, func(fw *flow.Workload) bool {
				return (fw.GetName() == "" || fw.GetName() == w.GetName()) &&
					(fw.GetKind() == "" || fw.GetKind() == w.GetKind())
			}) {
				return true
			}
		}
		return false
	}
}

func clusterNameFilter(names []string, get func(*flow.Flow) *flow.Endpoint) (predicate, error) {
	if slices.Contains(names, "") {
		return nil, errors.New("name must not be empty")
	}
	return func(f *flow.Flow) bool { return slices.Contains(names, get(f).GetClusterName()) }, nil
}

func protocolFilter(protocols []string) (predicate, error) {
	var l4, l7 []string
	for _, p := range protocols {
		switch lp := strings.ToLower(p); lp {
		case "icmp", "icmpv4", "icmpv6", "tcp", "udp", "sctp", "vrrp", "igmp":
			l4 = append(l4, lp)
		case "dns", "http":
			l7 = append(l7, lp)
		default:
			return nil, fmt.Errorf("unknown protocol %q (known: icmp, icmpv4, icmpv6, tcp, udp, sctp, vrrp, igmp, dns, http)", p)
		}
	}
	return func(f *flow.Flow) bool {
		l4p := f.GetL4()
		for _, p := range l4 {
			var ok bool
			switch p {
			case "icmp":
				ok = l4p.GetICMPv4() != nil || l4p.GetICMPv6() != nil
			case "icmpv4":
				ok = l4p.GetICMPv4() != nil
			case "icmpv6":
				ok = l4p.GetICMPv6() != nil
			case "tcp":
				ok = l4p.GetTCP() != nil
			case "udp":
				ok = l4p.GetUDP() != nil
			case "sctp":
				ok = l4p.GetSCTP() != nil
			case "vrrp":
				ok = l4p.GetVRRP() != nil
			case "igmp":
				ok = l4p.GetIGMP() != nil
			}
			if ok {
				return true
			}
		}
		l7p := f.GetL7()
		for _, p := range l7 {
			if (p == "dns" && l7p.GetDns() != nil) || (p == "http" && l7p.GetHttp() != nil) {
				return true
			}
		}
		return false
	}, nil
}

func sourcePort(f *flow.Flow) (uint16, bool) {
	l4 := f.GetL4()
	switch {
	case l4.GetTCP() != nil:
		return uint16(l4.GetTCP().GetSourcePort()), true
	case l4.GetUDP() != nil:
		return uint16(l4.GetUDP().GetSourcePort()), true
	case l4.GetSCTP() != nil:
		return uint16(l4.GetSCTP().GetSourcePort()), true
	}
	return 0, false
}

func destinationPort(f *flow.Flow) (uint16, bool) {
	l4 := f.GetL4()
	switch {
	case l4.GetTCP() != nil:
		return uint16(l4.GetTCP().GetDestinationPort()), true
	case l4.GetUDP() != nil:
		return uint16(l4.GetUDP().GetDestinationPort()), true
	case l4.GetSCTP() != nil:
		return uint16(l4.GetSCTP().GetDestinationPort()), true
	}
	return 0, false
}

func portFilter(values []string, get func(*flow.Flow) (uint16, bool)) (predicate, error) {
	ports := make([]uint16, 0, len(values))
	for _, v := range values {
		p, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("invalid port %q: %w", v, err)
		}
		ports = append(ports, uint16(p))
	}
	return func(f *flow.Flow) bool {
		p, ok := get(f)
		return ok && slices.Contains(ports, p)
	}, nil
}

// replyFilter follows reply.go: is_reply decides; a dropped flow without
// is_reply counts as not a reply. Hubble rejects every other flow without
// is_reply; this server instead falls back to the deprecated reply field,
// which agents older than is_reply (Cilium 1.10, the sample recordings) set
// and filtered on.
func replyFilter(values []bool) predicate {
	return func(f *flow.Flow) bool {
		var reply bool
		switch {
		case f.GetIsReply() != nil:
			reply = f.GetIsReply().GetValue()
		case f.GetVerdict() == flow.Verdict_DROPPED:
			reply = false
		default:
			reply = f.GetReply()
		}
		return slices.Contains(values, reply)
	}
}

func identityFilter(ids []uint32, get func(*flow.Flow) *flow.Endpoint) predicate {
	return func(f *flow.Flow) bool {
		ep := get(f)
		return ep != nil && slices.Contains(ids, ep.GetIdentity())
	}
}

func tcpFlagsFilter(filters []*flow.TCPFlags) predicate {
	return func(f *flow.Flow) bool {
		got := f.GetL4().GetTCP().GetFlags()
		if got == nil {
			return false
		}
		return slices.ContainsFunc(filters, func(w *flow.TCPFlags) bool {
			return (!w.GetFIN() || got.GetFIN()) && (!w.GetSYN() || got.GetSYN()) &&
				(!w.GetRST() || got.GetRST()) && (!w.GetPSH() || got.GetPSH()) &&
				(!w.GetACK() || got.GetACK()) && (!w.GetURG() || got.GetURG()) &&
				(!w.GetECE() || got.GetECE()) && (!w.GetCWR() || got.GetCWR()) &&
				(!w.GetNS() || got.GetNS())
		})
	}
}

// defaultClusterName is Cilium's defaults.ClusterName, which nodename.go
// prefixes to node names that carry no cluster.
const defaultClusterName = "default"

func nodeNameFilter(patterns []string) (predicate, error) {
	re, err := compileNodeNamePatterns(patterns)
	if err != nil {
		return nil, err
	}
	return func(f *flow.Flow) bool {
		name := f.GetNodeName()
		if name == "" {
			return false
		}
		if !strings.Contains(name, "/") {
			name = defaultClusterName + "/" + name
		}
		return re.MatchString(name)
	}, nil
}
