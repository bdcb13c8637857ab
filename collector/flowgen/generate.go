package flowgen

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	relaypb "github.com/cilium/cilium/api/v1/relay"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Generate renders the scenario into the responses a Relay client receives,
// in delivery order: by time, except that a replayed duplicate arrives up to
// four seconds after its original, behind newer flows. Every flow's time is in the scenario's
// window; a routine run that would not end inside the window is left out
// whole, so every connection in the output is complete.
//
// Generate is deterministic: the same scenario gives equal responses. Each
// routine and each Extra event draws from its own random source, derived
// from Seed and its position, so planting events changes no other flow.
func (s Scenario) Generate() ([]*observer.GetFlowsResponse, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	g := &generator{s: &s, end: s.Start.Add(s.Duration)}
	g.c = newCluster(&s)
	for _, w := range g.c.workloads {
		for i := range w.spec.Routines {
			g.routine(fmt.Sprintf("workload/%s/%d", w.spec.ref(), i), &w.spec.Routines[i], w, nil)
		}
	}
	for _, n := range g.c.nodes {
		for i := range n.spec.Routines {
			g.routine(fmt.Sprintf("host/%s/%d", n.spec.Name, i), &n.spec.Routines[i], nil, n)
		}
	}
	for i, e := range s.Extra {
		g.event(i, e)
	}
	g.lostEvents()
	g.nodeReconnects()
	slices.SortFunc(g.out, func(a, b item) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
	resps := make([]*observer.GetFlowsResponse, len(g.out))
	for i, it := range g.out {
		resps[i] = it.resp
	}
	return resps, nil
}

// maxReplayLag bounds how much later than its original a duplicate arrives.
const maxReplayLag = 4 * time.Second

// generator holds the state of one Generate call.
type generator struct {
	s   *Scenario
	end time.Time
	c   *cluster
	out []item
	seq uint64
}

// item is a response with its delivery time and a tie-breaker.
type item struct {
	at   time.Time
	seq  uint64
	resp *observer.GetFlowsResponse
}

// newRand returns a random source for one part of the scenario: a function
// of the seed and the part's key only, so parts are independent.
func newRand(seed int64, key string) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(key))
	return rand.New(rand.NewPCG(uint64(seed), h.Sum64()))
}

// stream is the output of one routine or event: its own random sources for
// content, UUIDs and duplicates, and the flows of the run being built.
type stream struct {
	g    *generator
	rng  *rand.Rand
	uuid *rand.Rand
	dup  *rand.Rand
	buf  []*flowpb.Flow
}

func (g *generator) newStream(key string) *stream {
	return &stream{
		g:    g,
		rng:  newRand(g.s.Seed, key),
		uuid: newRand(g.s.Seed, key+"#uuid"),
		dup:  newRand(g.s.Seed, key+"#dup"),
	}
}

// emit adds a flow to the current run.
func (st *stream) emit(f *flowpb.Flow) { st.buf = append(st.buf, f) }

// commit moves the current run to the output if all of it lies inside the
// window, and discards it otherwise. Flows get their UUIDs here, and some
// are delivered a second time.
func (st *stream) commit() {
	defer func() { st.buf = st.buf[:0] }()
	for _, f := range st.buf {
		t := f.GetTime().AsTime()
		if t.Before(st.g.s.Start) || !t.Before(st.g.end) {
			return
		}
	}
	for _, f := range st.buf {
		f.Uuid = formatUUID(st.uuid.Uint64(), st.uuid.Uint64())
		t := f.GetTime().AsTime()
		resp := &observer.GetFlowsResponse{
			ResponseTypes: &observer.GetFlowsResponse_Flow{Flow: f},
			NodeName:      f.GetNodeName(),
			Time:          timestamppb.New(t),
		}
		st.g.add(t, resp)
		if st.dup.Float64() < st.g.s.DuplicateRate {
			lag := 200*time.Millisecond + time.Duration(st.dup.Int64N(int64(maxReplayLag-200*time.Millisecond)))
			st.g.add(t.Add(lag), proto.CloneOf(resp))
		}
	}
}

func (g *generator) add(at time.Time, resp *observer.GetFlowsResponse) {
	g.out = append(g.out, item{at: at, seq: g.seq, resp: resp})
	g.seq++
}

// run is one execution of a routine or event by one source.
type run struct {
	*stream
	src *endpoint // acting pod or host
	t   time.Time // when the next action starts
}

// pause advances the run's clock between two actions.
func (r *run) pause() {
	r.t = r.t.Add(50*time.Millisecond + time.Duration(r.rng.Int64N(int64(400*time.Millisecond))))
}

// routine renders every run of a routine that starts in the window. Exactly
// one of w and n is set.
func (g *generator) routine(key string, rt *Routine, w *workload, n *node) {
	st := g.newStream(key)
	// Runs are at midnight UTC of the start day + At + k*Every, for every
	// integer k that puts them in the window.
	u := g.s.Start.UTC()
	day := time.Date(u.Year(), u.Month(), u.Day(), 0, 0, 0, 0, time.UTC)
	phase := day.Add(rt.At).Sub(g.s.Start) % rt.Every
	if phase < 0 {
		phase += rt.Every
	}
	first := g.s.Start.Add(phase)
	for at := first; at.Before(g.end); at = at.Add(rt.Every) {
		start := at
		if rt.Jitter > 0 {
			start = start.Add(time.Duration(st.rng.Int64N(int64(rt.Jitter))))
		}
		start = start.Add(time.Duration(st.rng.Int64N(int64(time.Second))))
		r := &run{stream: st, t: start}
		switch {
		case n != nil:
			r.src = n.host
		case w.spec.Kind == KindCronJob:
			r.src = g.c.jobPod(w, at, st.rng)
		default:
			r.src = w.pods[st.rng.IntN(len(w.pods))]
		}
		r.do(rt.Do)
		st.commit()
	}
}

// event renders one planted event.
func (g *generator) event(i int, e Event) {
	st := g.newStream(fmt.Sprintf("extra/%d", i))
	r := &run{stream: st, t: e.At}
	if w := g.c.byRef[e.Source]; w != nil {
		if w.spec.Kind == KindCronJob {
			r.src = g.c.jobPod(w, e.At, st.rng) // an extra run of the job
		} else {
			r.src = w.pods[st.rng.IntN(len(w.pods))]
		}
	} else {
		r.src = g.c.nodeByKey[e.Source[len(hostSourcePrefix):]].host
	}
	r.do(e.Do)
	st.commit()
}

func (r *run) do(actions []Action) {
	for i, a := range actions {
		if i > 0 {
			r.pause()
		}
		a.do(r)
	}
}

// jobPod creates the pod of a CronJob's run scheduled at at, named as the
// CronJob and Job controllers name it: <cronjob>-<minutes since epoch>-<5>.
func (c *cluster) jobPod(w *workload, at time.Time, rng *rand.Rand) *endpoint {
	job := fmt.Sprintf("%s-%d", w.spec.Name, at.Unix()/60)
	const alphabet = "bcdfghjklmnpqrstvwxz2456789" // k8s.io/apimachinery/pkg/util/rand
	suffix := make([]byte, 5)
	for i := range suffix {
		suffix[i] = alphabet[rng.IntN(len(alphabet))]
	}
	n := c.nodes[rng.IntN(len(c.nodes))]
	return c.newPod(w, job+"-"+string(suffix), n, []string{
		"batch.kubernetes.io/job-name=" + job,
		"job-name=" + job,
	})
}

// lostEvents adds the agents' reports of events they could not deliver.
func (g *generator) lostEvents() {
	if g.s.LostEvents == 0 {
		return
	}
	rng := newRand(g.s.Seed, "lost-events")
	slot := g.s.Duration / time.Duration(g.s.LostEvents)
	for i := range g.s.LostEvents {
		n := g.c.nodes[rng.IntN(len(g.c.nodes))]
		first := g.s.Start.Add(slot*time.Duration(i) + time.Duration(rng.Int64N(int64(slot/2))))
		last := first.Add(time.Duration(rng.Int64N(int64(2 * time.Second))))
		ev := &flowpb.LostEvent{NumEventsLost: uint64(1 + rng.IntN(400))}
		at := last
		if i%2 == 0 {
			// The ring buffer's losses are counted and reported at most
			// once per interval, with the span they cover.
			ev.Source = flowpb.LostEventSource_HUBBLE_RING_BUFFER
			ev.First = timestamppb.New(first)
			ev.Last = timestamppb.New(last)
			at = last.Add(time.Duration(rng.Int64N(int64(time.Second))))
		} else {
			ev.Source = flowpb.LostEventSource_PERF_EVENT_RING_BUFFER
			ev.Cpu = wrapperspb.Int32(int32(rng.IntN(4)))
		}
		g.add(at, &observer.GetFlowsResponse{
			ResponseTypes: &observer.GetFlowsResponse_LostEvents{LostEvents: ev},
			NodeName:      n.abs,
			Time:          timestamppb.New(at),
		})
	}
}

// nodeReconnects adds Relay's reports of a node dropping out and coming
// back. Relay itself names the responses; it runs on the first node.
func (g *generator) nodeReconnects() {
	if g.s.NodeReconnects == 0 {
		return
	}
	rng := newRand(g.s.Seed, "node-reconnects")
	slot := g.s.Duration / time.Duration(g.s.NodeReconnects)
	relay := g.c.nodes[0].spec.Name
	for i := range g.s.NodeReconnects {
		n := g.c.nodes[rng.IntN(len(g.c.nodes))]
		down := g.s.Start.Add(slot*time.Duration(i) + time.Duration(rng.Int64N(int64(slot/2))))
		up := down.Add(5*time.Second + time.Duration(rng.Int64N(int64(40*time.Second))))
		for _, ev := range []struct {
			at    time.Time
			state relaypb.NodeState
		}{{down, relaypb.NodeState_NODE_UNAVAILABLE}, {up, relaypb.NodeState_NODE_CONNECTED}} {
			g.add(ev.at, &observer.GetFlowsResponse{
				ResponseTypes: &observer.GetFlowsResponse_NodeStatus{NodeStatus: &relaypb.NodeStatusEvent{
					StateChange: ev.state,
					NodeNames:   []string{n.abs},
				}},
				NodeName: relay,
				Time:     timestamppb.New(ev.at),
			})
		}
	}
}

// formatUUID formats 128 random bits as a version 4 UUID, the form Hubble
// uses for flow UUIDs.
func formatUUID(hi, lo uint64) string {
	hi = hi&^0xf000 | 0x4000         // version 4
	lo = lo&^(0xc<<60) | (0x8 << 60) // RFC 4122 variant
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", hi>>32, (hi>>16)&0xffff, hi&0xffff, lo>>48, lo&(1<<48-1))
}
