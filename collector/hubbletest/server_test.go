package hubbletest_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"github.com/cilium/cilium/api/v1/relay"
	"github.com/egressd/egressd/collector/hubbletest"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestGetFlows_Window(t *testing.T) {
	t.Parallel()
	srv, c := startServer(t, hubbletest.Options{})
	srv.Add(series(0, 10)...)

	tests := []struct {
		name string
		req  *observer.GetFlowsRequest
		want []string
	}{
		{"no limits returns the whole buffer", &observer.GetFlowsRequest{}, []string{"f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8", "f9"}},
		{"since is inclusive", &observer.GetFlowsRequest{Since: ts(at(7))}, []string{"f7", "f8", "f9"}},
		{"since between flows", &observer.GetFlowsRequest{Since: ts(at(7).Add(-time.Nanosecond))}, []string{"f7", "f8", "f9"}},
		{"since after the last flow", &observer.GetFlowsRequest{Since: ts(at(10))}, []string{}},
		{"until is inclusive", &observer.GetFlowsRequest{Until: ts(at(2))}, []string{"f0", "f1", "f2"}},
		{"since and until", &observer.GetFlowsRequest{Since: ts(at(3)), Until: ts(at(5))}, []string{"f3", "f4", "f5"}},
		{"number is the last N", &observer.GetFlowsRequest{Number: 3}, []string{"f7", "f8", "f9"}},
		{"number larger than the buffer", &observer.GetFlowsRequest{Number: 50}, []string{"f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8", "f9"}},
		{"number with first is the first N", &observer.GetFlowsRequest{Number: 3, First: true}, []string{"f0", "f1", "f2"}},
		{"first without number", &observer.GetFlowsRequest{First: true}, []string{"f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8", "f9"}},
		// Hubble's newRingReader: since takes precedence over number, so
		// number then counts forward from since, even without first.
		{"since with number counts from since", &observer.GetFlowsRequest{Since: ts(at(4)), Number: 2}, []string{"f4", "f5"}},
		{"since with number and first", &observer.GetFlowsRequest{Since: ts(at(4)), Number: 2, First: true}, []string{"f4", "f5"}},
		{"number counts matching flows only", &observer.GetFlowsRequest{
			Number:    2,
			Whitelist: []*flow.FlowFilter{{Uuid: []string{"f1", "f3", "f8"}}},
		}, []string{"f3", "f8"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := uuids(mustCollect(t, c, tt.req))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("flows (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGetFlows_UntilEndsAtFirstLaterFlow(t *testing.T) {
	t.Parallel()
	srv, c := startServer(t, hubbletest.Options{})
	// A replayed older flow after a newer one: Hubble assumes time order
	// and ends the stream at the first flow after until.
	srv.Add(series(0, 3)...)
	srv.Add(series(1, 2)...)
	got := uuids(mustCollect(t, c, &observer.GetFlowsRequest{Until: ts(at(1))}))
	require.Equal(t, []string{"f0", "f1"}, got)
}

func TestGetFlows_TimeFallsBackToFlowTime(t *testing.T) {
	t.Parallel()
	srv, c := startServer(t, hubbletest.Options{})
	for i := range 4 {
		srv.Add(&observer.GetFlowsResponse{ResponseTypes: &observer.GetFlowsResponse_Flow{Flow: egressFlow(i)}})
	}
	got := uuids(mustCollect(t, c, &observer.GetFlowsRequest{Since: ts(at(2))}))
	require.Equal(t, []string{"f2", "f3"}, got)
}

func TestGetFlows_Follow(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		req         *observer.GetFlowsRequest
		wantBacklog []string
	}{
		{"follow alone starts at the end", &observer.GetFlowsRequest{Follow: true}, nil},
		{"follow with number sends the last N first", &observer.GetFlowsRequest{Follow: true, Number: 2}, []string{"f1", "f2"}},
		{"follow with since sends everything since", &observer.GetFlowsRequest{Follow: true, Since: ts(at(1)), Number: 1}, []string{"f1", "f2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, c := startServer(t, hubbletest.Options{})
			srv.Add(series(0, 3)...)
			ctx, cancel := context.WithCancel(testContext(t))
			defer cancel()
			stream, err := c.GetFlows(ctx, tt.req)
			require.NoError(t, err)
			var got []string
			for range tt.wantBacklog {
				resp, err := stream.Recv()
				require.NoError(t, err)
				got = append(got, resp.GetFlow().GetUuid())
			}
			require.Equal(t, tt.wantBacklog, got)

			// The stream is open once the server counts it; flows added
			// from now on must arrive, in order, without reconnecting.
			require.NoError(t, srv.WaitStreams(ctx, 1))
			srv.Add(series(3, 5)...)
			srv.Add(series(5, 6)...)
			got = nil
			for range 3 {
				resp, err := stream.Recv()
				require.NoError(t, err)
				got = append(got, resp.GetFlow().GetUuid())
			}
			require.Equal(t, []string{"f3", "f4", "f5"}, got)

			cancel()
			_, err = stream.Recv()
			requireCode(t, err, codes.Canceled)
		})
	}
}

func TestGetFlows_FollowAppliesFilters(t *testing.T) {
	t.Parallel()
	srv, c := startServer(t, hubbletest.Options{})
	ctx := testContext(t)
	stream, err := c.GetFlows(ctx, &observer.GetFlowsRequest{
		Follow:    true,
		Whitelist: []*flow.FlowFilter{{Uuid: []string{"f1", "f3"}}},
	})
	require.NoError(t, err)
	require.NoError(t, srv.WaitStreams(ctx, 1))
	srv.Add(series(0, 5)...)
	for _, want := range []string{"f1", "f3"} {
		resp, err := stream.Recv()
		require.NoError(t, err)
		require.Equal(t, want, resp.GetFlow().GetUuid())
	}
}

func TestGetFlows_InvalidRequest(t *testing.T) {
	t.Parallel()
	_, c := startServer(t, hubbletest.Options{})
	unknown := &flow.FlowFilter{}
	unknown.ProtoReflect().SetUnknown([]byte{0xf8, 0x06, 0x01}) // field 111, varint 1
	tests := []struct {
		name string
		req  *observer.GetFlowsRequest
		want []string
	}{
		{"first with follow", &observer.GetFlowsRequest{First: true, Follow: true}, []string{"first cannot be specified with follow"}},
		{"unsupported field", &observer.GetFlowsRequest{Whitelist: []*flow.FlowFilter{{}, {HttpStatusCode: []string{"200"}}}}, []string{"whitelist[1]", `"http_status_code"`}},
		{"unsupported field in blacklist", &observer.GetFlowsRequest{Blacklist: []*flow.FlowFilter{{Interface: []*flow.NetworkInterface{{Name: "eth0"}}}}}, []string{"blacklist[0]", `"interface"`}},
		{"cel expression", &observer.GetFlowsRequest{Whitelist: []*flow.FlowFilter{{Experimental: &flow.FlowFilter_Experimental{CelExpression: []string{"true"}}}}}, []string{"experimental.cel_expression"}},
		{"field unknown to the server", &observer.GetFlowsRequest{Whitelist: []*flow.FlowFilter{unknown}}, []string{"unknown to this server", "111"}},
		{"bad CIDR", &observer.GetFlowsRequest{Whitelist: []*flow.FlowFilter{{DestinationIp: []string{"10.0.0.0/33"}}}}, []string{"destination_ip", "10.0.0.0/33"}},
		{"bad IP", &observer.GetFlowsRequest{Whitelist: []*flow.FlowFilter{{SourceIp: []string{"example.com"}}}}, []string{"source_ip"}},
		{"unknown protocol", &observer.GetFlowsRequest{Whitelist: []*flow.FlowFilter{{Protocol: []string{"quic"}}}}, []string{"protocol", "quic"}},
		{"empty pod", &observer.GetFlowsRequest{Whitelist: []*flow.FlowFilter{{SourcePod: []string{""}}}}, []string{"source_pod"}},
		{"bad label selector", &observer.GetFlowsRequest{Whitelist: []*flow.FlowFilter{{SourceLabel: []string{"app in (a"}}}}, []string{"source_label", "app in (a"}},
		{"bad fqdn pattern", &observer.GetFlowsRequest{Whitelist: []*flow.FlowFilter{{DestinationFqdn: []string{"exa$mple.com"}}}}, []string{"destination_fqdn"}},
		{"bad port", &observer.GetFlowsRequest{Whitelist: []*flow.FlowFilter{{DestinationPort: []string{"https"}}}}, []string{"destination_port"}},
		{"bad field mask", &observer.GetFlowsRequest{FieldMask: &fieldmaskpb.FieldMask{Paths: []string{"source.pod_name", "source.nope"}}}, []string{"field_mask", "source.nope"}},
		{"bad since", &observer.GetFlowsRequest{Since: &timestamppb.Timestamp{Nanos: -1}}, []string{"since"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := collect(t, c, tt.req)
			requireCode(t, err, codes.InvalidArgument, tt.want...)
		})
	}
}

func TestGetFlows_PassThroughResponses(t *testing.T) {
	t.Parallel()
	srv, c := startServer(t, hubbletest.Options{})
	srv.Add(series(0, 2)...)
	srv.Add(hubbletest.LostEventsResponse(flow.LostEventSource_PERF_EVENT_RING_BUFFER, 7, "kind-worker", at(2)))
	srv.Add(series(3, 4)...)
	srv.Add(hubbletest.NodeStatusResponse(relay.NodeState_NODE_UNAVAILABLE, "", at(4), "kind-worker2"))
	srv.Add(series(5, 6)...)

	tests := []struct {
		name string
		req  *observer.GetFlowsRequest
		want []string
	}{
		{"filters do not apply", &observer.GetFlowsRequest{Whitelist: []*flow.FlowFilter{{Uuid: []string{"none"}}}},
			[]string{"lost:PERF_EVENT_RING_BUFFER:7", "node_status:node_unavailable"}},
		// The window starts after the last flow before since (f3), so the
		// node status stamped at(4) is sent although it is before since.
		{"since does not apply", &observer.GetFlowsRequest{Since: ts(at(5))},
			[]string{"node_status:node_unavailable", "f5"}},
		// The stream ends at the first flow after until (f5), not before.
		{"until does not apply", &observer.GetFlowsRequest{Since: ts(at(1)), Until: ts(at(3))},
			[]string{"f1", "lost:PERF_EVENT_RING_BUFFER:7", "f3", "node_status:node_unavailable"}},
		{"not counted by number", &observer.GetFlowsRequest{Number: 2},
			[]string{"f3", "node_status:node_unavailable", "f5"}},
		{"blacklisting everything", &observer.GetFlowsRequest{Blacklist: []*flow.FlowFilter{{}}},
			[]string{"lost:PERF_EVENT_RING_BUFFER:7", "node_status:node_unavailable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := uuids(mustCollect(t, c, tt.req))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("responses (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCutStreamsAfter_NextStream(t *testing.T) {
	t.Parallel()
	srv, c := startServer(t, hubbletest.Options{})
	srv.Add(series(0, 5)...)
	srv.CutStreamsAfter(2)

	got, err := collect(t, c, &observer.GetFlowsRequest{First: true})
	requireCode(t, err, codes.Unavailable)
	require.Equal(t, []string{"f0", "f1"}, uuids(got))

	// The client resumes where it stopped; the cut was one-shot.
	got, err = collect(t, c, &observer.GetFlowsRequest{Since: got[1].GetTime()})
	require.NoError(t, err)
	require.Equal(t, []string{"f1", "f2", "f3", "f4"}, uuids(got), "since is inclusive: the resumed stream repeats f1")

	reqs := srv.Requests()
	require.Len(t, reqs, 2)
	require.Nil(t, reqs[0].GetSince())
	require.Equal(t, at(1), reqs[1].GetSince().AsTime())
}

func TestCutStreamsAfter_ActiveFollowers(t *testing.T) {
	t.Parallel()
	srv, c := startServer(t, hubbletest.Options{})
	ctx := testContext(t)
	streams := make([]observer.Observer_GetFlowsClient, 3)
	for i := range streams {
		var err error
		streams[i], err = c.GetFlows(ctx, &observer.GetFlowsRequest{Follow: true})
		require.NoError(t, err)
	}
	require.NoError(t, srv.WaitStreams(ctx, 3))
	require.Equal(t, 3, srv.ActiveStreams())

	// n == 0 ends idle followers at once.
	srv.CutStreamsAfter(0)
	for _, s := range streams {
		_, err := s.Recv()
		requireCode(t, err, codes.Unavailable, "CutStreamsAfter")
	}

	// A follower reconnecting afterwards is not cut.
	s, err := c.GetFlows(ctx, &observer.GetFlowsRequest{Follow: true})
	require.NoError(t, err)
	require.NoError(t, srv.WaitRequests(ctx, 4))
	require.NoError(t, srv.WaitStreams(ctx, 1))
	srv.Add(series(0, 3)...)
	for i := range 3 {
		resp, err := s.Recv()
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("f%d", i), resp.GetFlow().GetUuid())
	}

	// n > 0 lets that many more responses through.
	srv.CutStreamsAfter(1)
	srv.Add(series(3, 6)...)
	resp, err := s.Recv()
	require.NoError(t, err)
	require.Equal(t, "f3", resp.GetFlow().GetUuid())
	_, err = s.Recv()
	requireCode(t, err, codes.Unavailable)
}

func TestRingBuffer_Overflow(t *testing.T) {
	t.Parallel()
	srv, c := startServer(t, hubbletest.Options{Capacity: 4, NodeName: "relay-test"})
	ctx := testContext(t)
	follower, err := c.GetFlows(ctx, &observer.GetFlowsRequest{Follow: true})
	require.NoError(t, err)
	require.NoError(t, srv.WaitStreams(ctx, 1))

	// One Add of 10 into a ring of 4: the follower had read none of the 6
	// overwritten flows, so it learns about them as Hubble reports a reader
	// overtaken by the writer.
	srv.Add(series(0, 10)...)
	var got []*observer.GetFlowsResponse
	for range 5 {
		resp, err := follower.Recv()
		require.NoError(t, err)
		got = append(got, resp)
	}
	require.Equal(t, []string{"lost:HUBBLE_RING_BUFFER:6", "f6", "f7", "f8", "f9"}, uuids(got))
	require.Equal(t, "relay-test", got[0].GetNodeName())
	require.NotNil(t, got[0].GetTime())

	// A follower that keeps up loses nothing.
	srv.Add(series(10, 12)...)
	for _, want := range []string{"f10", "f11"} {
		resp, err := follower.Recv()
		require.NoError(t, err)
		require.Equal(t, want, resp.GetFlow().GetUuid())
	}

	// A new reader only sees what the ring holds, without losses.
	require.Equal(t, []string{"f8", "f9", "f10", "f11"}, uuids(mustCollect(t, c, &observer.GetFlowsRequest{})))

	status, err := c.ServerStatus(ctx, &observer.ServerStatusRequest{})
	require.NoError(t, err)
	require.Equal(t, uint64(4), status.GetNumFlows())
	require.Equal(t, uint64(4), status.GetMaxFlows())
	require.Equal(t, uint64(12), status.GetSeenFlows())
}

func TestFieldMask(t *testing.T) {
	t.Parallel()
	srv, c := startServer(t, hubbletest.Options{})
	f := egressFlow(0)
	srv.Add(hubbletest.Response(f))

	tests := []struct {
		name     string
		paths    []string
		want     *flow.Flow
		wantTime bool
	}{
		{
			name:  "leaves and nested leaves",
			paths: []string{"time", "node_name", "source.pod_name", "destination.identity", "l4.TCP.destination_port", "destination_names"},
			want: &flow.Flow{
				Time:             f.GetTime(),
				NodeName:         "kind-worker",
				Source:           &flow.Endpoint{PodName: "app-0"},
				Destination:      &flow.Endpoint{Identity: hubbletest.IdentityWorld},
				L4:               &flow.Layer4{Protocol: &flow.Layer4_TCP{TCP: &flow.TCP{DestinationPort: 443}}},
				DestinationNames: []string{"api.github.com"},
			},
			wantTime: true,
		},
		{
			// As Hubble: without "time" in the mask the response carries
			// no time either, and an inactive oneof branch stays unset.
			name:  "without time",
			paths: []string{"IP", "l4.UDP.destination_port", "source"},
			want: &flow.Flow{
				IP:     f.GetIP(),
				L4:     &flow.Layer4{},
				Source: f.GetSource(),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := mustCollect(t, c, &observer.GetFlowsRequest{FieldMask: &fieldmaskpb.FieldMask{Paths: tt.paths}})
			require.Len(t, got, 1)
			if diff := cmp.Diff(tt.want, got[0].GetFlow(), protocmp.Transform()); diff != "" {
				t.Errorf("masked flow (-want +got):\n%s", diff)
			}
			require.Equal(t, tt.wantTime, got[0].GetTime() != nil)
		})
	}
}

func TestUnixSocket(t *testing.T) {
	t.Parallel()
	// t.TempDir can exceed the 108-byte limit of socket paths; MkdirTemp
	// under the default temp dir keeps it short.
	dir, err := os.MkdirTemp("", "hubbletest")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	srv := hubbletest.NewServer(hubbletest.Options{})
	addr, err := srv.StartAt("unix://" + filepath.Join(dir, "hubble.sock"))
	require.NoError(t, err)
	t.Cleanup(srv.Stop)
	require.Equal(t, "unix://"+filepath.Join(dir, "hubble.sock"), addr)
	require.Equal(t, addr, srv.Addr())

	srv.Add(series(0, 2)...)
	c := dial(t, addr)
	require.Equal(t, []string{"f0", "f1"}, uuids(mustCollect(t, c, &observer.GetFlowsRequest{})))
}

func TestStartAt_BadAddress(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"unix://relative.sock", "unix:", "256.0.0.1:0"} {
		srv := hubbletest.NewServer(hubbletest.Options{})
		_, err := srv.StartAt(addr)
		require.Error(t, err, addr)
		srv.Stop()
	}
	srv := hubbletest.NewServer(hubbletest.Options{Capacity: -1})
	_, err := srv.Start()
	require.ErrorContains(t, err, "Options.Capacity")
	srv.Stop()
}

func TestStart_Twice(t *testing.T) {
	t.Parallel()
	srv, _ := startServer(t, hubbletest.Options{})
	_, err := srv.Start()
	require.ErrorContains(t, err, "already started")
	srv.Stop()
	_, err = srv.Start()
	require.ErrorContains(t, err, "stopped")
}

func TestStop_EndsFollowers(t *testing.T) {
	t.Parallel()
	srv, c := startServer(t, hubbletest.Options{})
	ctx := testContext(t)
	var streams []observer.Observer_GetFlowsClient
	for range 3 {
		s, err := c.GetFlows(ctx, &observer.GetFlowsRequest{Follow: true})
		require.NoError(t, err)
		streams = append(streams, s)
	}
	require.NoError(t, srv.WaitStreams(ctx, 3))

	// Stop returns only after every handler has returned.
	stopped := make(chan struct{})
	go func() {
		srv.Stop()
		close(stopped)
	}()
	for _, s := range streams {
		_, err := s.Recv()
		requireCode(t, err, codes.Unavailable)
	}
	select {
	case <-stopped:
	case <-ctx.Done():
		t.Fatal("Stop did not return")
	}
	require.Equal(t, 0, srv.ActiveStreams())
	require.Error(t, srv.WaitStreams(ctx, 1), "WaitStreams after Stop")
	srv.Stop() // idempotent
	require.NoError(t, srv.Close())
}

func TestWaitStreams_Context(t *testing.T) {
	t.Parallel()
	srv, _ := startServer(t, hubbletest.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.ErrorIs(t, srv.WaitStreams(ctx, 1), context.Canceled)
	require.ErrorIs(t, srv.WaitRequests(ctx, 1), context.Canceled)
	require.NoError(t, srv.WaitStreams(ctx, 0))
}

func TestServerStatusAndNodes(t *testing.T) {
	t.Parallel()
	now := base
	var mu sync.Mutex
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	srv, c := startServer(t, hubbletest.Options{Capacity: 100, NodeName: "kind-control-plane", Version: "v1.20.2", Now: clock})
	srv.Add(series(0, 3)...)
	srv.Add(hubbletest.LostEventsResponse(flow.LostEventSource_PERF_EVENT_RING_BUFFER, 1, "n", at(3)))
	mu.Lock()
	now = now.Add(90 * time.Second)
	mu.Unlock()
	ctx := testContext(t)

	st, err := c.ServerStatus(ctx, &observer.ServerStatusRequest{})
	require.NoError(t, err)
	want := &observer.ServerStatusResponse{NumFlows: 4, MaxFlows: 100, SeenFlows: 3, UptimeNs: uint64(90 * time.Second), Version: "v1.20.2"}
	if diff := cmp.Diff(want, st, protocmp.Transform()); diff != "" {
		t.Errorf("ServerStatus (-want +got):\n%s", diff)
	}

	nodes, err := c.GetNodes(ctx, &observer.GetNodesRequest{})
	require.NoError(t, err)
	wantNodes := &observer.GetNodesResponse{Nodes: []*observer.Node{{
		Name: "kind-control-plane", Version: "v1.20.2", Address: srv.Addr(), State: relay.NodeState_NODE_CONNECTED,
		Tls: &observer.TLS{}, UptimeNs: uint64(90 * time.Second), NumFlows: 4, MaxFlows: 100, SeenFlows: 3,
	}}}
	if diff := cmp.Diff(wantNodes, nodes, protocmp.Transform()); diff != "" {
		t.Errorf("GetNodes (-want +got):\n%s", diff)
	}

	_, err = c.GetNamespaces(ctx, &observer.GetNamespacesRequest{})
	requireCode(t, err, codes.Unimplemented)
}

func TestTLS(t *testing.T) {
	t.Parallel()
	cert, pool := selfSignedCert(t)
	srv := hubbletest.NewServer(hubbletest.Options{TLSConfig: &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}})
	addr, err := srv.Start()
	require.NoError(t, err)
	t.Cleanup(srv.Stop)
	srv.Add(series(0, 1)...)

	c := dial(t, addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   "hubble-relay.hubbletest",
		MinVersion:   tls.VersionTLS13,
	})))
	require.Equal(t, []string{"f0"}, uuids(mustCollect(t, c, &observer.GetFlowsRequest{})))

	// Without a client certificate the mTLS server refuses the stream.
	noCert := dial(t, addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: pool, ServerName: "hubble-relay.hubbletest", MinVersion: tls.VersionTLS13,
	})))
	_, err = collect(t, noCert, &observer.GetFlowsRequest{})
	requireCode(t, err, codes.Unavailable)
}

// TestConcurrentFollowers checks, under -race, that many followers each get
// every flow once and in order while flows are added concurrently.
func TestConcurrentFollowers(t *testing.T) {
	t.Parallel()
	const followers, writers, perWriter = 4, 4, 150
	srv, c := startServer(t, hubbletest.Options{})
	ctx := testContext(t)

	var g errgroup.Group
	for range followers {
		s, err := c.GetFlows(ctx, &observer.GetFlowsRequest{Follow: true})
		require.NoError(t, err)
		g.Go(func() error {
			next := make(map[int]int) // writer -> next sequence expected
			for range writers * perWriter {
				resp, err := s.Recv()
				if err != nil {
					return err
				}
				var w, i int
				if _, err := fmt.Sscanf(resp.GetFlow().GetUuid(), "w%d-%d", &w, &i); err != nil {
					return err
				}
				if i != next[w] {
					return fmt.Errorf("writer %d: got flow %d, want %d", w, i, next[w])
				}
				next[w]++
			}
			return nil
		})
	}
	require.NoError(t, srv.WaitStreams(ctx, followers))
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				f := egressFlow(i)
				f.Uuid = fmt.Sprintf("w%d-%d", w, i)
				srv.Add(hubbletest.Response(f))
			}
		})
	}
	wg.Wait()
	require.NoError(t, g.Wait())
}

// selfSignedCert returns a certificate valid as both server and client
// certificate for "hubble-relay.hubbletest", and a pool trusting it.
func selfSignedCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "hubble-relay.hubbletest"},
		DNSNames:              []string{"hubble-relay.hubbletest"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
