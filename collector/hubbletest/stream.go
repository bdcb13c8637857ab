package hubbletest

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// batchSize bounds how many entries a stream copies per lock acquisition, so
// that Add is never blocked for long by a stream reading a large backlog.
const batchSize = 256

// stream is the server-side state of one GetFlows call.
type stream struct {
	// budget is how many more responses the stream may send before
	// CutStreamsAfter ends it; -1 means no cut is pending.
	budget atomic.Int64
	// cursor is the sequence number of the next buffer entry to read.
	cursor uint64
	// pre is reused for every pre-encoded send: SendMsg encodes it before
	// returning and the wire bytes it points to are never modified.
	pre preEncoded
}

var errCut = status.Error(codes.Unavailable, "hubbletest: stream cut by CutStreamsAfter")

// cut reports whether the stream must end now.
func (st *stream) cut() bool { return st.budget.Load() == 0 }

// sent consumes one response of the cut budget, if a cut is pending.
func (st *stream) sent() {
	for {
		b := st.budget.Load()
		if b <= 0 || st.budget.CompareAndSwap(b, b-1) {
			return
		}
	}
}

// send sends resp, or its wire form when wire is not nil.
func (st *stream) send(srv observer.Observer_GetFlowsServer, resp *observer.GetFlowsResponse, wire []byte) error {
	if st.cut() {
		return errCut
	}
	var err error
	if wire != nil {
		st.pre.wire = wire
		err = srv.SendMsg(&st.pre)
	} else {
		err = srv.Send(resp)
	}
	if err != nil {
		return err
	}
	st.sent()
	return nil
}

// query is a validated GetFlowsRequest.
type query struct {
	number       uint64
	first        bool
	follow       bool
	since, until *time.Time
	whitelist    []predicate
	blacklist    []predicate
	mask         fieldMask
}

// match applies Hubble's filters.Apply (pkg/hubble/filters/filters.go): a
// flow passes when it matches at least one whitelist filter (or there is no
// whitelist) and no blacklist filter.
func (q *query) match(f *flow.Flow) bool {
	return matchOne(q.whitelist, f) && matchNone(q.blacklist, f)
}

func matchOne(ps []predicate, f *flow.Flow) bool {
	if len(ps) == 0 {
		return true
	}
	for _, p := range ps {
		if p(f) {
			return true
		}
	}
	return false
}

func matchNone(ps []predicate, f *flow.Flow) bool {
	for _, p := range ps {
		if p(f) {
			return false
		}
	}
	return true
}

func invalidArgument(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

// compileQuery validates req. Every error is codes.InvalidArgument.
func compileQuery(req *observer.GetFlowsRequest) (*query, error) {
	// Same check and message as Hubble's validateRequest.
	if req.GetFirst() && req.GetFollow() {
		return nil, invalidArgument("first cannot be specified with follow")
	}
	if u := req.ProtoReflect().GetUnknown(); len(u) > 0 {
		return nil, invalidArgument("GetFlowsRequest has fields unknown to this server (field numbers %v)", unknownFieldNumbers(u))
	}
	if req.GetExtensions() != nil {
		return nil, invalidArgument("GetFlowsRequest.extensions is not supported by this server")
	}
	q := &query{number: req.GetNumber(), first: req.GetFirst(), follow: req.GetFollow()}
	if ts := req.GetSince(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return nil, invalidArgument("GetFlowsRequest.since: %v", err)
		}
		t := ts.AsTime()
		q.since = &t
	}
	if ts := req.GetUntil(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return nil, invalidArgument("GetFlowsRequest.until: %v", err)
		}
		t := ts.AsTime()
		q.until = &t
	}
	var err error
	if q.whitelist, err = compileFilters("whitelist", req.GetWhitelist()); err != nil {
		return nil, invalidArgument("%v", err)
	}
	if q.blacklist, err = compileFilters("blacklist", req.GetBlacklist()); err != nil {
		return nil, invalidArgument("%v", err)
	}
	if q.mask, err = newFieldMask(req.GetFieldMask()); err != nil {
		return nil, invalidArgument("%v", err)
	}
	return q, nil
}

// GetFlows implements observer.ObserverServer with the request semantics of
// Hubble's LocalObserverServer.GetFlows (pkg/hubble/observer/
// local_observer.go):
//
//   - The backlog starts where newRingReader starts: with first (and no
//     since) at the oldest response; with follow alone (no number, no since)
//     at the end, so only new flows are sent; otherwise by walking back from
//     the newest flow until a matching flow older than since is met (since
//     takes precedence over number) or, without since, until number matching
//     flows were counted, or to the oldest response.
//   - Reading forward, flows older than since are skipped, the first flow
//     newer than until ends the stream, and whitelist and blacklist apply.
//     Without follow the stream ends after number flows (when number > 0) or
//     when it has caught up with the buffer; with follow, number only sizes
//     the backlog and the stream waits for new flows until the client
//     cancels or the server stops.
//   - lost_events and node_status responses bypass filters and time ranges
//     and do not count towards number.
func (s *Server) GetFlows(req *observer.GetFlowsRequest, srv observer.Observer_GetFlowsServer) error {
	s.recordRequest(req)
	q, err := compileQuery(req)
	if err != nil {
		return err
	}
	st, err := s.openStream(q)
	if err != nil {
		return err
	}
	defer s.closeStream(st)
	return s.serve(srv.Context(), st, q, srv)
}

func (s *Server) serve(ctx context.Context, st *stream, q *query, srv observer.Observer_GetFlowsServer) error {
	cursor := st.cursor
	var (
		flows uint64 // flows sent, for number
		batch = make([]entry, 0, batchSize)
	)
	for {
		if st.cut() {
			return errCut
		}
		s.mu.Lock()
		var lost uint64
		if oldest := s.ring.oldest(); cursor < oldest {
			lost, cursor = oldest-cursor, oldest
		}
		batch = batch[:0]
		for ; cursor < s.ring.next && len(batch) < batchSize; cursor++ {
			batch = append(batch, *s.ring.at(cursor))
		}
		wake := s.dataCh
		s.mu.Unlock()

		if lost > 0 {
			// Hubble reports ring-buffer losses even to non-follow readers
			// and does not count them towards number.
			if err := st.send(srv, s.lostEventsResponse(lost), nil); err != nil {
				return err
			}
		}
		for i := range batch {
			e := &batch[i]
			select {
			case <-ctx.Done():
				return status.FromContextError(ctx.Err()).Err()
			case <-s.done:
				return errStopped
			default:
			}
			if !q.follow && q.number > 0 && flows >= q.number {
				return nil
			}
			if e.flow == nil {
				if err := st.send(srv, e.resp, e.wire); err != nil {
					return err
				}
				continue
			}
			if q.until != nil && e.ts.After(*q.until) {
				return nil
			}
			if q.since != nil && e.ts.Before(*q.since) {
				continue
			}
			if !q.match(e.flow) {
				continue
			}
			resp, wire := e.resp, e.wire
			if q.mask.active() {
				// As Hubble, a masked flow is a new Flow holding only the
				// masked fields, and the response's time and node_name are
				// taken from it: they are empty unless the mask lists them.
				masked := &flow.Flow{}
				q.mask.copy(masked.ProtoReflect(), e.flow.ProtoReflect())
				resp = &observer.GetFlowsResponse{
					Time:          masked.GetTime(),
					NodeName:      masked.GetNodeName(),
					ResponseTypes: &observer.GetFlowsResponse_Flow{Flow: masked},
				}
				wire = nil
			}
			if err := st.send(srv, resp, wire); err != nil {
				return err
			}
			flows++
		}
		if len(batch) > 0 || lost > 0 {
			continue
		}
		if !q.follow {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-s.done:
			return errStopped
		}
	}
}

// startLocked returns the sequence number a request starts reading at,
// following newRingReader in pkg/hubble/observer/local_observer.go. s.mu
// must be held.
func (s *Server) startLocked(q *query) uint64 {
	r := &s.ring
	oldest := r.oldest()
	if q.first && q.since == nil {
		return oldest
	}
	if q.follow && q.number == 0 && q.since == nil {
		return r.next
	}
	var count uint64
	for seq := r.next; seq > oldest; seq-- {
		e := r.at(seq - 1)
		// Pass-through responses neither count nor stop the walk.
		if e.flow == nil || !q.match(e.flow) {
			continue
		}
		count++
		if q.since != nil {
			if e.ts.Before(*q.since) {
				return seq
			}
		} else if count == q.number {
			return seq - 1
		}
	}
	return oldest
}

// unknownFieldNumbers lists the field numbers in a message's unknown bytes,
// to name them in an error.
func unknownFieldNumbers(b []byte) []protowire.Number {
	var nums []protowire.Number
	for len(b) > 0 {
		num, _, n := protowire.ConsumeField(b)
		if n < 0 {
			break
		}
		nums = append(nums, num)
		b = b[n:]
	}
	return nums
}
