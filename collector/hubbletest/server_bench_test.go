package hubbletest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"github.com/egressd/egressd/collector/hubbletest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
)

// rawCodec receives messages as bytes without decoding them, so that
// BenchmarkGetFlows measures what the server can deliver rather than the
// client's protobuf decoding.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return encoding.GetCodecV2("proto").Marshal(v)
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if b, ok := v.(*[]byte); ok {
		*b = data.Materialize()
		return nil
	}
	return encoding.GetCodecV2("proto").Unmarshal(data, v)
}

func (rawCodec) Name() string { return "proto" }

// BenchmarkGetFlows streams a backlog of realistic flows over loopback gRPC
// to a client that receives raw message bytes; it reports flows/s.
func BenchmarkGetFlows(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("flows=%d", n), func(b *testing.B) {
			srv := hubbletest.NewServer(hubbletest.Options{})
			addr, err := srv.Start()
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Stop()
			for i := range n {
				f := egressFlow(i)
				f.Source.Labels = append(f.Source.Labels, "k8s:io.cilium.k8s.policy.serviceaccount=app", "k8s:io.cilium.k8s.policy.cluster=default")
				f.L4.GetTCP().Flags = &flow.TCPFlags{ACK: true, PSH: true}
				srv.Add(hubbletest.Response(f))
			}
			conn, err := grpc.NewClient(addr,
				grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			desc := &grpc.StreamDesc{ServerStreams: true}
			method := observer.Observer_GetFlows_FullMethodName

			b.ReportAllocs()
			b.ResetTimer()
			var bytes int64
			for b.Loop() {
				stream, err := conn.NewStream(context.Background(), desc, method)
				if err != nil {
					b.Fatal(err)
				}
				if err := stream.SendMsg(&observer.GetFlowsRequest{}); err != nil {
					b.Fatal(err)
				}
				if err := stream.CloseSend(); err != nil {
					b.Fatal(err)
				}
				got := 0
				for {
					var msg []byte
					err := stream.RecvMsg(&msg)
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					bytes += int64(len(msg))
					got++
				}
				if got != n {
					b.Fatalf("received %d flows, want %d", got, n)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "flows/s")
			b.SetBytes(bytes / int64(b.N))
		})
	}
}
