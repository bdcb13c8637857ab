package collector_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/collector/hubbletest"
)

// rawMsg is a message as bytes on the wire.
type rawMsg struct{ b []byte }

// rawServerCodec lets a test server send any bytes as a GetFlows response.
// It is named "proto", as the client's codec is.
type rawServerCodec struct{}

func (rawServerCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(*rawMsg).b)}, nil
}

func (rawServerCodec) Unmarshal(data mem.BufferSlice, v any) error {
	v.(*rawMsg).b = data.Materialize()
	return nil
}

func (rawServerCodec) Name() string { return "proto" }

// rawHubble is a GetFlows server of the test's making: serve is called for
// each stream after the request is read.
func rawHubble(t *testing.T, serve func(stream grpc.ServerStream) error) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer(grpc.ForceServerCodecV2(rawServerCodec{}), grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		var req rawMsg
		if err := stream.RecvMsg(&req); err != nil {
			return err
		}
		return serve(stream)
	}))
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// lockedBuffer collects log lines from the client's goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startRawClient runs a client against addr until the test ends.
func startRawClient(t *testing.T, addr string, change func(*collector.ClientOptions)) (*collector.Client, *lockedBuffer) {
	t.Helper()
	opts := collector.DefaultClientOptions()
	opts.Address = addr
	opts.BackoffMin, opts.BackoffMax = 5*time.Millisecond, 20*time.Millisecond
	if change != nil {
		change(&opts)
	}
	logs := &lockedBuffer{}
	m := collector.NewMetrics(prometheus.NewRegistry())
	c, err := collector.NewClient(opts, slog.New(slog.NewTextHandler(logs, nil)), m)
	require.NoError(t, err)
	p, err := collector.NewPipeline(collector.DefaultOptions(), m, newChanSink())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- c.Run(ctx, func() time.Time { return time.Time{} }, func(msg []byte) error { return p.Handle("hubble", msg) })
	}()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return c, logs
}

// waitUntil polls cond until it holds or d passes.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestClientReportsUndecodableStream(t *testing.T) {
	t.Parallel()
	valid, err := proto.Marshal(hubbletest.Response(podFlow(t0, "140.82.112.6", 443)))
	require.NoError(t, err)
	garbage := []byte{0x0a, 0xff, 0xff} // a length that runs past the end
	var sendGarbage atomic.Bool
	sendGarbage.Store(true)
	addr := rawHubble(t, func(stream grpc.ServerStream) error {
		for {
			msg := valid
			if sendGarbage.Load() {
				msg = garbage
			}
			if err := stream.SendMsg(&rawMsg{msg}); err != nil {
				return nil
			}
			time.Sleep(100 * time.Microsecond)
		}
	})
	c, logs := startRawClient(t, addr, func(o *collector.ClientOptions) { o.DecodeWindow = 20 * time.Millisecond })

	waitUntil(t, 20*time.Second, "the stream to be judged undecodable", func() bool { return c.Health() != nil })
	require.True(t, c.Up(), "the stream is up; its messages are the problem")
	require.ErrorContains(t, c.Health(), "could not be decoded")
	require.ErrorContains(t, c.Health(), addr)
	// Many undecodable windows, one warning: the rest are counted into
	// the next one, a minute later.
	time.Sleep(200 * time.Millisecond)
	require.Equal(t, 1, strings.Count(logs.String(), "level=WARN msg=hubble_stream_undecodable"), "%s", logs)

	sendGarbage.Store(false)
	waitUntil(t, 20*time.Second, "the stream to decode again", func() bool { return c.Health() == nil })
	require.Contains(t, logs.String(), "msg=hubble_stream_decodable")
}

// TestClientBackoffGrowsUntilHealthy checks that a server that ends every
// stream after one valid message is reconnected to ever more slowly, unless
// streams stay healthy for HealthyAfter. It reads the waits the client
// chose (retry_in, before its jitter) from its log, not the gaps between
// streams, which a loaded machine stretches.
func TestClientBackoffGrowsUntilHealthy(t *testing.T) {
	t.Parallel()
	valid, err := proto.Marshal(hubbletest.Response(podFlow(t0, "140.82.112.6", 443)))
	require.NoError(t, err)
	retryIn := regexp.MustCompile(`msg=hubble_stream_ended .* retry_in=(\S+)`)
	waits := func(t *testing.T, healthyAfter time.Duration) []time.Duration {
		addr := rawHubble(t, func(stream grpc.ServerStream) error {
			return stream.SendMsg(&rawMsg{valid}) // then the stream ends
		})
		_, logs := startRawClient(t, addr, func(o *collector.ClientOptions) {
			o.BackoffMin, o.BackoffMax, o.HealthyAfter = 20*time.Millisecond, 5*time.Second, healthyAfter
		})
		var ws []time.Duration
		waitUntil(t, 30*time.Second, "five reconnects", func() bool {
			ws = ws[:0]
			for _, m := range retryIn.FindAllStringSubmatch(logs.String(), -1) {
				d, err := time.ParseDuration(m[1])
				require.NoError(t, err, m[0])
				ws = append(ws, d)
			}
			return len(ws) >= 5
		})
		return ws[:5]
	}
	ms := time.Millisecond
	t.Run("short streams", func(t *testing.T) {
		t.Parallel()
		require.Equal(t, []time.Duration{20 * ms, 40 * ms, 80 * ms, 160 * ms, 320 * ms}, waits(t, time.Hour))
	})
	t.Run("healthy streams", func(t *testing.T) {
		t.Parallel()
		require.Equal(t, []time.Duration{20 * ms, 20 * ms, 20 * ms, 20 * ms, 20 * ms}, waits(t, time.Nanosecond), "the backoff resets")
	})
}

func TestClientOptionsValidateHealth(t *testing.T) {
	t.Parallel()
	for name, change := range map[string]func(*collector.ClientOptions){
		"HealthyAfter": func(o *collector.ClientOptions) { o.HealthyAfter = 0 },
		"DecodeWindow": func(o *collector.ClientOptions) { o.DecodeWindow = -time.Second },
	} {
		o := collector.DefaultClientOptions()
		o.Address = "127.0.0.1:4245"
		change(&o)
		require.ErrorContains(t, o.Validate(), fmt.Sprintf("ClientOptions.%s must be > 0", name))
	}
}
