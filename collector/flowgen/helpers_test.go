package flowgen_test

import (
	"bytes"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector/flowgen"
)

// captureStart is the start of the HomeLab week in testdata.
var captureStart = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

const week = 7 * 24 * time.Hour

// homeLabWeek generates the HomeLab week once for all tests. Tests must not
// modify the responses.
var homeLabWeek = sync.OnceValues(func() ([]*observer.GetFlowsResponse, error) {
	return flowgen.HomeLab(captureStart, week).Generate()
})

// homeLabWeekLines is the week written as JSON lines, once for all tests.
var homeLabWeekLines = sync.OnceValues(func() ([]byte, error) {
	resps, err := homeLabWeek()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	err = flowgen.WriteJSONLines(&buf, resps)
	return buf.Bytes(), err
})

func weekLines(t testing.TB) []byte {
	t.Helper()
	lines, err := homeLabWeekLines()
	require.NoError(t, err)
	return lines
}

func weekResponses(t testing.TB) []*observer.GetFlowsResponse {
	t.Helper()
	resps, err := homeLabWeek()
	require.NoError(t, err)
	return resps
}

func jsonLines(t testing.TB, resps []*observer.GetFlowsResponse) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, flowgen.WriteJSONLines(&buf, resps))
	return buf.Bytes()
}

// reference is an attribution written from the rules of package collector for
// these tests only, independent of the generator: which (app, destination)
// pairs the flows show as internet egress, forwarded or dropped.
type reference struct {
	learned map[egressd.App][]egressd.Destination
	denied  map[egressd.App][]egressd.Destination
}

// private are the cluster and LAN ranges that are never internet egress.
var private = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
}

var podSuffix = []*regexp.Regexp{
	regexp.MustCompile(`-[0-9]{6,}-[a-z0-9]{5}$`),      // CronJob Job pod
	regexp.MustCompile(`-[a-z0-9]{6,10}-[a-z0-9]{5}$`), // ReplicaSet pod
	regexp.MustCompile(`-[0-9]+$`),                     // StatefulSet pod
	regexp.MustCompile(`-[a-z0-9]{5}$`),                // DaemonSet or Job pod
}

func referenceApp(f *flowpb.Flow) egressd.App {
	src := f.GetSource()
	app := egressd.App{Cluster: src.GetClusterName(), Namespace: src.GetNamespace()}
	if slices.Contains(src.GetLabels(), "reserved:host") {
		node := f.GetNodeName()
		cluster, name, ok := strings.Cut(node, "/")
		if ok {
			app.Cluster, node = cluster, name
		}
		app.Namespace, app.Name = egressd.HostNamespace, node
		return app
	}
	if w := src.GetWorkloads(); len(w) > 0 {
		app.Name = w[0].GetName()
		return app
	}
	for _, key := range []string{"app.kubernetes.io/name", "app", "k8s-app"} {
		for _, l := range src.GetLabels() {
			if v, ok := strings.CutPrefix(l, "k8s:"+key+"="); ok {
				app.Name = v
				return app
			}
		}
	}
	app.Name = src.GetPodName()
	for _, re := range podSuffix {
		if loc := re.FindStringIndex(app.Name); loc != nil {
			app.Name = app.Name[:loc[0]]
			break
		}
	}
	return app
}

func outsideCluster(f *flowpb.Flow) bool {
	dst := f.GetDestination()
	if dst.GetPodName() != "" {
		return false // identity 2 with pod metadata: the L7-proxy quirk
	}
	world := false
	for _, l := range dst.GetLabels() {
		switch {
		case l == "reserved:kube-apiserver":
			return false
		case l == "reserved:world", l == "reserved:world-ipv4", l == "reserved:world-ipv6",
			strings.HasPrefix(l, "cidr:"), strings.HasPrefix(l, "fqdn:"):
			world = true
		}
	}
	ip, err := netip.ParseAddr(f.GetIP().GetDestination())
	if err != nil {
		return false
	}
	for _, p := range private {
		if p.Contains(ip) {
			return false
		}
	}
	return world
}

func normalizeName(s string) string {
	return strings.ToLower(strings.TrimSuffix(s, "."))
}

type dnsEntry struct {
	name    string
	expires time.Time
}

func attribute(t testing.TB, resps []*observer.GetFlowsResponse) reference {
	t.Helper()
	ref := reference{learned: map[egressd.App][]egressd.Destination{}, denied: map[egressd.App][]egressd.Destination{}}
	answers := map[string]map[string]dnsEntry{} // namespace/pod -> IP -> name
	add := func(m map[egressd.App][]egressd.Destination, app egressd.App, d egressd.Destination) {
		if !slices.Contains(m[app], d) {
			m[app] = append(m[app], d)
		}
	}
	for _, r := range resps {
		f := r.GetFlow()
		if f == nil {
			continue
		}
		at := f.GetTime().AsTime()
		if dns := f.GetL7().GetDns(); dns != nil {
			if f.GetL7().GetType() == flowpb.L7FlowType_RESPONSE && dns.GetRcode() == 0 {
				pod := f.GetDestination().GetNamespace() + "/" + f.GetDestination().GetPodName()
				if answers[pod] == nil {
					answers[pod] = map[string]dnsEntry{}
				}
				for _, ip := range dns.GetIps() {
					answers[pod][ip] = dnsEntry{normalizeName(dns.GetQuery()), at.Add(time.Duration(dns.GetTtl()) * time.Second)}
				}
			}
			continue
		}
		if f.GetTrafficDirection() != flowpb.TrafficDirection_EGRESS || f.GetIsReply().GetValue() || !outsideCluster(f) {
			continue
		}
		d := egressd.Destination{Name: f.GetIP().GetDestination()}
		if names := f.GetDestinationNames(); len(names) > 0 {
			d.Name = normalizeName(names[0])
		} else if e, ok := answers[f.GetSource().GetNamespace()+"/"+f.GetSource().GetPodName()][d.Name]; ok && at.Before(e.expires) {
			d.Name = e.name
		}
		switch l4 := f.GetL4(); {
		case l4.GetTCP() != nil:
			d.Port, d.Protocol = uint16(l4.GetTCP().GetDestinationPort()), egressd.ProtoTCP
		case l4.GetUDP() != nil:
			d.Port, d.Protocol = uint16(l4.GetUDP().GetDestinationPort()), egressd.ProtoUDP
		default:
			t.Fatalf("world egress without TCP or UDP: %v", f)
		}
		switch f.GetVerdict() {
		case flowpb.Verdict_FORWARDED:
			add(ref.learned, referenceApp(f), d)
		case flowpb.Verdict_DROPPED:
			add(ref.denied, referenceApp(f), d)
		default:
			t.Fatalf("world egress with verdict %s: %v", f.GetVerdict(), f)
		}
	}
	for _, m := range []map[egressd.App][]egressd.Destination{ref.learned, ref.denied} {
		for _, ds := range m {
			slices.SortFunc(ds, compareDestinations)
		}
	}
	return ref
}

func compareDestinations(a, b egressd.Destination) int {
	return strings.Compare(a.String(), b.String())
}
