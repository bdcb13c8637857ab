package flowgen_test

import (
	"bufio"
	"bytes"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector/flowgen"
)

func TestGenerateIsDeterministic(t *testing.T) {
	t.Parallel()
	s := flowgen.HomeLab(captureStart, 12*time.Hour)
	a, err := s.Generate()
	require.NoError(t, err)
	b, err := s.Generate()
	require.NoError(t, err)
	require.Len(t, b, len(a))
	for i := range a {
		require.True(t, proto.Equal(a[i], b[i]), "response %d differs", i)
	}
	require.Equal(t, jsonLines(t, a), jsonLines(t, b), "two writes of equal responses differ")

	var legacyA, legacyB bytes.Buffer
	require.NoError(t, flowgen.WriteLegacyLines(&legacyA, a[:2000]))
	require.NoError(t, flowgen.WriteLegacyLines(&legacyB, b[:2000]))
	require.Equal(t, legacyA.Bytes(), legacyB.Bytes())

	s.Seed = 2
	c, err := s.Generate()
	require.NoError(t, err)
	require.NotEqual(t, jsonLines(t, a[:100]), jsonLines(t, c[:100]), "another seed must give other flows")
}

// TestJSONLinesRoundTrip proves every line is a valid GetFlowsResponse:
// unknown fields are an error, and decoding gives back what was written.
func TestJSONLinesRoundTrip(t *testing.T) {
	t.Parallel()
	resps := weekResponses(t)
	sc := bufio.NewScanner(bytes.NewReader(weekLines(t)))
	sc.Buffer(nil, 1<<20)
	i := 0
	for sc.Scan() {
		line := sc.Bytes()
		require.Less(t, i, len(resps), "more lines than responses")
		require.True(t, bytes.HasPrefix(line, []byte(`{"`)), "line %d is not one compact object: %.80s", i+1, line)
		var got observer.GetFlowsResponse
		require.NoError(t, protojson.UnmarshalOptions{DiscardUnknown: false}.Unmarshal(line, &got), "line %d", i+1)
		require.True(t, proto.Equal(resps[i], &got), "line %d does not decode to response %d", i+1, i)
		i++
	}
	require.NoError(t, sc.Err())
	require.Equal(t, len(resps), i)
}

func TestJSONLinesShape(t *testing.T) {
	t.Parallel()
	resps := weekResponses(t)
	lines := bytes.Split(bytes.TrimSuffix(jsonLines(t, resps[:50]), []byte("\n")), []byte("\n"))
	for i, line := range lines {
		require.True(t, bytes.HasPrefix(line, []byte(`{"flow":{"time":"`)) || bytes.HasPrefix(line, []byte(`{"lost_events"`)) ||
			bytes.HasPrefix(line, []byte(`{"node_status"`)), "line %d: %.80s", i+1, line)
		require.Contains(t, string(line), `"node_name":"`)
		require.NotContains(t, string(line), `": `, "protojson's random spaces must be compacted away")
		require.NotContains(t, string(line), `, "`, "protojson's random spaces must be compacted away")
	}
	require.Contains(t, string(lines[0]), `"IP":{"source":`, "proto field names, not JSON names")
}

func TestLegacyLines(t *testing.T) {
	t.Parallel()
	// A day holds every kind of response, lost events included.
	s := flowgen.HomeLab(captureStart, 24*time.Hour)
	s.LostEvents = 4
	resps, err := s.Generate()
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, flowgen.WriteLegacyLines(&buf, resps))
	sc := bufio.NewScanner(&buf)
	sc.Buffer(nil, 1<<20)
	var flows, lost int
	for sc.Scan() {
		line := sc.Bytes()
		if bytes.HasPrefix(line, []byte(`{"time":`)) {
			var f flowpb.Flow
			require.NoError(t, protojson.Unmarshal(line, &f))
			flows++
			continue
		}
		var ev flowpb.LostEvent
		require.NoError(t, protojson.Unmarshal(line, &ev), "%s", line)
		lost++
	}
	require.NoError(t, sc.Err())
	require.Positive(t, lost)
	var wantFlows, wantLost int
	for _, r := range resps {
		switch {
		case r.GetFlow() != nil:
			wantFlows++
		case r.GetLostEvents() != nil:
			wantLost++
		}
	}
	require.Equal(t, wantFlows, flows)
	require.Equal(t, wantLost, lost)
}

// TestTruth attributes the week's flows with a reference implementation of
// the attribution rules (package collector) and compares the result with Truth: every destination in
// Truth appears, forwarded, as non-reply egress of that app, and nothing
// else does.
func TestTruth(t *testing.T) {
	t.Parallel()
	ref := attribute(t, weekResponses(t))
	wantLearned := map[egressd.App][]egressd.Destination{}
	wantDenied := map[egressd.App][]egressd.Destination{}
	for _, e := range flowgen.Truth {
		require.True(t, slices.IsSortedFunc(e.Learn, compareDestinations), "%s: Learn must be sorted", e.App)
		if len(e.Learn) > 0 {
			wantLearned[e.App] = e.Learn
		}
		if len(e.Denied) > 0 {
			wantDenied[e.App] = e.Denied
		}
	}
	if diff := cmp.Diff(wantLearned, ref.learned); diff != "" {
		t.Errorf("learned destinations (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantDenied, ref.denied); diff != "" {
		t.Errorf("denied destinations (-want +got):\n%s", diff)
	}
}

// TestTruthHoldsForADay: Truth holds for any window of at least a day.
func TestTruthHoldsForADay(t *testing.T) {
	t.Parallel()
	s := flowgen.HomeLab(captureStart.Add(5*time.Hour+17*time.Minute), 24*time.Hour)
	resps, err := s.Generate()
	require.NoError(t, err)
	ref := attribute(t, resps)
	for _, e := range flowgen.Truth {
		if diff := cmp.Diff(e.Learn, ref.learned[e.App]); diff != "" {
			t.Errorf("%s (-want +got):\n%s", e.App, diff)
		}
	}
}

func TestTimesSortedAndInWindow(t *testing.T) {
	t.Parallel()
	resps := weekResponses(t)
	end := captureStart.Add(week)
	var latest time.Time
	seen := map[string]*observer.GetFlowsResponse{}
	for i, r := range resps {
		at := r.GetTime().AsTime()
		require.False(t, at.Before(captureStart) || !at.Before(end), "response %d at %s is outside the window", i, at)
		if f := r.GetFlow(); f != nil {
			require.Equal(t, f.GetTime().AsTime(), at, "response %d: flow and response times differ", i)
			require.Equal(t, f.GetNodeName(), r.GetNodeName(), "response %d", i)
			if first, dup := seen[f.GetUuid()]; dup {
				// A replay: it may arrive after later flows, by a few seconds.
				require.True(t, proto.Equal(first, r), "response %d reuses uuid %s", i, f.GetUuid())
				require.LessOrEqual(t, latest.Sub(at), 5*time.Second, "response %d: replayed too late", i)
				continue
			}
			seen[f.GetUuid()] = r
		}
		require.False(t, at.Before(latest), "response %d at %s comes after %s", i, at, latest)
		latest = at
	}
}

func TestUUIDsUniqueExceptReplays(t *testing.T) {
	t.Parallel()
	resps := weekResponses(t)
	seen := map[string]*observer.GetFlowsResponse{}
	flows, dups := 0, 0
	for i, r := range resps {
		f := r.GetFlow()
		if f == nil {
			continue
		}
		flows++
		require.Len(t, f.GetUuid(), 36, "response %d", i)
		require.Equal(t, byte('4'), f.GetUuid()[14], "response %d: want a version 4 UUID", i)
		if first, ok := seen[f.GetUuid()]; ok {
			require.True(t, proto.Equal(first, r), "response %d: uuid %s names two different flows", i, f.GetUuid())
			dups++
			continue
		}
		seen[f.GetUuid()] = r
	}
	rate := float64(dups) / float64(flows)
	require.InDelta(t, 0.01, rate, 0.004, "%d replays in %d flows", dups, flows)
}

func TestVolume(t *testing.T) {
	t.Parallel()
	n := len(weekResponses(t))
	require.GreaterOrEqual(t, n, 20_000)
	require.LessOrEqual(t, n, 60_000)
}

// TestEveryConnectionHasReplies: each SYN a pod or node sends to the world
// gets a SYN-ACK back, marked is_reply, on the same node.
func TestEveryConnectionHasReplies(t *testing.T) {
	t.Parallel()
	type tuple struct{ node, src, dst string }
	replies := map[tuple]bool{}
	var syns []tuple
	for _, r := range weekResponses(t) {
		f := r.GetFlow()
		tcp := f.GetL4().GetTCP()
		if tcp == nil || f.GetEventType().GetType() != 4 {
			continue
		}
		src := f.GetIP().GetSource() + ":" + itoa(tcp.GetSourcePort())
		dst := f.GetIP().GetDestination() + ":" + itoa(tcp.GetDestinationPort())
		switch flags := tcp.GetFlags(); {
		case flags.GetSYN() && !flags.GetACK() && slices.Contains(f.GetDestination().GetLabels(), "reserved:world"):
			require.False(t, f.GetIsReply().GetValue(), "%v", f)
			require.NotNil(t, f.GetIsReply(), "%v", f)
			syns = append(syns, tuple{f.GetNodeName(), src, dst})
		case flags.GetSYN() && flags.GetACK():
			require.True(t, f.GetIsReply().GetValue() || f.GetTraceObservationPoint() == flowpb.TraceObservationPoint_TO_OVERLAY, "%v", f)
			replies[tuple{f.GetNodeName(), dst, src}] = true
		}
	}
	require.NotEmpty(t, syns)
	for _, s := range syns {
		require.True(t, replies[s], "no SYN-ACK for %v", s)
	}
}

func itoa(n uint32) string {
	b := make([]byte, 0, 5)
	for {
		b = append(b, byte('0'+n%10))
		n /= 10
		if n == 0 {
			break
		}
	}
	slices.Reverse(b)
	return string(b)
}

// TestTrapsPresent makes sure the week exercises every trap the collector
// must handle, so that TestTruth proves something.
func TestTrapsPresent(t *testing.T) {
	t.Parallel()
	resps := weekResponses(t)
	count := map[string]int{}
	restic := map[string]bool{}
	for _, r := range resps {
		switch {
		case r.GetLostEvents() != nil:
			count["lost_events"]++
			continue
		case r.GetNodeStatus() != nil:
			count["node_status"]++
			continue
		}
		f := r.GetFlow()
		src, dst := f.GetSource(), f.GetDestination()
		egress := f.GetTrafficDirection() == flowpb.TrafficDirection_EGRESS
		notReply := !f.GetIsReply().GetValue()
		if dst.GetIdentity() == 2 && dst.GetPodName() != "" && egress && notReply {
			count["identity 2 with pod metadata"]++
		}
		if slices.Contains(dst.GetLabels(), "reserved:kube-apiserver") && egress && notReply {
			count["kube-apiserver with world label"]++
		}
		if strings.HasPrefix(f.GetIP().GetDestination(), "192.168.1.1") && dst.GetIdentity() == 2 && egress && notReply {
			count["node IP as world"]++
		}
		if src.GetIdentity() == 2 && f.GetIsReply().GetValue() {
			count["reply from world"]++
		}
		if f.GetTrafficDirection() == flowpb.TrafficDirection_INGRESS && f.GetIsReply().GetValue() && dst.GetIdentity() == 2 {
			count["ingress reply to world"]++
		}
		for _, n := range f.GetDestinationNames() {
			if n != strings.ToLower(n) {
				count["upper-case name"]++
			}
			if strings.HasSuffix(n, ".") {
				count["trailing-dot name"]++
			}
		}
		if dst.GetIdentity() >= 1<<24 && slices.ContainsFunc(dst.GetLabels(), func(l string) bool { return strings.HasPrefix(l, "fqdn:") }) {
			count["fqdn identity"]++
		}
		if dst.GetIdentity() >= 1<<24 && slices.ContainsFunc(dst.GetLabels(), func(l string) bool { return strings.HasPrefix(l, "cidr:") }) {
			count["cidr identity"]++
		}
		if dst.GetIdentity() == 9 {
			count["world-ipv4 identity"]++
		}
		if dns := f.GetL7().GetDns(); dns != nil && f.GetL7().GetType() == flowpb.L7FlowType_RESPONSE {
			require.Equal(t, "proxy", dns.GetObservationSource())
			require.True(t, f.GetIsReply().GetValue())
			require.Equal(t, flowpb.TrafficDirection_EGRESS, f.GetTrafficDirection())
			if len(dns.GetCnames()) > 0 {
				count["CNAME chain"]++
			}
			if dns.GetRcode() == 3 {
				count["NXDOMAIN"]++
			}
			if strings.HasSuffix(dns.GetQuery(), ".cluster.local.") && len(dns.GetIps()) > 0 {
				count["cluster-local answer"]++
			}
		}
		if f.GetEventType().GetType() == 1 {
			require.Nil(t, f.GetIsReply(), "drops carry no is_reply")
			require.Equal(t, flowpb.DropReason_POLICY_DENIED, f.GetDropReasonDesc())
			count["policy drop"]++
		}
		if slices.Contains(src.GetLabels(), "reserved:host") {
			require.Equal(t, "homelab/k8s-node-2", f.GetNodeName())
			count["host network"]++
		}
		if strings.HasPrefix(src.GetPodName(), "home-assistant-") {
			require.Empty(t, src.GetWorkloads())
			count["no workloads"]++
		}
		if strings.HasPrefix(src.GetPodName(), "restic-backup-") {
			require.Empty(t, src.GetWorkloads())
			restic[src.GetPodName()] = true
		}
		if f.GetEventType().GetType() == 5 && f.GetVerdict() == flowpb.Verdict_FORWARDED && len(f.GetEgressAllowedBy()) > 0 {
			count["policy verdict"]++
		}
	}
	count["restic pods"] = len(restic)
	for _, trap := range []string{
		"lost_events", "node_status", "identity 2 with pod metadata", "kube-apiserver with world label",
		"node IP as world", "reply from world", "ingress reply to world", "upper-case name", "trailing-dot name",
		"fqdn identity", "cidr identity", "world-ipv4 identity", "CNAME chain", "NXDOMAIN", "cluster-local answer",
		"policy drop", "host network", "no workloads", "policy verdict",
	} {
		require.Positive(t, count[trap], trap)
	}
	require.Equal(t, 7, count["restic pods"], "a new backup pod each night")
}

// TestExtraChangesNothingElse plants one event of each kind and checks that
// every routine response is still there, unchanged, and the planted ones
// show up.
func TestExtraChangesNothingElse(t *testing.T) {
	t.Parallel()
	s := flowgen.HomeLab(captureStart, 36*time.Hour)
	base, err := s.Generate()
	require.NoError(t, err)

	at := captureStart.Add(30 * time.Hour)
	s.Extra = []flowgen.Event{
		flowgen.NovelName(at, "media/recyclarr", "exfil.example.net", netip.MustParseAddr("198.51.100.7"), 443),
		flowgen.DNSOnlyName(at.Add(time.Minute), "home/home-assistant", "updates.example.org", netip.MustParseAddr("198.51.100.8"), 443),
		flowgen.BareIP(at.Add(2*time.Minute), "backup/restic-backup", netip.MustParseAddr("198.51.100.9"), 8443),
		flowgen.DroppedAttempt(at.Add(3*time.Minute), "media/sonarr", netip.MustParseAddr("198.51.100.10"), 6667),
		flowgen.VolumeBurst(at.Add(4*time.Minute), "media/recyclarr", s.Remote("api.github.com"), 443, flowgen.NamesInFlow, 200, 10*time.Minute),
		flowgen.BareIP(at.Add(5*time.Minute), "host/k8s-node-1", netip.MustParseAddr("198.51.100.11"), 22),
		flowgen.VolumeBurst(at.Add(6*time.Minute), "media/recyclarr", s.Remote("raw.githubusercontent.com"), 443, flowgen.NamesInDNSOnly, 100, 20*time.Minute),
	}
	planted, err := s.Generate()
	require.NoError(t, err)

	byUUID := map[string]*observer.GetFlowsResponse{}
	for _, r := range planted {
		if f := r.GetFlow(); f != nil {
			byUUID[f.GetUuid()] = r
		}
	}
	for i, r := range base {
		if f := r.GetFlow(); f != nil {
			require.True(t, proto.Equal(r, byUUID[f.GetUuid()]), "routine response %d changed", i)
		}
	}
	require.Greater(t, len(planted), len(base)+200*7, "the burst alone adds 200 connections")

	ref := attribute(t, planted)
	// A burst longer than the answers' TTL resolves again: every address
	// stays named.
	recyclarr := egressd.App{Cluster: "homelab", Namespace: "media", Name: "recyclarr"}
	require.Equal(t, []egressd.Destination{
		{Name: "api.github.com", Port: 443, Protocol: "TCP"},
		{Name: "exfil.example.net", Port: 443, Protocol: "TCP"},
		{Name: "raw.githubusercontent.com", Port: 443, Protocol: "TCP"},
	}, ref.learned[recyclarr])
	appOf := func(ns, name string) egressd.App {
		return egressd.App{Cluster: "homelab", Namespace: ns, Name: name}
	}
	for _, c := range []struct {
		app    egressd.App
		dest   egressd.Destination
		denied bool
	}{
		{appOf("media", "recyclarr"), egressd.Destination{Name: "exfil.example.net", Port: 443, Protocol: "TCP"}, false},
		{appOf("home", "home-assistant"), egressd.Destination{Name: "updates.example.org", Port: 443, Protocol: "TCP"}, false},
		{appOf("backup", "restic-backup"), egressd.Destination{Name: "198.51.100.9", Port: 8443, Protocol: "TCP"}, false},
		{appOf("media", "sonarr"), egressd.Destination{Name: "198.51.100.10", Port: 6667, Protocol: "TCP"}, true},
		{appOf("host", "k8s-node-1"), egressd.Destination{Name: "198.51.100.11", Port: 22, Protocol: "TCP"}, false},
	} {
		m := ref.learned
		if c.denied {
			m = ref.denied
		}
		require.Contains(t, m[c.app], c.dest, "%s", c.app)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	valid := func() flowgen.Scenario { return flowgen.HomeLab(captureStart, time.Hour) }
	for _, tc := range []struct {
		name   string
		change func(*flowgen.Scenario)
		want   string
	}{
		{"no start", func(s *flowgen.Scenario) { s.Start = time.Time{} }, "Scenario.Start"},
		{"no duration", func(s *flowgen.Scenario) { s.Duration = 0 }, "Scenario.Duration"},
		{"no nodes", func(s *flowgen.Scenario) { s.Nodes = nil }, "Scenario.Nodes"},
		{"duplicate rate", func(s *flowgen.Scenario) { s.DuplicateRate = 2 }, "Scenario.DuplicateRate"},
		{"pod on unknown node", func(s *flowgen.Scenario) { s.Workloads[1].Pods[0].Node = "k8s-node-9" }, `Node "k8s-node-9"`},
		{"unknown DNS server", func(s *flowgen.Scenario) { s.DNS.Server = "kube-system/kube-dns" }, "Scenario.DNS.Server"},
		{"unknown service", func(s *flowgen.Scenario) {
			s.Workloads[1].Routines[0].Do = append(s.Workloads[1].Routines[0].Do, flowgen.CallService{To: "media/radarr"})
		}, `"media/radarr"`},
		{"extra from unknown app", func(s *flowgen.Scenario) {
			s.Extra = []flowgen.Event{flowgen.BareIP(captureStart, "media/radarr", netip.MustParseAddr("198.51.100.1"), 443)}
		}, "Scenario.Extra[0].Source"},
		{"lookup from host", func(s *flowgen.Scenario) {
			s.Nodes[0].Routines = []flowgen.Routine{{Every: time.Hour, Do: []flowgen.Action{flowgen.Lookup{Of: &flowgen.Remote{Name: "example.com", NXDomain: true}}}}}
		}, "host-network traffic can only be Connect"},
		{"connect without port", func(s *flowgen.Scenario) {
			s.Extra = []flowgen.Event{{At: captureStart, Source: "media/recyclarr", Do: []flowgen.Action{flowgen.Connect{To: &flowgen.Remote{IPs: []netip.Addr{netip.MustParseAddr("198.51.100.1")}, Identity: flowgen.World()}, Names: flowgen.NoNames}}}}
		}, "Connect.Port"},
		{"cronjob with pods", func(s *flowgen.Scenario) { s.Workloads[5].Pods = []flowgen.Pod{{Name: "x", Node: "k8s-node-1"}} }, "CronJob"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := valid()
			tc.change(&s)
			err := s.Validate()
			require.ErrorContains(t, err, tc.want)
			_, err = s.Generate()
			require.ErrorContains(t, err, tc.want)
		})
	}
	s := valid()
	require.NoError(t, s.Validate())
}
