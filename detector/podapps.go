package detector

import (
	"cmp"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/egressd/egressd"
)

// PodAppOptions configure a PodAppMap.
type PodAppOptions struct {
	// TTL is how long, in flow time, a pod is remembered after its last
	// observation. It must outlast the volume rule's history window (24 h
	// by default), so that the pods that made an app's history are still
	// attributed to it when the history is summed.
	TTL time.Duration
	// MaxPods bounds the map. When it is full, the pods seen longest ago
	// are forgotten first (and counted).
	MaxPods int
	// MaxPodsPerApp bounds the pods of one app, so that one app making
	// pods by the thousand (a Job gone wrong, an attacker) cannot push the
	// other apps' pods out of the map. An app at the bound gets no new pod
	// until some of its pods expire; its pods not kept are counted
	// (PodAppStats.Refused, egressd_detector_pods_not_kept_total).
	MaxPodsPerApp int
}

// DefaultPodAppOptions returns a TTL of 48 h of flow time and room for
// 200,000 pods (roughly 250 bytes each, about 50 MB when full), at most
// 5,000 of one app (a pod every 35 s for the 48 h).
func DefaultPodAppOptions() PodAppOptions {
	return PodAppOptions{TTL: 48 * time.Hour, MaxPods: 200_000, MaxPodsPerApp: 5_000}
}

// Validate reports the first invalid field.
func (o PodAppOptions) Validate() error {
	switch {
	case o.TTL <= 0:
		return errors.New("detector: PodAppOptions.TTL must be > 0 (e.g. 48h, twice the volume history window)")
	case o.MaxPods <= 0:
		return errors.New("detector: PodAppOptions.MaxPods must be > 0")
	case o.MaxPodsPerApp <= 0:
		return errors.New("detector: PodAppOptions.MaxPodsPerApp must be > 0")
	}
	return nil
}

// podAppKey identifies a pod. A struct of two strings, not "ns/pod", so a
// lookup allocates nothing.
type podAppKey struct {
	namespace, pod string
}

// podAppEntry is a pod's app and when it was last observed. lastSeen is
// updated under the read lock, hence atomic.
type podAppEntry struct {
	app      egressd.App
	lastSeen atomic.Int64 // Unix nanoseconds, flow time
}

// podAppResolution is the precision of last-seen times: an observation of a
// known pod less than this after its last-seen time writes nothing, so the
// hot path of a busy pod is a map lookup under a read lock.
const podAppResolution = int64(time.Second)

// PodAppMap remembers which app each pod was attributed to, from the
// observations the collector hands it, so that per-pod metrics (cAdvisor's
// container_network_transmit_bytes_total) can be summed per app. It
// implements PodApps, and collector.Sink through Observe and Advance.
//
// Time is flow time: a pod is forgotten once the newest observation of any
// pod is more than TTL past the pod's last observation, so a replayed
// capture ages pods as it would have live. The map holds at most MaxPods
// pods; beyond that the ones seen longest ago are evicted.
//
// Pods are told apart by namespace and name, as cAdvisor labels them: with
// flows from several clusters, a pod name used in two of them maps to the
// app observed last, so give each cluster its own map and Prometheus
// selector (PrometheusOptions.ExtraMatchers).
//
// It is safe for concurrent use. Observing a pod already known costs a map
// lookup under a read lock; only new pods, a pod's new app and, at most once
// a second of flow time per pod, its last-seen time write.
type PodAppMap struct {
	opts PodAppOptions

	// clock is the newest observation time, Unix nanoseconds: "now" in
	// flow time. It moves only forward.
	clock atomic.Int64

	mu        sync.RWMutex
	pods      map[podAppKey]*podAppEntry
	perApp    map[egressd.App]int // pods held per app
	lastSweep int64               // clock at the last sweep of expired pods
	expired   uint64
	evicted   uint64
	refused   uint64
}

// NewPodAppMap returns an empty map.
func NewPodAppMap(opts PodAppOptions) (*PodAppMap, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return &PodAppMap{opts: opts, pods: make(map[podAppKey]*podAppEntry), perApp: make(map[egressd.App]int)}, nil
}

// Observe records that o's pod belongs to o's app as of o.Time.
// Observations without a pod (host-network traffic, attributed to
// host/<node>) are ignored: cAdvisor has no per-pod series for them.
func (m *PodAppMap) Observe(o *egressd.Observation) {
	if o.Pod == "" || o.App.Name == "" {
		return
	}
	t := o.Time.UnixNano()
	m.advanceClock(t)
	if t < m.clock.Load()-int64(m.opts.TTL) {
		return // already expired: a straggler from a lagging stream
	}
	k := podAppKey{o.App.Namespace, o.Pod}

	m.mu.RLock()
	e := m.pods[k]
	if e != nil && e.app == o.App {
		podAppTouch(e, t)
		m.mu.RUnlock()
		return
	}
	m.mu.RUnlock()

	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.pods[k]; e != nil {
		// Another goroutine may have inserted it meanwhile; the pod's app
		// may also have changed (relabelled pod): the newest one wins.
		if e.app != o.App && t >= e.lastSeen.Load() {
			m.countLocked(e.app, -1)
			e.app = podAppCloneApp(o.App)
			m.countLocked(e.app, 1)
		}
		podAppTouch(e, t)
		return
	}
	m.sweepLocked(false)
	if m.perApp[o.App] >= m.opts.MaxPodsPerApp {
		m.sweepLocked(true)
		if m.perApp[o.App] >= m.opts.MaxPodsPerApp {
			m.refused++
			return
		}
	}
	if len(m.pods) >= m.opts.MaxPods {
		m.evictLocked()
	}
	e = &podAppEntry{app: podAppCloneApp(o.App)}
	m.countLocked(e.app, 1)
	e.lastSeen.Store(t)
	// Clone the names: an observation's strings may share memory with a
	// decoded flow batch, which the map must not keep alive.
	m.pods[podAppKey{strings.Clone(k.namespace), strings.Clone(k.pod)}] = e
}

// Load adds pods stored before a restart, each as of its last-seen time,
// so that the history of per-pod metrics is summed per app at once rather
// than only for pods observed again. A pod already known keeps what it
// knows when that is newer.
func (m *PodAppMap) Load(pods []egressd.AppPod) {
	for _, p := range pods {
		m.Observe(&egressd.Observation{App: p.App, Pod: p.Pod, Time: p.LastSeen})
	}
}

// Advance does nothing: the map's clock is the observations' own time. It
// exists so that a PodAppMap can be one of the collector's sinks.
func (m *PodAppMap) Advance(string, time.Time) {}

// AppOf returns the app of a pod observed within TTL of the newest
// observation.
func (m *PodAppMap) AppOf(namespace, pod string) (egressd.App, bool) {
	m.mu.RLock()
	e := m.pods[podAppKey{namespace, pod}]
	var app egressd.App
	ok := e != nil && !m.expiredLocked(e)
	if ok {
		app = e.app
	}
	m.mu.RUnlock()
	return app, ok
}

// Len returns the number of pods held, including expired ones not yet
// swept.
func (m *PodAppMap) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.pods)
}

// PodAppStats counts what a PodAppMap forgot.
type PodAppStats struct {
	// Pods held now.
	Pods int
	// Expired counts pods forgotten because they were not observed for TTL.
	Expired uint64
	// Evicted counts pods forgotten early because the map was full.
	Evicted uint64
	// Refused counts new pods not kept because their app had
	// MaxPodsPerApp pods.
	Refused uint64
	// Apps counts the apps with pods held.
	Apps int
}

// Stats returns the map's counters.
func (m *PodAppMap) Stats() PodAppStats {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return PodAppStats{Pods: len(m.pods), Expired: m.expired, Evicted: m.evicted, Refused: m.refused, Apps: len(m.perApp)}
}

// advanceClock moves the clock forward to t, at podAppResolution, so that
// goroutines observing in step do not all write the same word for every
// observation.
func (m *PodAppMap) advanceClock(t int64) {
	for {
		c := m.clock.Load()
		if t < c+podAppResolution || m.clock.CompareAndSwap(c, t) {
			return
		}
	}
}

func (m *PodAppMap) expiredLocked(e *podAppEntry) bool {
	return e.lastSeen.Load() < m.clock.Load()-int64(m.opts.TTL)
}

// sweepLocked forgets expired pods. It scans the whole map, so it runs only
// when the clock has moved by TTL/8 since the last sweep: each pod outlives
// its TTL by at most an eighth, and the cost is amortized over the inserts
// of that time. AppOf hides expired pods in the meantime.
func (m *PodAppMap) sweepLocked(force bool) {
	now := m.clock.Load()
	if !force && now-m.lastSweep < int64(m.opts.TTL/8) {
		return
	}
	m.lastSweep = now
	limit := now - int64(m.opts.TTL)
	for k, e := range m.pods {
		if e.lastSeen.Load() < limit {
			m.countLocked(e.app, -1)
			delete(m.pods, k)
			m.expired++
		}
	}
}

// evictLocked makes room when the map is full: it drops expired pods, and if
// none were, the 1/16 of pods seen longest ago (at least one), so that the
// O(n log n) sort is paid once per MaxPods/16 inserts rather than per
// insert.
func (m *PodAppMap) evictLocked() {
	m.sweepLocked(true)
	if len(m.pods) < m.opts.MaxPods {
		return
	}
	type aged struct {
		k podAppKey
		e *podAppEntry
		t int64
	}
	all := make([]aged, 0, len(m.pods))
	for k, e := range m.pods {
		all = append(all, aged{k, e, e.lastSeen.Load()})
	}
	slices.SortFunc(all, func(a, b aged) int { return cmp.Compare(a.t, b.t) })
	n := max(1, len(all)/16, len(all)-m.opts.MaxPods+1)
	for _, a := range all[:n] {
		m.countLocked(a.e.app, -1)
		delete(m.pods, a.k)
	}
	m.evicted += uint64(n)
}

// podAppTouch moves e's last-seen time forward to t, at podAppResolution.
func podAppTouch(e *podAppEntry, t int64) {
	for {
		last := e.lastSeen.Load()
		if t < last+podAppResolution || e.lastSeen.CompareAndSwap(last, t) {
			return
		}
	}
}

func podAppCloneApp(a egressd.App) egressd.App {
	return egressd.App{Cluster: strings.Clone(a.Cluster), Namespace: strings.Clone(a.Namespace), Name: strings.Clone(a.Name)}
}

// countLocked adds d to the pods counted for app a.
func (m *PodAppMap) countLocked(a egressd.App, d int) {
	n := m.perApp[a] + d
	if n <= 0 {
		delete(m.perApp, a)
		return
	}
	m.perApp[a] = n
}
