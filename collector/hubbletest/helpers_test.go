package hubbletest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"github.com/egressd/egressd/collector/hubbletest"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestMain fails the run when goroutines outlive the tests: every server is
// stopped and every client closed in t.Cleanup, so the goroutines must
// return to those that ran before the tests.
func TestMain(m *testing.M) {
	before := len(goroutines())
	code := m.Run()
	if code == 0 {
		if err := waitGoroutines(before, 10*time.Second); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// goroutines returns the stacks of the running goroutines, except the
// signal handler that fuzzing mode (os/signal.Notify) starts and never
// stops.
func goroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, "os/signal.signal_recv") {
			out = append(out, g)
		}
	}
	return out
}

// waitGoroutines polls until at most n goroutines run, or fails with the
// stacks of the survivors after timeout.
func waitGoroutines(n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		gs := goroutines()
		if len(gs) <= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("goroutine leak: %d goroutines still running, want <= %d:\n\n%s", len(gs), n, strings.Join(gs, "\n\n"))
		}
		<-tick.C
	}
}

// testTimeout bounds every wait in these tests, so that a bug shows up as a
// failure naming what was awaited rather than as a hung test binary.
const testTimeout = 30 * time.Second

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// startServer starts a server on loopback TCP and returns it with a client
// made by the real generated code.
func startServer(t *testing.T, opts hubbletest.Options) (*hubbletest.Server, observer.ObserverClient) {
	t.Helper()
	srv := hubbletest.NewServer(opts)
	addr, err := srv.Start()
	require.NoError(t, err)
	t.Cleanup(srv.Stop)
	return srv, dial(t, addr)
}

func dial(t *testing.T, addr string, opts ...grpc.DialOption) observer.ObserverClient {
	t.Helper()
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(addr, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return observer.NewObserverClient(conn)
}

// collect runs a GetFlows call that must end by itself and returns what it
// received and the status it ended with (nil for a clean end).
func collect(t *testing.T, c observer.ObserverClient, req *observer.GetFlowsRequest) ([]*observer.GetFlowsResponse, error) {
	t.Helper()
	stream, err := c.GetFlows(testContext(t), req)
	if err != nil {
		return nil, err
	}
	var out []*observer.GetFlowsResponse
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, resp)
	}
}

// mustCollect is collect for calls that must succeed.
func mustCollect(t *testing.T, c observer.ObserverClient, req *observer.GetFlowsRequest) []*observer.GetFlowsResponse {
	t.Helper()
	out, err := collect(t, c, req)
	require.NoError(t, err)
	return out
}

// requireCode asserts err is a gRPC status with code, whose message
// contains each of substrs.
func requireCode(t *testing.T, err error, code codes.Code, substrs ...string) {
	t.Helper()
	require.Error(t, err)
	st, ok := status.FromError(err)
	require.True(t, ok, "not a gRPC status: %v", err)
	require.Equal(t, code, st.Code(), "status: %v", err)
	for _, s := range substrs {
		require.Contains(t, st.Message(), s)
	}
}

// base is the time of the first test flow.
var base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// at returns base plus i seconds.
func at(i int) time.Time { return base.Add(time.Duration(i) * time.Second) }

// egressFlow is flow number i of a simple series: pod media/app-<i> to a
// world address, at at(i), with uuid "f<i>".
func egressFlow(i int) *flow.Flow {
	return hubbletest.NewFlow(hubbletest.FlowSpec{
		Time: at(i),
		Node: "kind-worker",
		UUID: fmt.Sprintf("f%d", i),
		Src:  hubbletest.PodEndpoint("media", fmt.Sprintf("app-%d", i), "10.0.1.5", "k8s:app=app"),
		Dst:  hubbletest.WorldEndpoint("140.82.112.3", 443, "api.github.com"),
	})
}

// series returns responses for egressFlow(from) .. egressFlow(to-1).
func series(from, to int) []*observer.GetFlowsResponse {
	var out []*observer.GetFlowsResponse
	for i := from; i < to; i++ {
		out = append(out, hubbletest.Response(egressFlow(i)))
	}
	return out
}

// uuids summarizes responses: a flow by its uuid, other responses by type.
func uuids(resps []*observer.GetFlowsResponse) []string {
	out := []string{}
	for _, r := range resps {
		switch {
		case r.GetFlow() != nil:
			out = append(out, r.GetFlow().GetUuid())
		case r.GetLostEvents() != nil:
			out = append(out, fmt.Sprintf("lost:%s:%d", r.GetLostEvents().GetSource(), r.GetLostEvents().GetNumEventsLost()))
		case r.GetNodeStatus() != nil:
			out = append(out, "node_status:"+strings.ToLower(r.GetNodeStatus().GetStateChange().String()))
		default:
			out = append(out, "?")
		}
	}
	return out
}

func ts(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }
