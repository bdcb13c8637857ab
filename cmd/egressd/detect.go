package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/baseline"
	"github.com/egressd/egressd/detector"
	"github.com/egressd/egressd/postgres"
)

// anomalyDB is what the detector's store needs of postgres.DB.
type anomalyDB interface {
	RecordAnomaly(ctx context.Context, a egressd.Anomaly, targets []string, now time.Time) (bool, error)
	ResolveAnomaly(ctx context.Context, fingerprint string, at time.Time) (bool, error)
}

// clusterDB judges a novel destination for the whole cluster, in per-node
// mode (postgres.DB.ClusterKnows).
type clusterDB interface {
	ClusterKnows(ctx context.Context, app egressd.App, dst egressd.Destination, at time.Time, learning, window time.Duration) (string, error)
}

// detectorStore records anomalies in PostgreSQL with one outbox row per
// Alertmanager, then wakes the alert sender so delivery takes milliseconds.
type detectorStore struct {
	db      anomalyDB
	targets []string
	now     func() time.Time
	wake    func()
	// onNew is told of every anomaly stored for the first time.
	onNew func(egressd.Anomaly)
	// cluster, in per-node mode (detector.Options.Shared), judges each
	// novel destination against what every collector stored: one known
	// there, or of an app learning there, is reported as stored already,
	// and the detector learns it.
	cluster  clusterDB
	learning time.Duration
}

func (s *detectorStore) Raise(ctx context.Context, a egressd.Anomaly) (bool, error) {
	if s.cluster != nil && a.Kind == egressd.AnomalyNovelDestination {
		known, err := s.cluster.ClusterKnows(ctx, a.App, a.Destination, a.Time, s.learning, detector.NoveltyWindow)
		if err != nil || known != "" {
			return false, err
		}
	}
	inserted, err := s.db.RecordAnomaly(ctx, a, s.targets, s.now())
	if err != nil || !inserted {
		return inserted, err
	}
	if s.wake != nil {
		s.wake()
	}
	if s.onNew != nil {
		s.onNew(a)
	}
	return true, nil
}

func (s *detectorStore) Resolve(ctx context.Context, fingerprint string, at time.Time) error {
	if _, err := s.db.ResolveAnomaly(ctx, fingerprint, at); err != nil {
		return err
	}
	if s.wake != nil {
		s.wake()
	}
	return nil
}

// anomalyLine is one line of `replay --detect` output.
type anomalyLine struct {
	Kind           string            `json:"kind"`
	Cluster        string            `json:"cluster,omitempty"`
	Namespace      string            `json:"namespace"`
	App            string            `json:"app"`
	Destination    string            `json:"destination"`
	Port           int               `json:"port"`
	Protocol       string            `json:"protocol,omitempty"`
	Time           string            `json:"time"`
	Pod            string            `json:"pod,omitempty"`
	Node           string            `json:"node,omitempty"`
	Verdict        string            `json:"verdict,omitempty"`
	BaselineSource string            `json:"baseline_source,omitempty"`
	Summary        string            `json:"summary"`
	Fingerprint    string            `json:"fingerprint"`
	Details        map[string]string `json:"details,omitempty"`
	// Severity and Evidence say how bad it looks and why (the rule table
	// of the detector package).
	Severity string           `json:"severity,omitempty"`
	Evidence egressd.Evidence `json:"evidence"`
}

// jsonLines prints anomalies as JSON lines, safe for concurrent use.
type jsonLines struct {
	mu sync.Mutex
	w  io.Writer
	n  int
}

func (j *jsonLines) print(a egressd.Anomaly) {
	l := anomalyLine{
		Kind: string(a.Kind), Cluster: a.App.Cluster, Namespace: a.App.Namespace, App: a.App.Name,
		Destination: a.Destination.Name, Port: int(a.Destination.Port), Protocol: a.Destination.Protocol,
		Time: a.Time.UTC().Format(time.RFC3339Nano), Pod: a.Pod, Node: a.Node,
		BaselineSource: a.BaselineSource, Summary: a.Summary, Fingerprint: a.Fingerprint, Details: a.Details,
		Severity: string(a.Severity), Evidence: a.Evidence,
	}
	if a.Kind != egressd.AnomalyEgressVolume {
		l.Verdict = a.Verdict.String()
	}
	b, _ := json.Marshal(l)
	j.mu.Lock()
	defer j.mu.Unlock()
	j.n++
	fmt.Fprintf(j.w, "%s\n", b)
}

// detectFlags are the detection settings of serve and replay.
type detectFlags struct {
	learning       time.Duration
	floodThreshold int
	dnsFlood       int
	dnsTunnelNames int
	floodWindow    time.Duration
	unbounded      string
	baselineDir    string
	volumeFactor   float64
	volumeFloor    float64
	volumeHold     time.Duration
	volumeHistory  time.Duration
}

func addDetectFlags(fs *flag.FlagSet) *detectFlags {
	d := detector.DefaultOptions()
	df := &detectFlags{}
	durationVar(fs, &df.learning, "learning-period", d.LearningPeriod, "how long a new app only learns its destinations")
	fs.IntVar(&df.floodThreshold, "flood-threshold", d.FloodThreshold, "novel destinations per app and flood window raised one by one; more are summarised")
	fs.IntVar(&df.dnsFlood, "dns-flood-threshold", d.DNSFloodThreshold, "distinct names one app may ask in DNS per flood window; more raise one flood alert (a DNS tunnel); 0: off")
	fs.IntVar(&df.dnsTunnelNames, "dns-tunnel-names", d.DNSTunnelNames, "distinct names with encoded-looking labels under one registrable domain, per app and flood window, that raise a DNS tunnel alert; 0: off")
	durationVar(fs, &df.floodWindow, "flood-window", d.FloodWindow, "window of the flood summary")
	fs.StringVar(&df.unbounded, "unbounded-apps", "", "comma-separated NAMESPACE/APP that raise no novelty (volume only)")
	fs.StringVar(&df.baselineDir, "baseline-dir", "", "committed baseline files; an app's file, when present, is its baseline")
	fs.Float64Var(&df.volumeFactor, "volume-factor", d.Volume.Factor, "volume anomaly when the current rate exceeds this many times the history average (0 disables)")
	fs.Float64Var(&df.volumeFloor, "volume-floor", -1, "rate below which volume is never anomalous (default 5 flows/s from Hubble, 1048576 bytes/s from Prometheus)")
	durationVar(fs, &df.volumeHold, "volume-hold", d.Volume.Hold, "how long the volume condition must hold to fire, and be gone to resolve")
	durationVar(fs, &df.volumeHistory, "volume-history", d.Volume.HistoryWindow, "history window of the volume average")
	return df
}

func (df *detectFlags) options(bytesSource bool) (detector.Options, error) {
	o := detector.DefaultOptions()
	o.LearningPeriod = df.learning
	o.FloodThreshold = df.floodThreshold
	o.DNSFloodThreshold = df.dnsFlood
	o.DNSTunnelNames = df.dnsTunnelNames
	o.FloodWindow = df.floodWindow
	for _, s := range splitList(df.unbounded) {
		a, err := egressd.ParseApp(s)
		if err != nil {
			return o, usageError("--unbounded-apps: %v", err)
		}
		o.Unbounded = append(o.Unbounded, a)
	}
	o.Volume.Factor = df.volumeFactor
	o.Volume.Hold = df.volumeHold
	o.Volume.HistoryWindow = df.volumeHistory
	if bytesSource {
		o.Volume.Unit, o.Volume.Floor = "bytes/s", 1<<20
	}
	if df.volumeFloor >= 0 {
		o.Volume.Floor = df.volumeFloor
	}
	if err := o.Validate(); err != nil {
		return o, usageError("%v", err)
	}
	return o, nil
}

// loadBaselines reads --baseline-dir, if set.
func (df *detectFlags) loadBaselines() ([]egressd.Baseline, error) {
	if df.baselineDir == "" {
		return nil, nil
	}
	bs, err := baseline.LoadDir(df.baselineDir)
	if err != nil {
		return bs, fmt.Errorf("--baseline-dir: %w", err)
	}
	return bs, nil
}

// detectorState is the detector's memory in PostgreSQL, for
// detector.Detector.Prime.
type detectorState struct{ *postgres.DB }

func (s detectorState) AppsFirstSeen(ctx context.Context) (map[egressd.App]time.Time, time.Time, error) {
	apps, err := s.Apps(ctx)
	if err != nil {
		return nil, time.Time{}, err
	}
	first := make(map[egressd.App]time.Time, len(apps))
	var newest time.Time
	for _, a := range apps {
		first[a.App] = a.FirstSeen
		if a.LastSeen.After(newest) {
			newest = a.LastSeen
		}
	}
	return first, newest, nil
}
