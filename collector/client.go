package collector

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ClientOptions configure the connection to Hubble Relay or an agent.
type ClientOptions struct {
	// Address is host:port (hubble-relay.kube-system:4245) or
	// unix:///var/run/cilium/hubble.sock.
	Address string
	// TLS turns on TLS; it is implied by any of the files below.
	TLS bool
	// TLSCAFile verifies the server (default: the system roots).
	TLSCAFile string
	// TLSCertFile and TLSKeyFile are the client certificate for mTLS.
	TLSCertFile string
	TLSKeyFile  string
	// TLSServerName overrides the name checked in the server certificate
	// (Relay's is usually *.hubble-relay.cilium.io).
	TLSServerName string
	// Follow keeps the stream open for new flows; without it the client
	// reads what Hubble has buffered and returns.
	Follow bool
	// Whitelist filters flows on the server. The default asks for egress
	// flows and L7 DNS records, the only flows attribution reads.
	Whitelist []*flowpb.FlowFilter
	// BackoffMin and BackoffMax bound the wait between reconnects. The
	// wait doubles with each stream that ends, up to BackoffMax, and goes
	// back to BackoffMin only after a stream that stayed healthy (up, and
	// its messages decoding) for HealthyAfter: a server that accepts the
	// stream and breaks it, or sends garbage, is not hammered.
	BackoffMin   time.Duration
	BackoffMax   time.Duration
	HealthyAfter time.Duration
	// DecodeWindow is how often the stream's messages are judged: when
	// most messages of a window (at least 10) fail to decode, the stream
	// is reported undecodable (Health, a rate-limited warning) until a
	// window decodes again.
	DecodeWindow time.Duration
}

// DefaultClientOptions returns follow mode with a 1 s to 30 s backoff that
// resets after a minute of healthy stream, and messages judged every 10 s.
func DefaultClientOptions() ClientOptions {
	return ClientOptions{
		Follow:       true,
		BackoffMin:   time.Second,
		BackoffMax:   30 * time.Second,
		HealthyAfter: time.Minute,
		DecodeWindow: 10 * time.Second,
		Whitelist: []*flowpb.FlowFilter{
			{TrafficDirection: []flowpb.TrafficDirection{flowpb.TrafficDirection_EGRESS}},
			{Protocol: []string{"dns"}},
		},
	}
}

// Validate reports the first invalid field.
func (o ClientOptions) Validate() error {
	switch {
	case o.Address == "":
		return errors.New("collector: ClientOptions.Address is empty: set --hubble-address (e.g. hubble-relay.kube-system:4245)")
	case o.BackoffMin <= 0:
		return errors.New("collector: ClientOptions.BackoffMin must be > 0")
	case o.BackoffMax < o.BackoffMin:
		return errors.New("collector: ClientOptions.BackoffMax must be >= BackoffMin")
	case o.HealthyAfter <= 0:
		return errors.New("collector: ClientOptions.HealthyAfter must be > 0")
	case o.DecodeWindow <= 0:
		return errors.New("collector: ClientOptions.DecodeWindow must be > 0")
	case (o.TLSCertFile == "") != (o.TLSKeyFile == ""):
		return errors.New("collector: ClientOptions.TLSCertFile and TLSKeyFile go together (--hubble-tls-cert, --hubble-tls-key)")
	}
	return nil
}

func (o ClientOptions) tlsEnabled() bool {
	return o.TLS || o.TLSCAFile != "" || o.TLSCertFile != "" || o.TLSServerName != ""
}

// Client streams flows from Hubble's observer.GetFlows and hands each
// response, still encoded, to a handler: decoding happens once, in the
// Pipeline, reading only the fields it needs.
type Client struct {
	up      atomic.Bool
	opts    ClientOptions
	log     *slog.Logger
	metrics *Metrics
	// undecodable says why the stream is not healthy, nil while it is.
	undecodable atomic.Pointer[string]
	// Only Run's goroutine uses the fields below.
	window decodeWindow
	// healthySince is when the current stream last became healthy; zero
	// while it is not.
	healthySince time.Time
	// warnLog rate-limits hubble_stream_undecodable and counts the
	// windows it kept quiet about.
	warnLog rateLimited
}

// decodeWindow counts one window of a stream's messages.
type decodeWindow struct {
	start      time.Time
	total, bad int
}

// minJudged is the fewest messages a window is judged on.
const minJudged = 10

// undecodableWarnEvery rate-limits the warning about an undecodable stream.
const undecodableWarnEvery = time.Minute

// NewClient returns a client; it connects when Run is called.
func NewClient(opts ClientOptions, log *slog.Logger, m *Metrics) (*Client, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return &Client{opts: opts, log: log, metrics: m}, nil
}

// Up reports whether the stream is established and has delivered a message.
func (c *Client) Up() bool { return c.up.Load() }

// Health returns nil unless most messages of the stream's last judged
// window failed to decode, in which case the error says how many: what
// /readyz reports. A stream that ended keeps its last verdict until the
// next one is judged.
func (c *Client) Health() error {
	if msg := c.undecodable.Load(); msg != nil {
		return errors.New(*msg)
	}
	return nil
}

// Run streams until ctx is cancelled (returning nil) or, without Follow,
// until Hubble has sent what it has. Broken streams are reopened with a
// capped, jittered exponential backoff; each (re)connect asks for flows since
// the time since returns (zero: from now on), so the stream resumes where
// the handler got to. Duplicates that this inclusive `since` brings are the
// pipeline's to drop.
func (c *Client) Run(ctx context.Context, since func() time.Time, handle func(msg []byte) error) error {
	creds, err := c.credentials()
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(c.opts.Address,
		grpc.WithTransportCredentials(creds),
		// Detects a silently dead connection. 5 minutes is the smallest
		// interval gRPC servers accept by default.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 5 * time.Minute, Timeout: 20 * time.Second}),
	)
	if err != nil {
		return fmt.Errorf("hubble client for %s: %w", c.opts.Address, err)
	}
	defer conn.Close()

	// backoff is the wait before the next reconnect; it grows with every
	// stream that ends and resets only after a healthy one.
	backoff := c.opts.BackoffMin
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			c.metrics.Reconnects.Inc()
		}
		got, err := c.stream(ctx, conn, since(), handle)
		c.up.Store(false)
		c.metrics.StreamUp.Set(0)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil && !c.opts.Follow {
			return nil
		}
		if !c.healthySince.IsZero() && time.Since(c.healthySince) >= c.opts.HealthyAfter {
			backoff = c.opts.BackoffMin
		}
		c.healthySince = time.Time{}
		c.metrics.StreamErrors.Inc()
		c.log.Warn("hubble_stream_ended", "address", c.opts.Address, "err", err, "messages", got, "retry_in", backoff)
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(backoff*2, c.opts.BackoffMax)
	}
}

// judge ends the current decode window if it is over (or if final, when
// the stream ended) and sets the stream's health from it: undecodable when
// most of at least minJudged messages failed to decode.
func (c *Client) judge(now time.Time, final bool) {
	w := &c.window
	if !final && now.Sub(w.start) < c.opts.DecodeWindow {
		return
	}
	total, bad, span := w.total, w.bad, now.Sub(w.start)
	*w = decodeWindow{start: now}
	if total < minJudged {
		return
	}
	if bad*2 <= total {
		if c.undecodable.Swap(nil) != nil {
			c.log.Info("hubble_stream_decodable", "address", c.opts.Address, "messages", total, "undecodable", bad)
		}
		if c.healthySince.IsZero() {
			c.healthySince = now
		}
		return
	}
	c.healthySince = time.Time{}
	msg := fmt.Sprintf("hubble stream from %s: %d of %d messages in %s could not be decoded as GetFlowsResponse (is --hubble-address a Hubble Relay or agent?)",
		c.opts.Address, bad, total, span.Round(time.Millisecond))
	c.undecodable.Store(&msg)
	suppressed, ok := c.warnLog.allow(now.UnixNano(), undecodableWarnEvery)
	if !ok {
		return
	}
	c.log.Warn("hubble_stream_undecodable", "address", c.opts.Address, "messages", total, "undecodable", bad,
		"window", span.Round(time.Millisecond), "windows_not_logged", suppressed)
}

func (c *Client) stream(ctx context.Context, conn *grpc.ClientConn, since time.Time, handle func([]byte) error) (int, error) {
	req := &observer.GetFlowsRequest{Follow: c.opts.Follow, Whitelist: c.opts.Whitelist}
	if !since.IsZero() {
		req.Since = timestamppb.New(since)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	desc := &observer.Observer_ServiceDesc.Streams[0]
	st, err := conn.NewStream(ctx, desc, observer.Observer_GetFlows_FullMethodName, grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		return 0, fmt.Errorf("open GetFlows: %w", err)
	}
	if err := st.SendMsg(req); err != nil {
		return 0, fmt.Errorf("send GetFlows request: %w", err)
	}
	if err := st.CloseSend(); err != nil {
		return 0, fmt.Errorf("send GetFlows request: %w", err)
	}
	// A goroutine of its own receives, so that decoding and attribution
	// of one message overlap with gRPC reading the next. The queue between
	// them is bounded: when the pipeline is slower than the stream, the
	// receiver waits and HTTP/2 flow control slows Hubble down, which
	// reports what its ring buffer then drops as lost events.
	frames := make(chan rawFrame, frameQueue)
	recvErr := make(chan error, 1)
	go func() {
		defer close(frames)
		for {
			var f rawFrame
			if err := st.RecvMsg(&f); err != nil {
				recvErr <- err
				return
			}
			frames <- f
		}
	}()
	got := 0
	for f := range frames {
		if got == 0 {
			c.up.Store(true)
			c.metrics.StreamUp.Set(1)
			c.log.Info("hubble_stream_up", "address", c.opts.Address, "since", since)
			now := time.Now()
			c.window = decodeWindow{start: now}
			if c.undecodable.Load() == nil {
				c.healthySince = now
			}
		}
		got++
		c.window.total++
		err := handle(f.b)
		f.release()
		if err != nil {
			c.window.bad++
			c.log.Debug("hubble_message_rejected", "err", err)
		}
		// Reading the clock costs; a window is judged at its first
		// rejected message or 64th message after it is over.
		if err != nil || c.window.total%64 == 0 {
			c.judge(time.Now(), false)
		}
	}
	if got > 0 {
		c.judge(time.Now(), true)
	}
	if err := <-recvErr; !errors.Is(err, io.EOF) {
		return got, err
	}
	return got, nil
}

// frameQueue is how many received messages may wait for the pipeline: about
// a quarter of a megabyte of typical flows.
const frameQueue = 256

func (c *Client) credentials() (credentials.TransportCredentials, error) {
	if !c.opts.tlsEnabled() {
		return insecure.NewCredentials(), nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.opts.TLSServerName}
	if c.opts.TLSCAFile != "" {
		pem, err := os.ReadFile(c.opts.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("read --hubble-tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--hubble-tls-ca %s: no PEM certificate found", c.opts.TLSCAFile)
		}
		cfg.RootCAs = pool
	}
	if c.opts.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.opts.TLSCertFile, c.opts.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("load --hubble-tls-cert/--hubble-tls-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return credentials.NewTLS(cfg), nil
}

// rawFrame is one received message. Its bytes are gRPC's own receive
// buffer, kept (not copied) until release.
type rawFrame struct {
	b   []byte
	buf mem.Buffer // nil when b is a copy
}

func (f *rawFrame) release() {
	if f.buf != nil {
		f.buf.Free()
	}
}

// rawCodec is gRPC's proto codec on the sending side and a pass-through on
// the receiving side, so GetFlows responses reach the selective decoder
// without a full proto.Unmarshal. It is named "proto" so the wire content
// type stays application/grpc+proto, which every Hubble server speaks.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("rawCodec: cannot marshal %T", v)
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*rawFrame)
	if !ok {
		return fmt.Errorf("rawCodec: cannot unmarshal into %T", v)
	}
	if len(data) == 1 {
		// The usual case: the message is one buffer. gRPC frees data
		// when this returns; the reference keeps it for the pipeline.
		data[0].Ref()
		f.buf, f.b = data[0], data[0].ReadOnlyData()
		return nil
	}
	f.buf, f.b = nil, data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }
