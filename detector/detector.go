package detector

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/baseline"
)

// Store keeps anomalies (postgres.DB, wrapped by cmd to also wake the alert
// sender). Raise returns false when the fingerprint was already stored.
type Store interface {
	Raise(ctx context.Context, a egressd.Anomaly) (bool, error)
	Resolve(ctx context.Context, fingerprint string, at time.Time) error
}

// Options configure the detector.
type Options struct {
	// LearningPeriod starts when an app is first seen (flow time); during
	// it the app's destinations are learnt, never raised.
	LearningPeriod time.Duration
	// FloodThreshold novel destinations of one app within FloodWindow are
	// raised one by one; more are summarised in one flood anomaly.
	FloodThreshold int
	FloodWindow    time.Duration
	// DNSFloodThreshold distinct names asked in DNS by one app within
	// FloodWindow raise one dns_tunnel anomaly (EgressDNSTunnel): a DNS tunnel asks for
	// thousands of names it never connects to, which no connection
	// novelty would show. Apps that are learning or unbounded are not
	// judged; 0 turns the rule off.
	DNSFloodThreshold int
	// DNSTunnelNames distinct tunnel-shaped names (long runs of letters
	// and digits with the entropy of encoded data, shape.go) asked by one
	// app under one registrable domain within FloodWindow raise
	// dns_tunnel too, however few names the app asks in all: a tunnel
	// that stays under DNSFloodThreshold. 0 turns the rule off.
	DNSTunnelNames int
	// Unbounded apps raise no novelty (volume only), in addition to those
	// whose baseline file says "unbounded": true.
	Unbounded []egressd.App
	// QueueSize bounds anomalies waiting for the store.
	QueueSize int
	// MaxKeysPerApp bounds the keys one app adds to the live window, so
	// that an app reaching millions of names (a DNS tunnel, a scanner)
	// costs a bounded memory. Past it, the app's novel destinations are
	// still judged, raised and folded into floods, but not remembered
	// (egressd_detector_keys_not_remembered_total): one seen again is
	// novel again, which for such an app only keeps its flood going.
	MaxKeysPerApp int
	// Volume configures the volume rule; a zero Factor disables it.
	Volume VolumeOptions
	// Shared says that collectors of other sources (one per node) write
	// the same store, so this detector sees only its share of each app:
	// the Store then judges each novel destination for the whole cluster
	// before raising it (it reports one known there as already stored),
	// and a new key of an app whose first sight was this detector's own,
	// not the store's (LoadApps), goes to the Store too rather than being
	// learnt locally, since the app may have left its learning period on
	// another node long ago. Such a key skips the flood count.
	Shared bool
}

// DefaultOptions returns the documented defaults.
func DefaultOptions() Options {
	return Options{
		LearningPeriod: 24 * time.Hour,
		FloodThreshold: 5,
		FloodWindow:    10 * time.Minute,
		QueueSize:      10_000,
		// Apps ask for a handful of names, again and again; a monitoring
		// app probing hundreds of hosts is unbounded or needs more.
		DNSFloodThreshold: 500,
		// A few hundred encoded names under one domain in minutes is a
		// tunnel moving a few kilobytes; no app asks 100 such names.
		DNSTunnelNames: 100,
		MaxKeysPerApp:  100_000,
		Volume:         DefaultVolumeOptions(),
	}
}

// Validate reports the first invalid field.
func (o Options) Validate() error {
	switch {
	case o.LearningPeriod < 0:
		return errors.New("detector: Options.LearningPeriod must be >= 0")
	case o.FloodThreshold <= 0:
		return errors.New("detector: Options.FloodThreshold must be > 0")
	case o.FloodWindow <= 0:
		return errors.New("detector: Options.FloodWindow must be > 0")
	case o.DNSFloodThreshold < 0:
		return errors.New("detector: Options.DNSFloodThreshold must be >= 0")
	case o.DNSTunnelNames < 0:
		return errors.New("detector: Options.DNSTunnelNames must be >= 0")
	case o.QueueSize <= 0:
		return errors.New("detector: Options.QueueSize must be > 0")
	case o.MaxKeysPerApp <= 0:
		return errors.New("detector: Options.MaxKeysPerApp must be > 0")
	}
	return o.Volume.Validate()
}

// key is an (app, destination, port, protocol) with its strings, as the
// few accepted destinations are kept.
type key struct {
	app   egressd.App
	name  string
	port  uint16
	proto string
}

// keyHash identifies a key in the index of judged keys: a 128-bit keyed
// hash instead of the key's strings, so that the index costs about 20
// bytes per key and holds no destination name alive (BENCHMARKS.md: <= 300
// bytes per active key at 1M keys, with the aggregator). Two keys share a
// hash with probability about n^2/2^129 (1.5e-27 at 1M keys); the seeds
// are random per process, so flow content cannot aim at a collision, and
// a collision could only make a novel destination pass as known. Nothing
// enumerates the index, so it needs no key back.
type keyHash [16]byte

// keyState is what the index knows of a key: whether it is in the live
// rolling window, and the generation of the "judged normal" cache in which
// it was last judged normal (0: never), so that SetAccepted and
// SetBaselines drop every decision at once by moving to a new generation.
type keyState uint8

const (
	inWindow keyState = 0x80
	genMask  keyState = 0x7f
)

type appState struct {
	firstSeen time.Time
	// confirmed: firstSeen came from the store (LoadApps), so the
	// learning period it starts holds for the whole cluster.
	confirmed bool
	file      *baseline.Matcher // the committed baseline, when there is one
	unbounded bool
	flood     floodState
	dns       dnsFloodState
}

// dnsFloodState counts the distinct names an app asked in DNS in the
// current window: at most DNSFloodThreshold hashes, and the tunnel-shaped
// ones per registrable domain, dropped once the tunnel is raised, whatever
// its size.
type dnsFloodState struct {
	start time.Time
	names map[uint64]struct{}
	// shaped holds, per registrable domain (hashed), the tunnel-shaped
	// names asked under it: at most DNSTunnelNames per domain, for at
	// most maxTunnelDomains domains.
	shaped map[uint64]map[uint64]struct{}
	raised bool
}

// floodState is a few counters whatever the size of the flood: its members
// are not kept (the flood anomaly names the first one past the threshold,
// the store has the first FloodThreshold ones).
type floodState struct {
	start  time.Time // start of the current window
	count  int       // novel destinations in it
	raised bool      // the flood anomaly of this window was raised
}

// Detector judges observations. It is a collector Sink: Observe never
// blocks on the store.
type Detector struct {
	opts    Options
	store   Store
	log     *slog.Logger
	metrics *Metrics
	queue   chan job

	seeds [2]maphash.Seed // of keyHash; fixed for the detector's life

	mu sync.Mutex
	// keys indexes the live rolling window and the keys judged normal in
	// generation gen: the one-lookup fast path. windowKeys counts the
	// first.
	keys       map[keyHash]keyState
	gen        keyState
	windowKeys int
	// appKeys counts the keys each app put in the live window, for
	// Options.MaxKeysPerApp.
	appKeys map[egressd.App]int
	// pending holds the keys whose novelty anomaly is queued but not yet
	// stored: a key becomes known (joins the window) only once its
	// anomaly is durable, so that one the store never got is raised again.
	pending  map[keyHash]struct{}
	accepted map[key]struct{}
	apps     map[egressd.App]*appState
	files    map[egressd.App]egressd.Baseline
	volume   *volumeRule
	// evidence, when set, tells each anomaly's prevalence (UseEvidence);
	// flush, when set, writes what the store lacks first (SetFlush).
	evidence EvidenceStore
	flush    atomic.Pointer[func(context.Context) error]
	// volumeErr is RunVolume's source error while it fails.
	volumeErr error

	// acceptedPatterns holds the accepted toFQDNs patterns
	// ("*.example.com") per app; an empty cluster is every cluster.
	acceptedPatterns map[egressd.App]*baseline.Matcher
}

type job struct {
	anomaly egressd.Anomaly
	resolve bool
	// stored, when set, runs under Detector.mu once the store has the
	// anomaly; lost when it will not get it (the queue was full, or the
	// detector stopped first), so that the state that raised it lets it
	// be raised again.
	stored, lost func()
	// gathered: the anomaly's evidence and severity are set (once, even
	// when the store is retried).
	gathered bool
}

// New returns a detector recording anomalies in store.
func New(opts Options, store Store, log *slog.Logger, m *Metrics) (*Detector, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	d := &Detector{
		opts: opts, store: store, log: log, metrics: m,
		queue:    make(chan job, opts.QueueSize),
		seeds:    [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		keys:     make(map[keyHash]keyState),
		appKeys:  make(map[egressd.App]int),
		pending:  make(map[keyHash]struct{}),
		gen:      1,
		accepted: make(map[key]struct{}),
		apps:     make(map[egressd.App]*appState),
		files:    make(map[egressd.App]egressd.Baseline),
	}
	d.volume = newVolumeRule(opts.Volume)
	d.volume.firstSeen = func(a egressd.App) time.Time {
		if st := d.apps[a]; st != nil {
			return st.firstSeen
		}
		return time.Time{}
	}
	return d, nil
}

func keyOf(a egressd.App, dst egressd.Destination) key {
	return key{app: a, name: dst.Name, port: dst.Port, proto: dst.Protocol}
}

// hash returns the index key of (a, dst): two 64-bit maphash sums with
// independent seeds of the same bytes, in which each string is preceded by
// its length, so that no two different keys write the same bytes.
func (d *Detector) hash(a egressd.App, dst egressd.Destination) keyHash {
	var buf [512]byte // enough for validated names; longer ones spill to the heap
	b := buf[:0]
	for _, s := range [...]string{a.Cluster, a.Namespace, a.Name, dst.Name, dst.Protocol} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.LittleEndian.AppendUint16(b, dst.Port)
	var k keyHash
	binary.LittleEndian.PutUint64(k[:8], maphash.Bytes(d.seeds[0], b))
	binary.LittleEndian.PutUint64(k[8:], maphash.Bytes(d.seeds[1], b))
	return k
}

// addWindow puts the key of app a hashed to h, whose entry is st, in the
// live window, under d.mu, and reports false when the app has no room
// left (Options.MaxKeysPerApp).
func (d *Detector) addWindow(a egressd.App, h keyHash, st keyState) bool {
	if st&inWindow != 0 {
		return true
	}
	n := d.appKeys[a]
	if n >= d.opts.MaxKeysPerApp {
		d.metrics.NotRemembered.Inc()
		return false
	}
	d.appKeys[a] = n + 1
	d.keys[h] = st | inWindow
	d.windowKeys++
	d.metrics.KnownKeys.Set(float64(d.windowKeys))
	return true
}

// forgetJudgments drops every "judged normal" decision, under d.mu, when
// what keys were judged against changed, by starting a new generation:
// O(1), since serve refreshes every 30 s and a pass over a million keys
// would stall Observe for tens of milliseconds each time. Entries of keys
// outside the window (judged normal by an acceptance or a file) stay until
// they are judged again, or until the generation wraps around (every 127
// refreshes), when one pass deletes them and resets the rest, so that an
// old generation never passes for the current one.
func (d *Detector) forgetJudgments() {
	d.gen++
	if d.gen <= genMask {
		return
	}
	d.gen = 1
	for h, st := range d.keys {
		if st&inWindow == 0 {
			delete(d.keys, h)
		} else {
			d.keys[h] = inWindow
		}
	}
}

// LoadWindow adds (app, destination) pairs to the live window: what the
// store saw in the last window before a restart.
func (d *Detector) LoadWindow(entries []egressd.WindowEntry) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, e := range entries {
		h := d.hash(e.App, e.Destination)
		d.addWindow(e.App, h, d.keys[h])
	}
	d.metrics.KnownKeys.Set(float64(d.windowKeys))
}

// LoadApps records when apps were first seen, for their learning period.
// An earlier time than the one known wins.
func (d *Detector) LoadApps(firstSeen map[egressd.App]time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for a, t := range firstSeen {
		st := d.app(a, t)
		if t.Before(st.firstSeen) {
			st.firstSeen = t
		}
		st.confirmed = true
	}
}

// SetAccepted replaces the accepted destinations. Port 0 with protocol ANY
// accepts every port of the name; an empty cluster every cluster. A name
// with '*' is a toFQDNs pattern (baseline.MatchName), matched as a
// baseline file's patterns are.
func (d *Detector) SetAccepted(acc []egressd.Accepted) {
	m := make(map[key]struct{}, len(acc))
	patterns := make(map[egressd.App]egressd.Baseline)
	for _, a := range acc {
		if strings.Contains(a.Destination.Name, "*") {
			b := patterns[a.App]
			b.Destinations = append(b.Destinations, egressd.BaselineDestination{
				Name:  a.Destination.Name,
				Ports: []egressd.Port{{Number: a.Destination.Port, Protocol: a.Destination.Protocol}},
			})
			patterns[a.App] = b
			continue
		}
		m[keyOf(a.App, a.Destination)] = struct{}{}
	}
	matchers := make(map[egressd.App]*baseline.Matcher, len(patterns))
	for app, b := range patterns {
		matchers[app] = baseline.NewMatcher(b)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.accepted = m
	d.acceptedPatterns = matchers
	d.forgetJudgments() // decisions may have changed
}

// SetBaselines replaces the committed baseline files. An app with a file is
// judged against the file only (plus accepted destinations); its
// "unbounded" flag silences novelty.
func (d *Detector) SetBaselines(bs []egressd.Baseline) {
	files := make(map[egressd.App]egressd.Baseline, len(bs))
	for _, b := range bs {
		files[egressd.App{Namespace: b.Namespace, Name: b.App}] = b
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.files = files
	for a, st := range d.apps {
		d.attachFile(a, st)
	}
	d.forgetJudgments()
}

// app returns the state of an app, creating it first seen at t.
func (d *Detector) app(a egressd.App, t time.Time) *appState {
	st := d.apps[a]
	if st == nil {
		st = &appState{firstSeen: t}
		d.attachFile(a, st)
		d.apps[a] = st
		d.metrics.Apps.Set(float64(len(d.apps)))
	}
	return st
}

func (d *Detector) attachFile(a egressd.App, st *appState) {
	st.file, st.unbounded = nil, false
	for _, u := range d.opts.Unbounded {
		if u.Namespace == a.Namespace && u.Name == a.Name {
			st.unbounded = true
		}
	}
	// Files are per namespace/app; the cluster is not part of their name.
	if b, ok := d.files[egressd.App{Namespace: a.Namespace, Name: a.Name}]; ok {
		st.file = baseline.NewMatcher(b)
		st.unbounded = st.unbounded || b.Unbounded
	}
}

// Observe judges one observation. DNS questions are not destinations:
// they only count towards a DNS flood.
func (d *Detector) Observe(o *egressd.Observation) {
	if o.Kind == egressd.KindDNSQuery && d.dnsRules() {
		d.mu.Lock()
		a, raise := d.dnsFlood(o)
		d.mu.Unlock()
		if raise {
			d.enqueue(d.dnsTunnelJob(a))
		}
		return
	}
	if o.Kind != egressd.KindConnect {
		return
	}
	d.metrics.Observed.Inc()
	h := d.hash(o.App, o.Destination)
	d.mu.Lock()
	d.volume.observe(o)
	// A missing key reads as generation 0, never the current one.
	if d.keys[h]&genMask == d.gen {
		d.mu.Unlock()
		return
	}
	d.metrics.SlowPath.Inc()
	a, raise := d.judge(h, o)
	d.mu.Unlock()
	if raise {
		d.enqueue(d.noveltyJob(a, h))
	}
}

// noveltyJob is the job of an anomaly judge raised for the key hashed to h:
// a novel destination joins the window once stored and leaves the pending
// keys either way; a flood that was lost is raised again by the next
// member of its window.
func (d *Detector) noveltyJob(a egressd.Anomaly, h keyHash) job {
	app := a.App
	if a.Kind == egressd.AnomalyNovelFlood {
		start := a.Details["window_start"]
		return job{anomaly: a, lost: func() {
			if st := d.apps[app]; st != nil && st.flood.start.UTC().Format(time.RFC3339) == start {
				st.flood.raised = false
			}
		}}
	}
	return job{
		anomaly: a,
		stored: func() {
			delete(d.pending, h)
			if d.addWindow(app, h, d.keys[h]) {
				d.keys[h] = inWindow | d.gen
			}
		},
		lost: func() { delete(d.pending, h) },
	}
}

// judge is the slow path, under d.mu.
func (d *Detector) judge(h keyHash, o *egressd.Observation) (egressd.Anomaly, bool) {
	st, learning := d.appAt(o)
	ks := d.keys[h]
	if known, _ := d.known(keyOf(o.App, o.Destination), ks, st); known {
		d.keys[h] = ks&inWindow | d.gen
		return egressd.Anomaly{}, false
	}
	if _, ok := d.pending[h]; ok {
		return egressd.Anomaly{}, false // raised; the store has not answered yet
	}
	// From here on the key is new for this app. Unless its novelty is
	// raised, it joins the live window at once, so it is judged once
	// (unless the app has no room left there).
	remember := func() {
		if d.addWindow(o.App, h, d.keys[h]) {
			d.keys[h] = inWindow | d.gen
		}
	}
	switch {
	case learning && d.opts.Shared && !st.confirmed:
		// Learning for this detector, which first saw the app just now;
		// the store knows whether the cluster has.
		a := anomalyOf(o, st, egressd.AnomalyNovelDestination, egressd.NoveltyFingerprint(o.App, o.Destination))
		a.Details = map[string]string{"verdict": o.Verdict.String(), "name_source": o.NameSource.String()}
		a.Summary = noveltySummary(o)
		d.pending[h] = struct{}{}
		return a, true
	case learning:
		remember()
		d.metrics.Suppressed.WithLabelValues("learning").Inc()
		return egressd.Anomaly{}, false
	case st.unbounded:
		remember()
		d.metrics.Suppressed.WithLabelValues("unbounded").Inc()
		return egressd.Anomaly{}, false
	}
	a := anomalyOf(o, st, egressd.AnomalyNovelDestination, egressd.NoveltyFingerprint(o.App, o.Destination))
	a.Details = map[string]string{"verdict": o.Verdict.String(), "name_source": o.NameSource.String()}
	a.Summary = noveltySummary(o)
	a, raise := d.flood(st, a)
	if !raise || a.Kind != egressd.AnomalyNovelDestination {
		// Folded into the window's flood anomaly, raised or being raised.
		remember()
		return a, raise
	}
	d.pending[h] = struct{}{}
	return a, true
}

// noveltySummary is the summary of a novel destination o reached.
func noveltySummary(o *egressd.Observation) string {
	if o.Verdict.Denied() {
		return fmt.Sprintf("%s tried to reach %s, new for this app (%s)", o.App, o.Destination, o.Verdict)
	}
	return fmt.Sprintf("%s reached %s, new for this app", o.App, o.Destination)
}

// known reports whether k, whose index entry is ks, is normal for the app,
// and by which source.
func (d *Detector) known(k key, ks keyState, st *appState) (bool, string) {
	// An acceptance names the exact port or every port (0/ANY), and one
	// cluster or every cluster (an empty one).
	anyCluster := egressd.App{Namespace: k.app.Namespace, Name: k.app.Name}
	for _, a := range []key{
		k, {app: k.app, name: k.name, proto: egressd.ProtoAny},
		{app: anyCluster, name: k.name, port: k.port, proto: k.proto}, {app: anyCluster, name: k.name, proto: egressd.ProtoAny},
	} {
		if _, ok := d.accepted[a]; ok {
			return true, "accepted"
		}
	}
	for _, app := range [...]egressd.App{k.app, anyCluster} {
		if m := d.acceptedPatterns[app]; m != nil && m.Match(k.name, k.port, k.proto) {
			return true, "accepted"
		}
	}
	if st.file != nil {
		return st.file.Match(k.name, k.port, k.proto), "files"
	}
	return ks&inWindow != 0, "window"
}

// flood lets the first FloodThreshold novel destinations of a window through
// and folds the rest into one flood anomaly.
func (d *Detector) flood(st *appState, a egressd.Anomaly) (egressd.Anomaly, bool) {
	f := &st.flood
	if f.start.IsZero() || a.Time.Sub(f.start) >= d.opts.FloodWindow {
		*f = floodState{start: a.Time}
	}
	f.count++
	if f.count <= d.opts.FloodThreshold {
		return a, true
	}
	d.metrics.Suppressed.WithLabelValues("flood").Inc()
	if f.raised {
		return egressd.Anomaly{}, false
	}
	f.raised = true
	fl := a
	fl.Kind = egressd.AnomalyNovelFlood
	fl.Fingerprint = egressd.FloodFingerprint(a.App, f.start)
	fl.Time = a.Time
	fl.Summary = fmt.Sprintf("%s reached more than %d new destinations within %s (e.g. %s); further ones in this window are not raised one by one",
		a.App, d.opts.FloodThreshold, d.opts.FloodWindow, a.Destination)
	fl.Details = map[string]string{
		"window_start": f.start.UTC().Format(time.RFC3339),
		"threshold":    strconv.Itoa(d.opts.FloodThreshold),
		"first_extra":  a.Destination.String(),
		"domain":       registrableDomain(a.Destination.Name),
	}
	return fl, true
}

// dnsFlood counts o's name among its app's DNS questions of the window,
// under d.mu, and raises the window's DNS tunnel once they are more than
// DNSFloodThreshold distinct names, or DNSTunnelNames distinct
// tunnel-shaped names under one registrable domain (shape.go).
func (d *Detector) dnsFlood(o *egressd.Observation) (egressd.Anomaly, bool) {
	st, learning := d.appAt(o)
	if st.unbounded || learning {
		return egressd.Anomaly{}, false
	}
	f := &st.dns
	if f.start.IsZero() || o.Time.Sub(f.start) >= d.opts.FloodWindow {
		*f = dnsFloodState{start: o.Time}
	}
	if f.raised {
		return egressd.Anomaly{}, false
	}
	name := o.Destination.Name
	if d.opts.DNSFloodThreshold > 0 {
		if f.names == nil {
			f.names = make(map[uint64]struct{})
		}
		f.names[maphash.String(d.seeds[0], name)] = struct{}{}
		if len(f.names) > d.opts.DNSFloodThreshold {
			domain := registrableDomain(name)
			a := d.dnsTunnel(o, st, domain)
			a.Summary = fmt.Sprintf("%s asked DNS for more than %d distinct names within %s (e.g. %s under %s): a DNS tunnel?",
				o.App, d.opts.DNSFloodThreshold, d.opts.FloodWindow, name, domain)
			a.Details["rule"] = "count"
			a.Details["threshold"] = strconv.Itoa(d.opts.DNSFloodThreshold)
			return a, true
		}
	}
	// The shape is checked first, which needs no domain and rejects
	// almost every name; the domain then says whether the shaped run is
	// below it.
	if d.opts.DNSTunnelNames == 0 {
		return egressd.Anomaly{}, false
	}
	end := shapedRun(name)
	if end < 0 {
		return egressd.Anomaly{}, false
	}
	domain := registrableDomain(name)
	if end > len(name)-len(domain) {
		return egressd.Anomaly{}, false
	}
	dh := maphash.String(d.seeds[1], domain)
	names := f.shaped[dh]
	if names == nil {
		if len(f.shaped) >= maxTunnelDomains {
			return egressd.Anomaly{}, false
		}
		if f.shaped == nil {
			f.shaped = make(map[uint64]map[uint64]struct{})
		}
		names = make(map[uint64]struct{})
		f.shaped[dh] = names
	}
	names[maphash.String(d.seeds[0], name)] = struct{}{}
	if len(names) < d.opts.DNSTunnelNames {
		return egressd.Anomaly{}, false
	}
	a := d.dnsTunnel(o, st, domain)
	a.Summary = fmt.Sprintf("%s asked DNS for %d distinct names under %s within %s whose labels look like encoded data (e.g. %s): a DNS tunnel?",
		o.App, len(names), domain, d.opts.FloodWindow, name)
	a.Details["rule"] = "shape"
	a.Details["threshold"] = strconv.Itoa(d.opts.DNSTunnelNames)
	return a, true
}

// maxTunnelDomains bounds the registrable domains whose tunnel-shaped names
// one app's DNS window counts: a tunnel uses one, and the count rule
// (DNSFloodThreshold) still sees an app that spreads over more.
const maxTunnelDomains = 64

// dnsTunnel marks the window of st raised, under d.mu, and returns its
// dns_tunnel anomaly raised by o, for the rule to complete.
func (d *Detector) dnsTunnel(o *egressd.Observation, st *appState, domain string) egressd.Anomaly {
	f := &st.dns
	f.raised, f.names, f.shaped = true, nil, nil
	a := anomalyOf(o, st, egressd.AnomalyDNSTunnel, egressd.DNSTunnelFingerprint(o.App, f.start))
	a.Details = map[string]string{
		"signal":       "dns",
		"window_start": f.start.UTC().Format(time.RFC3339),
		"first_extra":  o.Destination.Name,
		"domain":       domain,
	}
	return a
}

// dnsRules reports whether a DNS tunnel rule is on.
func (d *Detector) dnsRules() bool {
	return d.opts.DNSFloodThreshold > 0 || d.opts.DNSTunnelNames > 0
}

// appAt returns the state of o's app, its first sight moved back to o
// when o is earlier, and whether the app is still learning at o.
func (d *Detector) appAt(o *egressd.Observation) (st *appState, learning bool) {
	st = d.app(o.App, o.Time)
	if o.Time.Before(st.firstSeen) {
		st.firstSeen = o.Time
	}
	return st, o.Time.Before(st.firstSeen.Add(d.opts.LearningPeriod))
}

// anomalyOf is the anomaly of kind raised by o, for app state st: what the
// observation tells (app, destination, time, pod, node, verdict, name
// source) and the baseline it was compared with.
func anomalyOf(o *egressd.Observation, st *appState, kind egressd.AnomalyKind, fingerprint string) egressd.Anomaly {
	source := "window"
	if st.file != nil {
		source = "files"
	}
	return egressd.Anomaly{
		Fingerprint: fingerprint, Kind: kind, App: o.App, Destination: o.Destination, Time: o.Time,
		Pod: o.Pod, Node: o.Node, Verdict: o.Verdict, NameSource: o.NameSource, BaselineSource: source,
	}
}

// Advance moves the volume rule's clock with the flows of source.
func (d *Detector) Advance(_ string, t time.Time) {
	d.mu.Lock()
	jobs := d.volume.advance(t)
	d.mu.Unlock()
	for _, j := range jobs {
		d.enqueue(j)
	}
}

// dnsTunnelJob is the job of a DNS tunnel anomaly: one that was lost is
// raised again by the window's next question.
func (d *Detector) dnsTunnelJob(a egressd.Anomaly) job {
	app, start := a.App, a.Details["window_start"]
	return job{anomaly: a, lost: func() {
		if st := d.apps[app]; st != nil && st.dns.start.UTC().Format(time.RFC3339) == start {
			st.dns.raised = false
		}
	}}
}

// enqueue hands j to Run. When the queue is full the anomaly is dropped and
// counted, and the state that raised it is told (job.lost), so that it is
// raised again rather than forgotten: a novel destination stays unknown
// until its anomaly is stored, and Prime raises at the next start whatever
// the store still lacks.
func (d *Detector) enqueue(j job) {
	select {
	case d.queue <- j:
	default:
		d.metrics.QueueDropped.Inc()
		d.log.Warn("anomaly_queue_full", "fingerprint", j.anomaly.Fingerprint, "app", j.anomaly.App.String())
		d.settle(j, false)
	}
}

// settle runs j's stored or lost callback under d.mu.
func (d *Detector) settle(j job, stored bool) {
	f := j.lost
	if stored {
		f = j.stored
	}
	if f == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	f()
}

// Run records queued anomalies until ctx ends, then drains what is queued
// with a short deadline. A store error is retried with backoff; the
// anomaly is never dropped while ctx lives.
func (d *Detector) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return d.drain(context.WithoutCancel(ctx), nil)
		case j := <-d.queue:
			if !d.record(ctx, j) {
				// ctx ended while j was being recorded: it is drained
				// first, as if it were still queued.
				return d.drain(context.WithoutCancel(ctx), &j)
			}
		}
	}
}

// drainTimeout bounds what a stop waits for: the store call in flight,
// then the jobs still queued.
const drainTimeout = 10 * time.Second

// drain records first, when set, and what is already queued, for at most
// drainTimeout.
func (d *Detector) drain(ctx context.Context, first *job) error {
	ctx, cancel := context.WithTimeout(ctx, drainTimeout)
	defer cancel()
	for {
		if first != nil {
			if !d.record(ctx, *first) {
				d.settle(*first, false)
			}
			first = nil
			continue
		}
		select {
		case j := <-d.queue:
			if !d.record(ctx, j) {
				d.settle(j, false)
			}
		default:
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("detector: %d anomalies not recorded at shutdown", len(d.queue))
		}
	}
}

// record stores j, retrying a failing store with backoff while ctx lives,
// and reports whether it is done with j; false when ctx ended first, and
// j's lost callback is then the caller's to run. A store call in flight
// when ctx ends is not cancelled with it, only bounded by drainTimeout:
// the stop waits for it as for the jobs still queued, so that the anomaly
// of the last flows is not lost because the stop came while it was being
// written.
func (d *Detector) record(ctx context.Context, j job) bool {
	backoff := 100 * time.Millisecond
	for {
		var err error
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainTimeout)
		if j.resolve {
			err = d.store.Resolve(sctx, j.anomaly.Fingerprint, j.anomaly.ResolvedAt)
		} else {
			// Evidence the store could not give is asked again with
			// each retry (the store is what failed).
			if !j.gathered || j.anomaly.Evidence.Incomplete != "" {
				j.anomaly.Evidence = egressd.Evidence{}
				d.gather(sctx, &j.anomaly)
				j.gathered = true
			}
			var inserted bool
			inserted, err = d.store.Raise(sctx, j.anomaly)
			if err == nil && inserted {
				d.metrics.Raised.WithLabelValues(string(j.anomaly.Kind)).Inc()
			}
		}
		cancel()
		if err == nil {
			d.settle(j, true)
			return true
		}
		if ctx.Err() != nil {
			return false // cancelled, not failed
		}
		d.metrics.StoreErrors.Inc()
		d.log.Warn("anomaly_store_failed", "fingerprint", j.anomaly.Fingerprint, "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// Pending returns how many anomalies wait for the store (for tests and
// shutdown logs).
func (d *Detector) Pending() int { return len(d.queue) }

// sortedApps is for deterministic iteration.
func sortedApps[V any](m map[egressd.App]V) []egressd.App {
	out := make([]egressd.App, 0, len(m))
	for a := range m {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Cluster < out[j].Cluster
	})
	return out
}

// Unbounded reports whether an app raises no novelty: listed in
// Options.Unbounded, or marked "unbounded" in its baseline file.
func (d *Detector) Unbounded(a egressd.App) bool {
	for _, u := range d.opts.Unbounded {
		if u.Namespace == a.Namespace && u.Name == a.Name {
			return true
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	b, ok := d.files[egressd.App{Namespace: a.Namespace, Name: a.Name}]
	return ok && b.Unbounded
}
