package collector

import (
	"hash/maphash"
	"time"
)

// dedup remembers the flows that became observations during a window of flow
// time, so that the same flow delivered twice is counted once: Hubble's
// `since` is inclusive, and Relay replays a node's flows when the node
// reconnects. Flows are identified by a hash of their encoded bytes (which
// include Cilium's per-flow uuid when present; a replayed flow's bytes are
// the fields the collector reads, its source port included: see record). Memory is bounded by max
// entries; a flow forgotten early because of that bound is counted.
type dedup struct {
	window  int64
	seenAt  map[uint64]int64
	ring    []dedupEntry
	head    int // index of the oldest entry
	n       int
	seed    maphash.Seed
	metrics *Metrics
}

type dedupEntry struct {
	hash uint64
	at   int64
}

func newDedup(window time.Duration, max int, m *Metrics) *dedup {
	return &dedup{
		window:  window.Nanoseconds(),
		seenAt:  make(map[uint64]int64),
		ring:    make([]dedupEntry, max),
		seed:    maphash.MakeSeed(),
		metrics: m,
	}
}

// seen reports whether the flow was seen before within the window, and
// remembers it otherwise.
func (d *dedup) seen(raw []byte, now int64) bool {
	h := maphash.Bytes(d.seed, raw)
	if _, ok := d.seenAt[h]; ok {
		return true
	}
	// Forget what has left the window; flows arrive roughly in time order.
	for d.n > 0 && d.ring[d.head].at < now-d.window {
		d.pop()
	}
	if d.n == len(d.ring) {
		d.pop()
		d.metrics.DedupEvicted.Inc()
	}
	i := (d.head + d.n) % len(d.ring)
	d.ring[i] = dedupEntry{hash: h, at: now}
	d.n++
	d.seenAt[h] = now
	return false
}

func (d *dedup) pop() {
	e := d.ring[d.head]
	if at, ok := d.seenAt[e.hash]; ok && at == e.at {
		delete(d.seenAt, e.hash)
	}
	d.head = (d.head + 1) % len(d.ring)
	d.n--
}
