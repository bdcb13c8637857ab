package httpapi

import (
	"fmt"
	"net/http"
	"time"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/baseline"
)

// appJSON is an app in GET /api/v1/apps.
type appJSON struct {
	Cluster   string    `json:"cluster"`
	Namespace string    `json:"namespace"`
	App       string    `json:"app"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	// Destinations counts destinations last seen within the window (all
	// of them without one).
	Destinations    int       `json:"destinations"`
	FiringAnomalies int       `json:"firing_anomalies"`
	Learning        bool      `json:"learning"`
	LearningUntil   time.Time `json:"learning_until"`
	Unbounded       bool      `json:"unbounded"`
}

// listApps answers GET /api/v1/apps[?window=168h].
func (s *server) listApps(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r, "window")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	window, err := q.window(0)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	now := s.opts.Now().UTC()
	var since time.Time
	if window > 0 {
		since = now.Add(-window)
	}
	apps, err := s.b.Apps.AppSummaries(r.Context(), since)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]appJSON, 0, len(apps))
	for _, a := range apps {
		until := a.FirstSeen.Add(s.opts.LearningPeriod)
		out = append(out, appJSON{
			Cluster:         a.App.Cluster,
			Namespace:       a.App.Namespace,
			App:             a.App.Name,
			FirstSeen:       a.FirstSeen,
			LastSeen:        a.LastSeen,
			Destinations:    a.Destinations,
			FiringAnomalies: a.Firing,
			Learning:        now.Before(until),
			LearningUntil:   until,
			Unbounded:       s.b.Flags != nil && s.b.Flags.Unbounded(a.App),
		})
	}
	writeJSON(w, http.StatusOK, struct {
		Apps []appJSON `json:"apps"`
	}{out})
}

// destinationJSON is a destination in GET .../destinations.
type destinationJSON struct {
	Cluster      string    `json:"cluster"`
	Destination  string    `json:"destination"`
	Port         uint16    `json:"port"`
	Protocol     string    `json:"protocol"`
	FirstSeen    time.Time `json:"first_seen"`
	LastSeen     time.Time `json:"last_seen"`
	Flows        int64     `json:"flows"`
	DroppedFlows int64     `json:"dropped_flows"`
	Verdicts     []string  `json:"verdicts"`
	ExamplePod   string    `json:"example_pod"`
	NameSource   string    `json:"name_source"`
}

// appDestinations answers GET /api/v1/apps/{namespace}/{app}/destinations
// [?window=168h][&cluster=C].
func (s *server) appDestinations(w http.ResponseWriter, r *http.Request) {
	app, err := appParam(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q, err := parseQuery(r, "window", "cluster")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	window, err := q.window(0)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if app.Cluster, err = q.cluster(); err != nil {
		s.writeError(w, r, err)
		return
	}
	var since time.Time
	if window > 0 {
		since = s.opts.Now().UTC().Add(-window)
	}
	dests, err := s.b.Destinations.AppDestinations(r.Context(), app, since)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]destinationJSON, 0, len(dests))
	for _, d := range dests {
		verdicts := d.Verdicts.Names()
		if verdicts == nil {
			verdicts = []string{}
		}
		out = append(out, destinationJSON{
			Cluster:      d.App.Cluster,
			Destination:  d.Destination.Name,
			Port:         d.Destination.Port,
			Protocol:     d.Destination.Protocol,
			FirstSeen:    d.FirstSeen,
			LastSeen:     d.LastSeen,
			Flows:        d.Flows,
			DroppedFlows: d.DroppedFlows,
			Verdicts:     verdicts,
			ExamplePod:   d.ExamplePod,
			NameSource:   d.NameSource.String(),
		})
	}
	writeJSON(w, http.StatusOK, struct {
		Namespace    string            `json:"namespace"`
		App          string            `json:"app"`
		Destinations []destinationJSON `json:"destinations"`
	}{app.Namespace, app.Name, out})
}

// appBaseline answers GET /api/v1/apps/{namespace}/{app}/baseline
// [?window=168h][&at=RFC3339] with the bytes `egressd baseline export`
// builds for the app from the window [at - window, at), before merging with
// a committed file.
func (s *server) appBaseline(w http.ResponseWriter, r *http.Request) {
	app, err := appParam(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q, err := parseQuery(r, "window", "at")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	window, err := q.window(DefaultBaselineWindow)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	at, err := q.at(s.opts.Now().UTC())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	entries, err := s.b.Destinations.AppWindowEntries(r.Context(), app, at.Add(-window), at)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// Build keys by namespace and app, as the files do, so the entries of
	// every cluster make one baseline; an app without allowed traffic in
	// the window gets an empty one.
	b := egressd.Baseline{Namespace: app.Namespace, App: app.Name}
	switch bs := baseline.Build(entries); len(bs) {
	case 0:
	case 1:
		b = bs[0]
	default:
		s.writeError(w, r, fmt.Errorf("baseline of %s: the window entries built %d baselines", app, len(bs)))
		return
	}
	data, err := baseline.Marshal(b)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("baseline of %s: %w", app, err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
}
