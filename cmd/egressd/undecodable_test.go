package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"

	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/detector"
	"github.com/egressd/egressd/postgres/pgtest"
)

// garbageMsg is a GetFlows response as raw bytes.
type garbageMsg struct{ b []byte }

// garbageCodec lets a test server send bytes that are not a
// GetFlowsResponse; it is named "proto", as Hubble's codec is.
type garbageCodec struct{}

func (garbageCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(*garbageMsg).b)}, nil
}

func (garbageCodec) Unmarshal(data mem.BufferSlice, v any) error {
	v.(*garbageMsg).b = data.Materialize()
	return nil
}

func (garbageCodec) Name() string { return "proto" }

// TestServeReportsUndecodableHubble points serve at a gRPC server that
// answers GetFlows with garbage: the stream is up, but /readyz answers 503
// and says why.
func TestServeReportsUndecodableHubble(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer(grpc.ForceServerCodecV2(garbageCodec{}), grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		var req garbageMsg
		if err := stream.RecvMsg(&req); err != nil {
			return err
		}
		for {
			if err := stream.SendMsg(&garbageMsg{[]byte{0x0a, 0xff, 0xff}}); err != nil {
				return nil
			}
			time.Sleep(time.Millisecond)
		}
	}))
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	co := collector.DefaultClientOptions()
	co.Address = lis.Addr().String()
	co.DecodeWindow = 50 * time.Millisecond
	m, _ := runMain(t, ServeConfig{
		DB: pgtest.NewDB(t), Client: co, Pipeline: collector.DefaultOptions(), Aggregate: collector.DefaultAggregatorOptions(),
		Listen: "127.0.0.1:0", Detect: detector.DefaultOptions(),
	})
	url := "http://" + m.Addr(context.Background()) + "/readyz"
	var body struct {
		Status string `json:"status"`
		Reason string `json:"reason"`
	}
	waitUntil(t, "/readyz reports the undecodable stream", func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusServiceUnavailable && json.Unmarshal(b, &body) == nil &&
			strings.Contains(body.Reason, "could not be decoded")
	})
	require.Equal(t, 1.0, testutil.ToFloat64(m.CollectorMetrics().StreamUp), "the stream itself is up")
	require.Equal(t, "not ready", body.Status)
	require.Contains(t, body.Reason, lis.Addr().String())
}
