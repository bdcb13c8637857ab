package collector

import (
	"hash/maphash"
	"time"

	"github.com/egressd/egressd"
)

// appSampleOneIn is the sampling rate of new apps past half of
// Options.MaxApps, that of names past half of MaxKeysPerApp.
const appSampleOneIn = 100

// appsLogInterval is the least time between two apps_not_kept lines.
const appsLogInterval = 10 * time.Second

// appLimit is what Options.MaxApps counts: the apps a pipeline knows, as
// 64-bit hashes of their names, and the observations of other apps not
// kept since the last log line. Each app costs the sinks some hundred
// bytes (the detector's state, the aggregator's name budget, the pod map)
// and the database its rows; this set costs about 20 bytes an app.
type appLimit struct {
	max     int
	seed    maphash.Seed
	known   map[uint64]struct{}
	notKept int64
	log     rateLimited
}

func newAppLimit(max int) appLimit {
	return appLimit{max: max, seed: maphash.MakeSeed(), known: make(map[uint64]struct{})}
}

// hash returns the key of a; each name is followed by a zero byte, which
// validated names never contain, so that no two apps write the same bytes.
func (l *appLimit) hash(a egressd.App) uint64 {
	var h maphash.Hash
	h.SetSeed(l.seed)
	h.WriteString(a.Cluster)
	h.WriteByte(0)
	h.WriteString(a.Namespace)
	h.WriteByte(0)
	h.WriteString(a.Name)
	return h.Sum64()
}

// KeepApp makes a known to the pipeline whatever Options.MaxApps says: an
// app stored before a restart, or by another replica, is kept. Call it
// before the pipeline streams (the service does, from PostgreSQL, at each
// term of its lease).
func (p *Pipeline) KeepApp(a egressd.App) {
	p.apps.known[p.apps.hash(a)] = struct{}{}
	p.metrics.Apps.Set(float64(len(p.apps.known)))
}

// admitApp reports whether o's app is kept (see Options.MaxApps), and
// counts and logs, rate limited, an observation that is not.
func (p *Pipeline) admitApp(o *egressd.Observation) bool {
	l := &p.apps
	sum := l.hash(o.App)
	if _, ok := l.known[sum]; ok {
		return true
	}
	n := len(l.known)
	if n < l.max/2 || (n < l.max && sum%appSampleOneIn == 0) {
		l.known[sum] = struct{}{}
		p.metrics.Apps.Set(float64(n + 1))
		return true
	}
	p.metrics.AppsSampled.Inc()
	l.notKept++
	now := p.opts.Now()
	if _, ok := l.log.allow(now.UnixNano(), appsLogInterval); ok {
		p.log.Warn("apps_not_kept", "app", o.App.String(), "apps_known", n, "max_apps", l.max,
			"observations_not_kept", l.notKept)
		l.notKept = 0
	}
	return false
}
