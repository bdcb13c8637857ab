package hubbletest

import (
	"time"

	"github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
)

// entry is one buffered response with what reading it needs precomputed.
type entry struct {
	resp *observer.GetFlowsResponse
	flow *flow.Flow // nil for responses passed through unfiltered
	ts   time.Time  // the response's time, else the flow's
	wire []byte     // resp in wire form; nil if it could not be encoded
}

// ring is the server's buffer. Every response gets a sequence number, and a
// stream reads by sequence number, so a stream notices when the responses it
// was about to read were overwritten (Hubble's container.Ring does the same
// with its write cycles). With capacity 0 it grows without bound.
type ring struct {
	entries  []entry
	capacity int
	next     uint64 // sequence number of the next write
}

func (r *ring) push(e entry) {
	if r.capacity == 0 || len(r.entries) < r.capacity {
		r.entries = append(r.entries, e)
	} else {
		r.entries[r.next%uint64(r.capacity)] = e
	}
	r.next++
}

// oldest returns the sequence number of the oldest entry still held.
func (r *ring) oldest() uint64 {
	return r.next - uint64(len(r.entries))
}

// at returns the entry with sequence number seq, which must be in
// [oldest, next).
func (r *ring) at(seq uint64) *entry {
	if r.capacity == 0 {
		return &r.entries[seq]
	}
	return &r.entries[seq%uint64(r.capacity)]
}

func (r *ring) len() int { return len(r.entries) }
