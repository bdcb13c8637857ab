package collector_test

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/collector/hubbletest"
)

// checkSink fails the test on any observation that is not safe to store and
// to name a file after.
type checkSink struct {
	t *testing.T
}

func (s *checkSink) Observe(o *egressd.Observation) {
	s.t.Helper()
	a := o.App
	if a.Namespace == egressd.HostNamespace {
		require.True(s.t, egressd.ValidAppName(a.Name), "host app %q", a.Name)
	} else {
		require.NoError(s.t, a.Validate())
	}
	require.True(s.t, a.Cluster == "" || egressd.ValidAppName(a.Cluster) && len(a.Cluster) <= egressd.MaxClusterLen, "cluster %q", a.Cluster)
	// The baseline file of the app stays inside its directory.
	rel := filepath.Join(a.Namespace, a.Name+".json")
	require.True(s.t, filepath.IsLocal(rel), "%s is not local", rel)
	require.Equal(s.t, 2, len(strings.Split(filepath.ToSlash(rel), "/")), rel)
	require.True(s.t, o.Pod == "" || egressd.ValidPodName(o.Pod), "pod %q", o.Pod)
	require.True(s.t, o.Node == "" || egressd.ValidAppName(o.Node), "node %q", o.Node)
	name := o.Destination.Name
	require.True(s.t, utf8.ValidString(name) && len(name) <= egressd.MaxNameLen, "name %q", name)
	if _, err := netip.ParseAddr(name); err != nil {
		n, ok := egressd.NormalizeName(name)
		require.True(s.t, ok && n == name, "name %q is neither an IP nor a normalized DNS name", name)
	}
}

func (s *checkSink) Advance(string, time.Time) {}

// FuzzPipeline feeds arbitrary messages to the whole pipeline (decoding,
// DNS tracking, attribution): it never panics, everything it delivers is a
// valid app and destination whose baseline file stays in its directory.
func FuzzPipeline(f *testing.F) {
	for _, r := range syntheticResponses() {
		b, _ := proto.Marshal(r)
		f.Add(b)
	}
	add := func(s hubbletest.FlowSpec) {
		s.Time = t0
		b, _ := proto.Marshal(hubbletest.Response(hubbletest.NewFlow(s)))
		f.Add(b)
	}
	world := hubbletest.WorldEndpoint("93.184.216.34", 70000, "../../etc/passwd", "api.example.com")
	add(hubbletest.FlowSpec{Node: "c/..", Src: hubbletest.PodEndpoint("..", "web-1", "10.0.0.1", "k8s:app=.."), Dst: world})
	add(hubbletest.FlowSpec{Node: "/etc/x", Src: hubbletest.Endpoint{Labels: []string{"reserved:host"}, Identity: 1}, Dst: world})
	add(hubbletest.FlowSpec{Src: hubbletest.PodEndpoint("shop", "web-5d8f7c9b4-x2x9z", "10.0.0.1", "k8s:app=%2e%2e"), Dst: world})
	add(hubbletest.FlowSpec{Src: hubbletest.PodEndpoint("shop", "web-1", "10.0.0.1"), Protocol: "UDP", DNS: &flowpb.DNS{Query: strings.Repeat("a", 64) + ".example.com."},
		Dst: hubbletest.Endpoint{IP: "10.96.0.10", Port: 53, Namespace: "kube-system", Pod: "coredns-1"}})
	add(hubbletest.FlowSpec{Src: hubbletest.Endpoint{IP: "10.96.0.10", Port: 53, Namespace: "kube-system", Pod: "coredns-1"}, Protocol: "UDP",
		Dst: hubbletest.PodEndpoint("shop", "web-1", "10.0.0.1"), Reply: true, L7Type: flowpb.L7FlowType_RESPONSE,
		DNS: &flowpb.DNS{Query: "evil.example.com.", Ips: []string{"93.184.216.34", "../x", "::1%eth0"}, Ttl: 1 << 31}})

	// One pipeline for every input, as one long stream: building one
	// (its caches) costs more than a message.
	sink := &checkSink{}
	p, err := collector.NewPipeline(collector.DefaultOptions(), collector.NewMetrics(prometheus.NewRegistry()), sink)
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, msg []byte) {
		sink.t = t
		// Twice: the second time it is a duplicate, or goes to an address
		// the first one's DNS answer named.
		for range 2 {
			_ = p.Handle("fuzz", msg) // an error is a counted decode error
		}
	})
}
