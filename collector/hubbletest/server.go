package hubbletest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"github.com/cilium/cilium/api/v1/relay"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// DefaultNodeName is the node name the server reports when Options.NodeName
// is empty.
const DefaultNodeName = "hubbletest"

// DefaultVersion is the version the server reports when Options.Version is
// empty.
const DefaultVersion = "hubbletest"

// stopGracePeriod bounds how long Stop waits for streams to deliver their
// final status before it closes connections hard. Followers end as soon as
// Stop is called; only a stream whose client stopped reading (blocked in
// flow control) needs the hard close.
const stopGracePeriod = 2 * time.Second

// Options configures a Server. The zero value is usable: an unbounded
// buffer, plaintext gRPC, node name DefaultNodeName and the wall clock.
type Options struct {
	// Capacity bounds the buffer like Hubble's ring buffer (the agent's
	// --hubble-event-buffer-capacity, 4095 by default). When full, each Add
	// overwrites the oldest responses, and a stream that had not read them
	// yet receives a lost_events response with source HUBBLE_RING_BUFFER.
	// 0 means unbounded.
	Capacity int

	// NodeName is reported by GetNodes and on the lost_events responses the
	// server generates. Empty means DefaultNodeName.
	NodeName string

	// Version is reported by ServerStatus and GetNodes. Empty means
	// DefaultVersion.
	Version string

	// TLSConfig, when set, makes the server speak TLS with it; set
	// ClientAuth and ClientCAs for mutual TLS.
	TLSConfig *tls.Config

	// ServerOptions are passed to grpc.NewServer after the server's own
	// (its codec and the TLS credentials). They must not set a codec: the
	// server sends responses it encoded once in Add through its own.
	ServerOptions []grpc.ServerOption

	// Now is the clock used for uptime and for the time of generated
	// lost_events responses. nil means time.Now.
	Now func() time.Time
}

// DefaultOptions returns the options NewServer uses for zero fields.
func DefaultOptions() Options {
	return Options{NodeName: DefaultNodeName, Version: DefaultVersion, Now: time.Now}
}

// Validate reports the first invalid field of o.
func (o Options) Validate() error {
	if o.Capacity < 0 {
		return fmt.Errorf("hubbletest: Options.Capacity must be >= 0 (0 means unbounded), got %d", o.Capacity)
	}
	return nil
}

// Server is an in-process Hubble observer serving the responses added with
// Add over gRPC. Its methods are safe for concurrent use.
type Server struct {
	observer.UnimplementedObserverServer

	opts    Options
	grpc    *grpc.Server
	started time.Time

	// done is closed by Stop; every wait in a handler selects on it.
	done chan struct{}
	// handlers counts running GetFlows handlers. Add is only called under
	// mu while done is open, so Stop may Wait after closing done.
	handlers sync.WaitGroup
	// serving counts the goroutine running grpc.Server.Serve.
	serving sync.WaitGroup

	mu        sync.Mutex
	state     serverState
	addr      string
	ring      ring
	seenFlows uint64
	// dataCh is closed and replaced whenever a stream may have something
	// new to do: responses were added, a cut was requested, or the server
	// stops. A waiting stream takes the current channel under mu, so it
	// cannot miss a wake-up.
	dataCh chan struct{}
	// streamsCh is closed and replaced whenever a stream opens or closes or
	// a request arrives.
	streamsCh  chan struct{}
	streams    map[*stream]struct{}
	requests   []*observer.GetFlowsRequest
	pendingCut int // budget for the next stream to open; -1 when none
}

type serverState int

const (
	stateNew serverState = iota
	stateStarted
	stateStopped
)

var _ observer.ObserverServer = (*Server)(nil)

// NewServer returns a server that is not yet listening; call Start,
// StartAt or StartListener. Zero fields of opts take the values of
// DefaultOptions. Invalid options are reported by the Start methods.
func NewServer(opts Options) *Server {
	def := DefaultOptions()
	if opts.NodeName == "" {
		opts.NodeName = def.NodeName
	}
	if opts.Version == "" {
		opts.Version = def.Version
	}
	if opts.Now == nil {
		opts.Now = def.Now
	}
	return &Server{
		opts:       opts,
		started:    opts.Now(),
		done:       make(chan struct{}),
		ring:       ring{capacity: max(opts.Capacity, 0)},
		dataCh:     make(chan struct{}),
		streamsCh:  make(chan struct{}),
		streams:    make(map[*stream]struct{}),
		pendingCut: -1,
	}
}

// Start listens on a free loopback TCP port and serves in the background.
// It returns the address to dial, "127.0.0.1:port".
func (s *Server) Start() (addr string, err error) {
	return s.StartAt("127.0.0.1:0")
}

// StartAt listens on address and serves in the background. address is
// either "host:port" (TCP) or a unix socket written the way egressd and the
// hubble CLI accept it: "unix:///var/run/cilium/hubble.sock" or
// "unix:relative/path". It returns the address to dial: "host:port" with
// the port chosen, or the socket in the same unix: form. A stale socket
// file is not removed (listening fails); the caller owns the path.
func (s *Server) StartAt(address string) (addr string, err error) {
	network, target := "tcp", address
	if rest, ok := strings.CutPrefix(address, "unix:"); ok {
		network = "unix"
		// "unix:///abs" and "unix:rel" as in gRPC's naming doc; "unix://abs"
		// has no empty authority and is rejected by gRPC, so reject it too.
		switch {
		case strings.HasPrefix(rest, "///"):
			target = rest[2:]
		case strings.HasPrefix(rest, "//"):
			return "", fmt.Errorf("hubbletest: unix address %q: use unix:///absolute/path or unix:relative/path", address)
		default:
			target = rest
		}
		if target == "" {
			return "", fmt.Errorf("hubbletest: unix address %q has no path", address)
		}
	}
	if err := s.opts.Validate(); err != nil {
		return "", err
	}
	lis, err := net.Listen(network, target)
	if err != nil {
		return "", fmt.Errorf("hubbletest: listen on %s: %w", address, err)
	}
	return s.StartListener(lis)
}

// StartListener serves on lis in the background and takes ownership of it:
// Stop closes it. It returns the address to dial lis with.
func (s *Server) StartListener(lis net.Listener) (addr string, err error) {
	if err := s.opts.Validate(); err != nil {
		_ = lis.Close()
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateStarted:
		_ = lis.Close()
		return "", errors.New("hubbletest: server already started")
	case stateStopped:
		_ = lis.Close()
		return "", errors.New("hubbletest: server stopped")
	}

	gopts := []grpc.ServerOption{grpc.ForceServerCodecV2(serverCodec{})}
	if s.opts.TLSConfig != nil {
		gopts = append(gopts, grpc.Creds(credentials.NewTLS(s.opts.TLSConfig)))
	}
	gopts = append(gopts, s.opts.ServerOptions...)
	s.grpc = grpc.NewServer(gopts...)
	observer.RegisterObserverServer(s.grpc, s)

	s.addr = dialAddress(lis.Addr())
	s.state = stateStarted
	s.serving.Add(1)
	go func() {
		defer s.serving.Done()
		// Serve returns when Stop stops the gRPC server; its error then
		// carries no information.
		_ = s.grpc.Serve(lis)
	}()
	return s.addr, nil
}

// dialAddress writes a listener's address the way gRPC targets take it:
// "unix:///abs/path" or "unix:rel/path" for sockets.
func dialAddress(a net.Addr) string {
	if a.Network() != "unix" {
		return a.String()
	}
	if strings.HasPrefix(a.String(), "/") {
		return "unix://" + a.String()
	}
	return "unix:" + a.String()
}

// Addr returns the address returned by the Start method that started the
// server, or "" before that.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Stop ends every stream (followers receive codes.Unavailable), stops the
// gRPC server, closes the listener and waits until every handler goroutine
// has returned. It is idempotent and may be called before Start.
func (s *Server) Stop() {
	s.mu.Lock()
	if s.state == stateStopped {
		s.mu.Unlock()
		// A concurrent Stop may still be shutting down; wait like it does.
		s.handlers.Wait()
		s.serving.Wait()
		return
	}
	wasStarted := s.state == stateStarted
	s.state = stateStopped
	close(s.done)
	s.wakeLocked()
	s.mu.Unlock()

	if wasStarted {
		// Handlers return as soon as done is closed, so GracefulStop lets
		// their Unavailable status reach the clients. A handler blocked in
		// Send because its client stopped reading only returns when the
		// transport closes, hence the hard Stop after a grace period.
		graceful := make(chan struct{})
		go func() {
			s.grpc.GracefulStop()
			close(graceful)
		}()
		timer := time.NewTimer(stopGracePeriod)
		select {
		case <-graceful:
		case <-timer.C:
			s.grpc.Stop()
			<-graceful
		}
		timer.Stop()
	}
	s.handlers.Wait()
	s.serving.Wait()
}

// Close calls Stop and returns nil, so a Server fits io.Closer.
func (s *Server) Close() error {
	s.Stop()
	return nil
}

// Add appends responses to the buffer in order and wakes following streams.
// Flows are matched against requests by time (the response's time, else the
// flow's time; a response with neither counts as the Unix epoch). Responses
// that carry no flow (lost_events, node_status) are passed to every stream
// unfiltered, as Hubble does. nil responses are ignored.
//
// Add keeps the pointers: do not modify a response after adding it. Adding
// the same response again (a Relay replay) is allowed.
func (s *Server) Add(resps ...*observer.GetFlowsResponse) {
	// Encode before taking the lock: it is the costly part. A response that
	// cannot be encoded (invalid UTF-8 in a string) is kept; sending it
	// fails the stream as it would fail a real Hubble's.
	entries := make([]entry, 0, len(resps))
	for _, r := range resps {
		if r == nil {
			continue
		}
		e := entry{resp: r, flow: r.GetFlow()}
		ts := r.GetTime()
		if ts == nil {
			ts = e.flow.GetTime()
		}
		e.ts = ts.AsTime()
		e.wire, _ = proto.Marshal(r)
		entries = append(entries, e)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range entries {
		if e.flow != nil {
			s.seenFlows++
		}
		s.ring.push(e)
	}
	s.wakeLocked()
}

// Len returns the number of responses in the buffer.
func (s *Server) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ring.len()
}

// CutStreamsAfter makes the server end streams with codes.Unavailable, as
// when a Relay or agent restarts: every stream open now is ended after
// sending n more responses of any type (n == 0 ends it at once, even while it
// waits for new flows). When no stream is open, the cut is armed for the
// next stream to open instead. A cut happens once: streams opened later, such
// as the client's reconnection, are not affected, unless CutStreamsAfter is
// called again.
func (s *Server) CutStreamsAfter(n int) {
	n = max(n, 0)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.streams) == 0 {
		s.pendingCut = n
		return
	}
	for st := range s.streams {
		st.budget.Store(int64(n))
	}
	s.wakeLocked()
}

// Requests returns copies of the GetFlows requests received so far, in
// arrival order, including the ones that were rejected.
func (s *Server) Requests() []*observer.GetFlowsRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*observer.GetFlowsRequest, len(s.requests))
	for i, r := range s.requests {
		out[i] = proto.CloneOf(r)
	}
	return out
}

// ActiveStreams returns the number of GetFlows streams being served.
func (s *Server) ActiveStreams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

// WaitStreams blocks until at least n GetFlows streams are being served, and
// returns nil, or returns ctx's error, or an error once the server stops.
// A stream counts once its starting point in the buffer is fixed, so every
// response added after WaitStreams returns reaches the streams it counted
// (subject to their filters).
func (s *Server) WaitStreams(ctx context.Context, n int) error {
	return s.waitStreams(ctx, func() bool { return len(s.streams) >= n })
}

// WaitRequests blocks until at least n GetFlows requests have been received
// since the server was created (see Requests), and returns nil, or returns
// ctx's error, or an error once the server stops. It is how a test waits for
// a client to reconnect after a cut.
func (s *Server) WaitRequests(ctx context.Context, n int) error {
	return s.waitStreams(ctx, func() bool { return len(s.requests) >= n })
}

func (s *Server) waitStreams(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		ok := cond()
		changed := s.streamsCh
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return errors.New("hubbletest: server stopped")
		}
	}
}

// ServerStatus implements observer.ObserverServer like a Cilium agent does:
// num_flows is the number of responses in the buffer, max_flows its capacity
// (0 when unbounded), seen_flows the number of flows ever added.
func (s *Server) ServerStatus(ctx context.Context, _ *observer.ServerStatusRequest) (*observer.ServerStatusResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &observer.ServerStatusResponse{
		NumFlows:  uint64(s.ring.len()),
		MaxFlows:  uint64(s.ring.capacity),
		SeenFlows: s.seenFlows,
		UptimeNs:  s.uptimeNs(),
		Version:   s.opts.Version,
	}, nil
}

// GetNodes implements observer.ObserverServer like Hubble Relay with one
// connected node: this server.
func (s *Server) GetNodes(ctx context.Context, _ *observer.GetNodesRequest) (*observer.GetNodesResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &observer.GetNodesResponse{Nodes: []*observer.Node{{
		Name:      s.opts.NodeName,
		Version:   s.opts.Version,
		Address:   s.addr,
		State:     relay.NodeState_NODE_CONNECTED,
		Tls:       &observer.TLS{Enabled: s.opts.TLSConfig != nil, ServerName: s.tlsServerName()},
		UptimeNs:  s.uptimeNs(),
		NumFlows:  uint64(s.ring.len()),
		MaxFlows:  uint64(s.ring.capacity),
		SeenFlows: s.seenFlows,
	}}}, nil
}

func (s *Server) tlsServerName() string {
	if s.opts.TLSConfig == nil {
		return ""
	}
	return s.opts.TLSConfig.ServerName
}

func (s *Server) uptimeNs() uint64 {
	return uint64(max(s.opts.Now().Sub(s.started), 0))
}

// wakeLocked wakes every stream waiting for data. s.mu must be held.
func (s *Server) wakeLocked() {
	close(s.dataCh)
	s.dataCh = make(chan struct{})
}

// streamsChangedLocked wakes WaitStreams and WaitRequests. s.mu must be held.
func (s *Server) streamsChangedLocked() {
	close(s.streamsCh)
	s.streamsCh = make(chan struct{})
}

var errStopped = status.Error(codes.Unavailable, "hubbletest: server stopped")

// recordRequest stores a copy of req for Requests.
func (s *Server) recordRequest(req *observer.GetFlowsRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, proto.CloneOf(req))
	s.streamsChangedLocked()
}

// openStream registers a stream, applying an armed cut to it, and fixes
// where it starts reading in the same critical section: once WaitStreams
// has seen the stream, every response added afterwards reaches it.
func (s *Server) openStream(q *query) (*stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == stateStopped {
		return nil, errStopped
	}
	st := &stream{cursor: s.startLocked(q)}
	st.budget.Store(-1)
	if s.pendingCut >= 0 {
		st.budget.Store(int64(s.pendingCut))
		s.pendingCut = -1
	}
	s.handlers.Add(1)
	s.streams[st] = struct{}{}
	s.streamsChangedLocked()
	return st, nil
}

func (s *Server) closeStream(st *stream) {
	s.mu.Lock()
	delete(s.streams, st)
	s.streamsChangedLocked()
	s.mu.Unlock()
	s.handlers.Done()
}

// lostEventsResponse is what a stream overtaken by the writer receives. Hubble
// (local_observer.go GetFlows) stamps it with the time the loss was noticed
// and the local node name, counting the events lost.
func (s *Server) lostEventsResponse(n uint64) *observer.GetFlowsResponse {
	now := timestamppb.New(s.opts.Now())
	return &observer.GetFlowsResponse{
		Time:     now,
		NodeName: s.opts.NodeName,
		ResponseTypes: &observer.GetFlowsResponse_LostEvents{LostEvents: &flow.LostEvent{
			Source:        flow.LostEventSource_HUBBLE_RING_BUFFER,
			NumEventsLost: n,
			First:         now,
			Last:          now,
		}},
	}
}
