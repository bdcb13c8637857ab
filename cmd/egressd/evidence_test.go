package main

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/collector/hubbletest"
)

// TestReplayRanksAndIgnoresICMPAnswers replays, through the whole pipeline
// and a real database, two days of a small cluster: on the second day a pod
// answers a scan with ICMP errors (as Cilium reports them: EGRESS, not
// replies, conntrack RELATED), pings a new address, reaches a host every
// other app uses and a new one nobody does, and asks DNS for 300 encoded
// names under one parent in five minutes, while a crawler asks 400
// ordinary ones. The ICMP errors raise nothing; the lines carry severity
// and evidence, ranked as the rule table says; the slow tunnel is caught by
// the shape of its names and the crawler is not.
func TestReplayRanksAndIgnoresICMPAnswers(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	web := hubbletest.PodEndpoint("shop", "web-5d9c7b8f6d-abcde", "10.42.1.10", "k8s:app=web")
	api := hubbletest.PodEndpoint("shop", "api-6f8d9c7b5e-fghij", "10.42.1.11", "k8s:app=api")
	crawler := hubbletest.PodEndpoint("shop", "crawler-7a8b9c6d5f-klmno", "10.42.1.12", "k8s:app=crawler")
	dnsServer := hubbletest.PodEndpoint("kube-system", "coredns-5d78c9869d-xyz12", "10.42.0.10", "k8s:k8s-app=kube-dns")
	var flows []*flow.Flow
	connect := func(at time.Time, src hubbletest.Endpoint, ip string, port uint32, name string) {
		dst := hubbletest.WorldEndpoint(ip, port)
		if name != "" {
			dst.Names = []string{name}
		}
		flows = append(flows, hubbletest.NewFlow(hubbletest.FlowSpec{Time: at, Node: "node-1", Src: src, Dst: dst}))
	}
	ask := func(at time.Time, src hubbletest.Endpoint, name string) {
		flows = append(flows, hubbletest.NewFlow(hubbletest.FlowSpec{Time: at, Node: "node-1", Src: src, Dst: dnsServer, Protocol: "UDP",
			DNS: &flow.DNS{Query: name + ".", Qtypes: []string{"A"}}}))
	}
	// Day one: learning. Both apps reach the registry, web reaches the
	// payment API on 443.
	for h := range 24 {
		at := start.Add(time.Duration(h) * time.Hour)
		connect(at, web, "198.51.100.1", 443, "registry.example.com")
		connect(at, api, "198.51.100.1", 443, "registry.example.com")
		connect(at, web, "198.51.100.2", 443, "payments.example.org")
		connect(at, crawler, "198.51.100.3", 443, "www.example.net")
	}
	// Day two.
	day2 := start.Add(30 * time.Hour)
	scanner := hubbletest.WorldEndpoint("203.0.113.50", 0)
	for i, icmp := range []struct {
		proto      string
		typ, code  uint32
		src        hubbletest.Endpoint
		scannerDst hubbletest.Endpoint
	}{
		{"ICMPv4", 3, 3, web, scanner},
		{"ICMPv4", 11, 0, web, scanner},
		{"ICMPv6", 1, 4, hubbletest.PodEndpoint("shop", "web-5d9c7b8f6d-abcde", "fd00::10", "k8s:app=web"), hubbletest.WorldEndpoint("2001:db8::50", 0)},
	} {
		flows = append(flows, hubbletest.NewFlow(hubbletest.FlowSpec{Time: day2.Add(time.Duration(i) * time.Second), Node: "node-1",
			Src: icmp.src, Dst: icmp.scannerDst, Protocol: icmp.proto, ICMPType: icmp.typ, ICMPCode: icmp.code, TraceReason: flow.TraceReason_RELATED}))
	}
	flows = append(flows, hubbletest.NewFlow(hubbletest.FlowSpec{Time: day2.Add(time.Minute), Node: "node-1",
		Src: web, Dst: hubbletest.WorldEndpoint("1.1.1.1", 0), Protocol: "ICMPv4", TraceReason: flow.TraceReason_NEW}))
	connect(day2.Add(2*time.Minute), api, "198.51.100.2", 443, "payments.example.org")  // other apps use it: info
	connect(day2.Add(3*time.Minute), web, "198.51.100.2", 8443, "payments.example.org") // a new port: info
	connect(day2.Add(4*time.Minute), api, "203.0.113.77", 4444, "")                     // nobody ever: critical
	tunnelStart := day2.Add(time.Hour)
	for i := range 300 {
		at := tunnelStart.Add(time.Duration(i) * time.Second)
		sum := sha256.Sum256([]byte(strconv.Itoa(i)))
		ask(at, api, hex.EncodeToString(sum[:])[:48]+".t.evil.example")
		if i < 200 {
			ask(at, crawler, "www.site-"+strconv.Itoa(i)+".com")
			ask(at, crawler, "shop-"+strconv.Itoa(i)+".example.net")
		}
	}
	path := filepath.Join(t.TempDir(), "capture.jsonl")
	var resps []*observer.GetFlowsResponse
	for _, f := range flows {
		resps = append(resps, hubbletest.Response(f))
	}
	writeCapture(t, path, resps)

	r := run(t, dbEnv(t), "replay", "--detect", path)
	require.Equal(t, 0, r.code, r.stderr)
	require.Contains(t, r.stdout+r.stderr, "icmp_answer")
	byDest := map[string]anomalyLine{}
	for _, l := range parseAnomalies(t, r.stdout) {
		require.NotContains(t, []string{"203.0.113.50", "2001:db8::50"}, l.Destination, "an ICMP error raised %s", l.Summary)
		require.NotEqual(t, "crawler", l.App, "the crawler raised %s", l.Summary)
		byDest[l.Destination+":"+strconv.Itoa(l.Port)+"/"+l.Kind] = l
	}
	require.Len(t, byDest, 5, "%s", r.stdout)

	ping := byDest["1.1.1.1:0/novel_destination"]
	require.Equal(t, "ICMPv4", ping.Protocol)

	everyday := byDest["payments.example.org:443/novel_destination"]
	require.Equal(t, "info", everyday.Severity)
	require.Equal(t, 1, everyday.Evidence.OtherApps)
	require.Equal(t, start, everyday.Evidence.ClusterFirstSeen)
	require.Equal(t, []string{"reached by 1 other app"}, everyday.Evidence.Reasons)

	newPort := byDest["payments.example.org:8443/novel_destination"]
	require.Equal(t, "info", newPort.Severity)
	require.Equal(t, []string{"443/TCP"}, newPort.Evidence.KnownPorts)
	require.Equal(t, "registered", newPort.Evidence.PortClass)
	require.Equal(t, "example.org", newPort.Evidence.Domain)

	never := byDest["203.0.113.77:4444/novel_destination"]
	require.Equal(t, "critical", never.Severity)
	require.True(t, never.Evidence.BareIP)
	require.Zero(t, never.Evidence.OtherApps)
	require.Equal(t, start, never.Evidence.AppFirstSeen)
	require.Equal(t, []string{"api-6f8d9c7b5e-fghij"}, never.Evidence.Pods)
	require.Equal(t, []string{"never reached by any app in the cluster", "bare IP", "high port"}, never.Evidence.Reasons)

	var tunnel anomalyLine
	for k, l := range byDest {
		if l.Kind == "dns_tunnel" {
			tunnel = byDest[k]
		}
	}
	require.Equal(t, "shop/api", tunnel.Namespace+"/"+tunnel.App)
	require.Equal(t, "critical", tunnel.Severity)
	require.Equal(t, "shape", tunnel.Details["rule"])
	require.Equal(t, "evil.example", tunnel.Details["domain"])
	at, err := time.Parse(time.RFC3339Nano, tunnel.Time)
	require.NoError(t, err)
	require.Equal(t, tunnelStart.Add(99*time.Second), at, "the 100th encoded name raises it")
}
