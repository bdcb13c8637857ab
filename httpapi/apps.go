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

// listApps answers GET /api/v1/apps[?window=168h][&limit=100][&after=CURSOR],
// a page of apps sorted by cluster, namespace and name.
func (s *server) listApps(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r, "window", "limit", "after")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	window, err := q.window(0)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	f := egressd.AppFilter{}
	if f.Limit, err = q.limit(); err != nil {
		s.writeError(w, r, err)
		return
	}
	if f.After, err = q.appsAfter(); err != nil {
		s.writeError(w, r, err)
		return
	}
	now := s.opts.Now().UTC()
	if window > 0 {
		f.Since = now.Add(-window)
	}
	apps, err := s.b.Apps.AppSummaries(r.Context(), f)
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
	var next string
	if len(apps) == f.Limit {
		last := apps[len(apps)-1].App
		next = encodeCursor(appCursor{Kind: cursorApps, Cluster: last.Cluster, Namespace: last.Namespace, App: last.Name})
	}
	writeJSON(w, http.StatusOK, struct {
		Apps []appJSON `json:"apps"`
		// Next continues the listing; absent on a page that is not full,
		// the last one.
		Next string `json:"next,omitempty"`
	}{out, next})
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
// [?window=168h][&cluster=C][&limit=100][&after=CURSOR].
func (s *server) appDestinations(w http.ResponseWriter, r *http.Request) {
	app, err := appParam(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q, err := parseQuery(r, "window", "cluster", "limit", "after")
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
	f := egressd.DestinationFilter{App: app}
	if f.Limit, err = q.limit(); err != nil {
		s.writeError(w, r, err)
		return
	}
	if f.After, err = q.destinationsAfter(); err != nil {
		s.writeError(w, r, err)
		return
	}
	if window > 0 {
		f.Since = s.opts.Now().UTC().Add(-window)
	}
	dests, err := s.b.Destinations.AppDestinations(r.Context(), f)
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
	var next string
	if len(dests) == f.Limit {
		last := dests[len(dests)-1]
		next = encodeCursor(destinationCursor{
			Kind: cursorDestinations, Cluster: last.App.Cluster,
			Name: last.Destination.Name, Port: last.Destination.Port, Protocol: last.Destination.Protocol,
		})
	}
	writeJSON(w, http.StatusOK, struct {
		Namespace    string            `json:"namespace"`
		App          string            `json:"app"`
		Destinations []destinationJSON `json:"destinations"`
		// Next continues the listing; absent on the last page.
		Next string `json:"next,omitempty"`
	}{app.Namespace, app.Name, out, next})
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
