package collector

import (
	"math"
	"time"

	"github.com/egressd/egressd"
)

// LostSink is a Sink that also stores the lost_events records Hubble sends
// (the Aggregator), so that a baseline export can say where its window
// misses flows.
type LostSink interface {
	ObserveLost(l egressd.LostEvents)
}

// observeLost hands a lost_events record to the lost sinks. Its time is
// the response's, else the newest flow's; a record with neither, or with a
// time outside the believable bounds of a flow, is counted in the metric
// only. Its node is the response's node name, bounded as node names are.
func (p *Pipeline) observeLost(r *decodedResponse) {
	if len(p.lostSinks) == 0 || r.lostNum == 0 {
		return
	}
	var t time.Time
	switch {
	case r.hasTime && r.timeSec >= minFlowSec && r.timeSec <= maxFlowSec:
		t = time.Unix(r.timeSec, r.timeNanos).UTC()
	case p.newest != 0:
		t = time.Unix(0, p.newest).UTC()
	default:
		return
	}
	n := int64(math.MaxInt64)
	if r.lostNum < math.MaxInt64 {
		n = int64(r.lostNum)
	}
	src := int(r.lostSrc)
	if src < 0 || src >= len(p.metrics.lostSourceName) {
		src = 0
	}
	l := egressd.LostEvents{Node: p.intern.nodeName(r.nodeName), Time: t, Source: p.metrics.lostSourceName[src], Events: n}
	for _, s := range p.lostSinks {
		s.ObserveLost(l)
	}
}
