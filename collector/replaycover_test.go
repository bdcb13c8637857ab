package collector_test

import (
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector"
)

// spanSink keeps the newest time of each cursor source, as the database
// does (greatest), across replays.
type spanSink struct {
	obs     int
	times   []time.Time
	cursors map[string]time.Time
}

func (s *spanSink) Observe(o *egressd.Observation) {
	s.obs++
	s.times = append(s.times, o.Time)
}
func (s *spanSink) Advance(source string, t time.Time) {
	if t.After(s.cursors[source]) {
		s.cursors[source] = t
	}
}

func (s *spanSink) stored() []egressd.Cursor {
	var out []egressd.Cursor
	for src, t := range s.cursors {
		out = append(out, egressd.Cursor{Source: src, Time: t})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Source < out[j].Source })
	return out
}

// replayFlows runs one replay of flows over what db stored, and returns the
// observations it delivered and its already_stored count.
func replayFlows(t *testing.T, db *spanSink, flows ...*flowpb.Flow) (obs int, already float64) {
	obs, already, _ = replayFlowsClock(t, db, flows...)
	return obs, already
}

// replayOnce runs one replay of flows, with the receiving clock at now,
// over the cursors db stored. The returned sink holds what the replay
// delivered and the cursors it advanced, which db does not have yet.
func replayOnce(t *testing.T, now time.Time, db *spanSink, flows []*flowpb.Flow) (*spanSink, *collector.Metrics) {
	t.Helper()
	m := collector.NewMetrics(prometheus.NewRegistry())
	run := &spanSink{cursors: map[string]time.Time{}}
	opts := collector.DefaultOptions()
	opts.Now = func() time.Time { return now }
	p, err := collector.NewPipeline(opts, m, run)
	require.NoError(t, err)
	p.ReplayFrom(db.stored())
	for _, f := range flows {
		b, err := proto.Marshal(resp(f))
		require.NoError(t, err)
		require.NoError(t, p.Handle("replay", b))
	}
	require.NoError(t, p.FinishReplay())
	return run, m
}

// replayFlowsClock is replayFlows that also returns the flows rejected for
// their time.
func replayFlowsClock(t *testing.T, db *spanSink, flows ...*flowpb.Flow) (obs int, already, clock float64) {
	t.Helper()
	run, m := replayOnce(t, t0.Add(30*24*time.Hour), db, flows)
	for src, tm := range run.cursors {
		require.True(t, strings.HasPrefix(src, collector.ReplaySourcePrefix), src)
		db.Advance(src, tm)
	}
	return run.obs, testutil.ToFloat64(m.Skipped.WithLabelValues("already_stored")), testutil.ToFloat64(m.Rejected.WithLabelValues("clock"))
}

// nodeFlows returns n flows of node, one a minute from start, to distinct
// addresses (so the duplicate filter plays no part).
func nodeFlows(node string, start time.Time, n int) []*flowpb.Flow {
	var out []*flowpb.Flow
	for i := range n {
		f := podFlow(start.Add(time.Duration(i)*time.Minute), "140.82.112."+strings.Repeat("1", 1+i%3), 443)
		f.NodeName = node
		out = append(out, f)
	}
	return out
}

func TestReplayCoverage(t *testing.T) {
	t.Parallel()
	a := nodeFlows("k8s-node-1", t0, 10)
	b := nodeFlows("k8s-node-2", t0, 10)
	capture := append(append([]*flowpb.Flow{}, a...), b...)

	t.Run("the same flows twice count once", func(t *testing.T) {
		t.Parallel()
		db := &spanSink{cursors: map[string]time.Time{}}
		obs, already := replayFlows(t, db, capture...)
		require.Equal(t, 20, obs)
		require.Zero(t, already)
		require.Len(t, db.cursors, 2, "one span per node: %v", db.cursors)
		obs, already = replayFlows(t, db, capture...)
		require.Zero(t, obs)
		require.Equal(t, 20.0, already)
	})
	t.Run("an interrupted replay resumes where it stopped", func(t *testing.T) {
		t.Parallel()
		db := &spanSink{cursors: map[string]time.Time{}}
		obs, _ := replayFlows(t, db, append(append([]*flowpb.Flow{}, a[:4]...), b[:6]...)...)
		require.Equal(t, 10, obs)
		obs, already := replayFlows(t, db, capture...)
		require.Equal(t, 10, obs)
		require.Equal(t, 10.0, already)
	})
	t.Run("different captures are not confused", func(t *testing.T) {
		t.Parallel()
		db := &spanSink{cursors: map[string]time.Time{}}
		obs, _ := replayFlows(t, db, nodeFlows("k8s-node-1", t0.Add(24*time.Hour), 10)...)
		require.Equal(t, 10, obs)
		// An older capture of the same node, replayed after a newer
		// one, is stored: a cursor per node would have skipped it.
		obs, already := replayFlows(t, db, capture...)
		require.Equal(t, 20, obs)
		require.Zero(t, already)
		// Another node at the same times is another capture too.
		obs, _ = replayFlows(t, db, nodeFlows("k8s-node-3", t0, 10)...)
		require.Equal(t, 10, obs)
	})
	t.Run("overlapping captures store the overlap once", func(t *testing.T) {
		t.Parallel()
		db := &spanSink{cursors: map[string]time.Time{}}
		first := nodeFlows("k8s-node-1", t0, 20)
		obs, _ := replayFlows(t, db, first[:12]...)
		require.Equal(t, 12, obs)
		obs, already := replayFlows(t, db, first[8:]...)
		require.Equal(t, 8, obs)
		require.Equal(t, 4.0, already)
	})
	t.Run("a stray stamp among a node's flows is rejected", func(t *testing.T) {
		t.Parallel()
		db := &spanSink{cursors: map[string]time.Time{}}
		stray := podFlow(t0.Add(10*24*time.Hour), "140.82.112.9", 443)
		stray.NodeName = "k8s-node-1"
		for _, at := range []int{0, 5, 10} {
			flows := append(append(append([]*flowpb.Flow{}, a[:at]...), stray), a[at:]...)
			obs, _, clock := replayFlowsClock(t, &spanSink{cursors: map[string]time.Time{}}, flows...)
			require.Equal(t, 10, obs, "stray after %d flows", at)
			require.Equal(t, 1.0, clock, "stray after %d flows", at)
		}
		obs, _, _ := replayFlowsClock(t, db, append(append([]*flowpb.Flow{}, a[:5]...), stray)...)
		require.Equal(t, 5, obs)
		// Nothing claims the days up to the stray's stamp.
		obs, already := replayFlows(t, db, nodeFlows("k8s-node-1", t0.Add(2*24*time.Hour), 10)...)
		require.Equal(t, 10, obs)
		require.Zero(t, already)
	})
	t.Run("a jump in time that the next flows confirm is kept", func(t *testing.T) {
		t.Parallel()
		db := &spanSink{cursors: map[string]time.Time{}}
		later := nodeFlows("k8s-node-1", t0.Add(2*24*time.Hour), 5)
		obs, _, clock := replayFlowsClock(t, db, append(append([]*flowpb.Flow{}, a[:5]...), later...)...)
		require.Equal(t, 10, obs)
		require.Zero(t, clock)
		// The last flow is kept within the skew of the one before it;
		// after a longer silence nothing confirms it, and it is rejected.
		last := func(after time.Duration) *flowpb.Flow {
			f := podFlow(later[4].GetTime().AsTime().Add(after), "140.82.112.9", 443)
			f.NodeName = "k8s-node-1"
			return f
		}
		obs, _, clock = replayFlowsClock(t, db, append(append([]*flowpb.Flow{}, later...), last(4*time.Minute))...)
		require.Equal(t, 1, obs, "only the new flow")
		require.Zero(t, clock)
		obs, _, clock = replayFlowsClock(t, db, append(append([]*flowpb.Flow{}, later...), last(time.Hour))...)
		require.Zero(t, obs)
		require.Equal(t, 1.0, clock)
		// A single flow has nothing to be judged against: it is kept.
		obs, _, clock = replayFlowsClock(t, &spanSink{cursors: map[string]time.Time{}}, a[0])
		require.Equal(t, 1, obs)
		require.Zero(t, clock)
	})
	t.Run("a node whose clock runs ahead is rejected", func(t *testing.T) {
		t.Parallel()
		var flows []*flowpb.Flow
		ahead := nodeFlows("k8s-node-2", t0.Add(time.Hour), 10)
		for i := range 10 {
			flows = append(flows, a[i], ahead[i])
		}
		obs, _, clock := replayFlowsClock(t, &spanSink{cursors: map[string]time.Time{}}, flows...)
		require.Equal(t, 10, obs)
		require.Equal(t, 10.0, clock)
	})
	t.Run("node names that are not names are hashed", func(t *testing.T) {
		t.Parallel()
		db := &spanSink{cursors: map[string]time.Time{}}
		odd := nodeFlows("node with spaces@and/an@sign\n", t0, 3)
		obs, _ := replayFlows(t, db, odd...)
		require.Equal(t, 3, obs)
		for src := range db.cursors {
			require.Contains(t, src, "fnv64a:")
			require.NotContains(t, src, " ")
		}
		obs, already := replayFlows(t, db, odd...)
		require.Zero(t, obs)
		require.Equal(t, 3.0, already)
	})
}

// FuzzReplayTimes replays arbitrary sequences of flow times from two nodes:
// every flow is delivered or counted exactly once (held flows included),
// nothing delivered is after the receiving clock's bound, and a second
// replay of the same flows delivers nothing.
func FuzzReplayTimes(f *testing.F) {
	f.Add([]byte{0, 1, 0, 2, 0, 3})
	f.Add([]byte{0, 1, 0x7f, 0xff, 0, 2, 0, 3})
	f.Add([]byte{0x80, 0, 0, 1, 0, 1, 0x7f, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 512 {
			return
		}
		now := t0.Add(24 * time.Hour)
		var flows []*flowpb.Flow
		for i := 0; i+1 < len(data); i += 2 {
			// Minutes around t0, from about -23 to +23 days.
			d := time.Duration(int16(uint16(data[i])<<8|uint16(data[i+1]))) * time.Minute
			fl := podFlow(t0.Add(d), "140.82.112."+strconv.Itoa(1+i%250), 443)
			fl.NodeName = "k8s-node-" + strconv.Itoa(int(data[i]&1))
			fl.Uuid = strconv.Itoa(i)
			flows = append(flows, fl)
		}
		db := &spanSink{cursors: map[string]time.Time{}}
		for pass := range 2 {
			sink, m := replayOnce(t, now, db, flows)
			counted := float64(sink.obs) + testutil.ToFloat64(m.Rejected.WithLabelValues("clock"))
			for _, r := range []string{"already_stored", "duplicate"} {
				counted += testutil.ToFloat64(m.Skipped.WithLabelValues(r))
			}
			require.Equal(t, float64(len(flows)), counted, "pass %d: every flow is delivered or counted once", pass)
			for _, at := range sink.times {
				require.False(t, at.After(now.Add(collector.DefaultOptions().MaxClockSkew)), at)
			}
			for src, tm := range sink.cursors {
				db.Advance(src, tm)
			}
			if pass == 1 {
				require.Zero(t, sink.obs, "a second replay of the same flows delivers nothing")
			}
		}
	})
}
