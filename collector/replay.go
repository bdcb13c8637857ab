package collector

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/protobuf/encoding/protojson"
)

// MaxLineBytes bounds one replay line; a longer line is reported and skipped.
const MaxLineBytes = 4 << 20

// LineError is a replay line that could not be read. Replay goes on past it.
type LineError struct {
	File string
	Line int
	Err  error
}

// Error returns "file:line: message".
func (e *LineError) Error() string {
	return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
}

// Unwrap returns the underlying error.
func (e *LineError) Unwrap() error { return e.Err }

// ReplayStats summarises one replayed input.
type ReplayStats struct {
	Lines    int
	Messages int
	BadLines int
	// Protojson counts the lines that the fast JSON path left to
	// protojson (see replayfast.go).
	Protojson int
	// FirstErrors holds up to ten of the bad lines' errors.
	FirstErrors []error
}

// Replayer reads Hubble JSON lines and hands each record, encoded as a
// GetFlowsResponse, to a handler, so replayed flows take exactly the live
// path. The message holds the fields the collector reads and nothing else
// (see record). It reads the Cilium exporter's events.log, `hubble observe
// -o jsonpb` output (both one GetFlowsResponse per line) and legacy lines
// holding one bare Flow, plain or gzip-compressed.
//
// A line is read by a fast path (fastjson, checked against the messages'
// descriptors) when it can vouch that protojson would read the same; any
// other line, and every malformed one, is read by protojson, whose errors
// are reported.
type Replayer struct {
	unmarshal protojson.UnmarshalOptions
	fast      *fastJSON
	rec       record
	buf       []byte
	line      []byte
	resp      observer.GetFlowsResponse
	fl        flowpb.Flow
	lost      flowpb.LostEvent
	lines     atomic.Int64
}

// Lines returns how many lines the Replayer has read, over every input so
// far, including the one being read: a caller that stops waiting for a
// read blocked on a pipe can still tell how far it got.
func (rp *Replayer) Lines() int64 { return rp.lines.Load() }

// ctxReader ends a read loop when ctx ends: a device such as /dev/zero never
// runs out of bytes, nor of line, so the loop would otherwise never get to
// look at ctx.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// protoErr returns a protojson error's message without its "proto:" prefix,
// which protojson writes with a deliberately unstable space.
func protoErr(err error) string {
	msg := err.Error()
	for _, p := range []string{"proto:\u00a0", "proto: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	return msg
}

// NewReplayer returns a Replayer. Unknown JSON fields (from newer Cilium
// versions) are ignored.
func NewReplayer() *Replayer {
	rp := &Replayer{unmarshal: protojson.UnmarshalOptions{DiscardUnknown: true}}
	// The schemas are compiled from the generated descriptors: an error
	// is a bug that TestFastJSONAgreesWithProtojson reports. Without
	// them every line takes protojson, which is correct, only slower.
	rp.fast, _ = newFastJSON()
	return rp
}

// ReplayFile replays one file; "-" is standard input. Source names the input
// in errors.
func (rp *Replayer) ReplayFile(ctx context.Context, path string, handle func(msg []byte) error) (ReplayStats, error) {
	var r io.Reader
	if path == "-" {
		r = os.Stdin
		path = "stdin"
	} else {
		f, err := os.Open(path)
		if err != nil {
			return ReplayStats{}, fmt.Errorf("open replay input: %w", err)
		}
		defer f.Close()
		// A read blocked on a FIFO whose writer is idle returns when the
		// file is closed (os.File polls FIFOs), so ctx can end it.
		stop := context.AfterFunc(ctx, func() { f.Close() })
		defer stop()
		r = f
	}
	return rp.Replay(ctx, path, r, handle)
}

// Replay reads lines from r. Bad lines are counted in the stats and skipped;
// an error is returned only when the input itself cannot be read, ctx ends or
// handle fails.
func (rp *Replayer) Replay(ctx context.Context, name string, r io.Reader, handle func(msg []byte) error) (ReplayStats, error) {
	var st ReplayStats
	br := bufio.NewReaderSize(ctxReader{ctx: ctx, r: r}, 64<<10)
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return st, fmt.Errorf("%s: gzip: %w", name, err)
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, 64<<10)
	}
	bad := func(err error) {
		st.BadLines++
		if len(st.FirstErrors) < 10 {
			st.FirstErrors = append(st.FirstErrors, &LineError{File: name, Line: st.Lines, Err: err})
		}
	}
	for {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		line, tooLong, err := readLine(br, rp.line)
		rp.line = line[:0]
		if err == io.EOF && len(line) == 0 && !tooLong {
			return st, nil
		}
		st.Lines++
		rp.lines.Add(1)
		switch {
		case tooLong:
			bad(fmt.Errorf("line longer than %d bytes", MaxLineBytes))
		default:
			msg, slow, perr := rp.parseLine(line)
			if slow {
				st.Protojson++
			}
			switch {
			case perr != nil:
				bad(perr)
			case msg != nil:
				st.Messages++
				if herr := handle(msg); herr != nil {
					bad(herr)
				}
			}
		}
		if err == io.EOF {
			return st, nil
		}
		if err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return st, cerr
			}
			return st, fmt.Errorf("%s: after line %d: %w", name, st.Lines, err)
		}
	}
}

// readLine returns the next line without its line ending, in buf's storage.
// A line longer than MaxLineBytes is consumed and reported as too long.
func readLine(br *bufio.Reader, buf []byte) (line []byte, tooLong bool, err error) {
	buf = buf[:0]
	for {
		frag, err := br.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(frag) > MaxLineBytes+1 {
				tooLong, buf = true, buf[:0]
			} else {
				buf = append(buf, frag...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return bytes.TrimRight(buf, "\r\n"), tooLong, err
	}
}

// parseLine converts one JSON line to an encoded GetFlowsResponse. It returns
// nil for a blank line; slow says protojson read the line.
func (rp *Replayer) parseLine(line []byte) (msg []byte, slow bool, err error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return nil, false, nil
	}
	if line[0] != '{' {
		return nil, false, errors.New("not a JSON object")
	}
	if rp.fast != nil && rp.fast.read(line, &rp.rec) {
		rp.buf = appendRecord(rp.buf[:0], &rp.rec)
		return rp.buf, false, nil
	}
	msg, err = rp.parseProtojson(line)
	return msg, true, err
}

// parseProtojson is parseLine's slow path.
func (rp *Replayer) parseProtojson(line []byte) ([]byte, error) {
	rp.resp.Reset()
	if err := rp.unmarshal.Unmarshal(line, &rp.resp); err != nil {
		return nil, fmt.Errorf("not a Hubble flow record: %s", protoErr(err))
	}
	if rp.resp.GetResponseTypes() == nil {
		// A legacy line: a bare Flow or LostEvent, not wrapped in a
		// response.
		rp.fl.Reset()
		ferr := rp.unmarshal.Unmarshal(line, &rp.fl)
		switch {
		case ferr == nil && (rp.fl.GetTime() != nil || rp.fl.GetIP() != nil || rp.fl.GetSource() != nil):
			rp.resp.ResponseTypes = &observer.GetFlowsResponse_Flow{Flow: &rp.fl}
			rp.resp.NodeName = rp.fl.GetNodeName()
			rp.resp.Time = rp.fl.GetTime()
		default:
			rp.lost.Reset()
			if lerr := rp.unmarshal.Unmarshal(line, &rp.lost); lerr == nil && (rp.lost.GetNumEventsLost() > 0 || rp.lost.GetSource() != 0) {
				rp.resp.ResponseTypes = &observer.GetFlowsResponse_LostEvents{LostEvents: &rp.lost}
				break
			}
			if ferr != nil {
				return nil, fmt.Errorf("not a Hubble flow record: %s", protoErr(ferr))
			}
			return nil, errors.New(`not a Hubble flow record: no "flow", "lost_events" or "node_status", and not a bare flow`)
		}
	}
	rp.rec.fromResponse(&rp.resp)
	rp.buf = appendRecord(rp.buf[:0], &rp.rec)
	return rp.buf, nil
}
