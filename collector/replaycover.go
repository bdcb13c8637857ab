package collector

import (
	"cmp"
	"encoding/hex"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/egressd/egressd"
)

// ReplaySourcePrefix starts the cursor source of every replayed span: a
// replay stores one cursor per node and span of flow time it handled, named
// ReplaySourcePrefix + NODE + "@" + FIRST (Unix ns), whose time is the
// newest flow of the span. See the package documentation for why.
const ReplaySourcePrefix = "replay:"

// Bounds of the replay spans.
const (
	// replayGap is the most flow time between two flows of a node that one
	// span bridges. A quiet node's next flow after a longer pause opens a
	// new span; so does a flow stamped far ahead of its neighbours, which
	// then covers only itself instead of claiming the time in between.
	replayGap = int64(time.Hour)
	// maxReplaySpans bounds the spans one replay opens per node. Past it,
	// the node's newest span takes every later flow, whatever the gap:
	// coverage can then only be understated (a flow before a span's
	// first is counted again by a later replay), never overstated.
	maxReplaySpans = 1000
)

// timeSpan is a range of flow time, in Unix ns, both ends included.
type timeSpan struct{ first, last int64 }

// run is a span this replay is storing, under its cursor source.
type run struct {
	timeSpan
	source string
}

// coverage tells which flows a replay already stored: per node, the spans
// of flow time that earlier replays handled (merged, sorted), and the runs
// of this one.
type coverage struct {
	stored map[string][]timeSpan
	runs   map[string][]run
	last   map[string]int // index in runs of the node's last used run
	nodes  map[string]string
}

func newCoverage(cursors []egressd.Cursor) *coverage {
	c := &coverage{
		stored: map[string][]timeSpan{},
		runs:   map[string][]run{},
		last:   map[string]int{},
		nodes:  map[string]string{},
	}
	for _, cur := range cursors {
		node, first, ok := parseReplaySource(cur.Source)
		if !ok {
			continue
		}
		last := cur.Time.UnixNano()
		if last < first {
			continue
		}
		c.stored[node] = append(c.stored[node], timeSpan{first, last})
	}
	for node, ss := range c.stored {
		c.stored[node] = mergeSpans(ss)
	}
	return c
}

// mergeSpans sorts spans and merges those that overlap.
func mergeSpans(ss []timeSpan) []timeSpan {
	slices.SortFunc(ss, func(a, b timeSpan) int { return cmp.Compare(a.first, b.first) })
	out := ss[:0]
	for _, s := range ss {
		if n := len(out); n > 0 && s.first <= out[n-1].last {
			out[n-1].last = max(out[n-1].last, s.last)
			continue
		}
		out = append(out, s)
	}
	return out
}

// ReplaySource returns the cursor source of a node's span starting at
// first (Unix ns).
func ReplaySource(node string, first int64) string {
	return ReplaySourcePrefix + node + "@" + strconv.FormatInt(first, 10)
}

// parseReplaySource reads what ReplaySource wrote.
func parseReplaySource(s string) (node string, first int64, ok bool) {
	rest, ok := strings.CutPrefix(s, ReplaySourcePrefix)
	if !ok {
		return "", 0, false
	}
	i := strings.LastIndexByte(rest, '@')
	if i < 0 {
		return "", 0, false
	}
	first, err := strconv.ParseInt(rest[i+1:], 10, 64)
	if err != nil {
		return "", 0, false
	}
	return rest[:i], first, true
}

// nodeKey names a flow's node in a cursor source: the node name as the
// flow gave it (Cilium's "cluster/node"), when it is short and made of
// the characters node names use, else a hash of it. It is stable across
// processes and versions: stored spans are looked up by it.
func (c *coverage) nodeKey(raw []byte) string {
	if k, ok := c.nodes[string(raw)]; ok {
		return k
	}
	k := string(raw)
	if !plainNodeName(raw) {
		h := fnv.New64a()
		h.Write(raw)
		k = "fnv64a:" + hex.EncodeToString(h.Sum(nil))
	}
	if len(c.nodes) < 100_000 {
		c.nodes[string(raw)] = k
	}
	return k
}

func plainNodeName(b []byte) bool {
	if len(b) > egressd.MaxNameLen {
		return false
	}
	for _, ch := range b {
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9', ch == '-', ch == '.', ch == '_', ch == '/':
		default:
			return false
		}
	}
	return true
}

// place returns the cursor source that the flow of node at ts advances, or
// covered when an earlier replay already handled the node's flows around
// ts.
func (c *coverage) place(node string, ts int64) (source string, covered bool) {
	ss := c.stored[node]
	// The last span starting at or before ts is the only one that can
	// hold it: the spans are merged.
	if i, found := slices.BinarySearchFunc(ss, ts, func(s timeSpan, t int64) int { return cmp.Compare(s.first, t) }); found {
		return "", true
	} else if i > 0 && ts <= ss[i-1].last {
		return "", true
	}
	runs := c.runs[node]
	if j, ok := c.last[node]; ok && fits(runs[j].timeSpan, ts) {
		runs[j].last = max(runs[j].last, ts)
		return runs[j].source, false
	}
	best := -1
	for j := range runs {
		if fits(runs[j].timeSpan, ts) && (best < 0 || runs[j].first > runs[best].first) {
			best = j
		}
	}
	if best < 0 && len(runs) >= maxReplaySpans {
		best = len(runs) - 1
		for j := range runs {
			if runs[j].first > runs[best].first {
				best = j
			}
		}
	}
	if best >= 0 {
		runs[best].last = max(runs[best].last, ts)
		c.last[node] = best
		return runs[best].source, false
	}
	c.runs[node] = append(runs, run{timeSpan: timeSpan{ts, ts}, source: ReplaySource(node, ts)})
	c.last[node] = len(runs)
	return c.runs[node][len(runs)].source, false
}

// fits reports whether ts belongs to the run of s: from its first flow to
// replayGap after its last.
func fits(s timeSpan, ts int64) bool {
	return ts >= s.first && ts-s.last <= replayGap
}
