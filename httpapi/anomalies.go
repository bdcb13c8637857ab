package httpapi

import (
	"cmp"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/egressd/egressd"
)

// anomalyJSON is an anomaly as the API shows it.
type anomalyJSON struct {
	Fingerprint string `json:"fingerprint"`
	Kind        string `json:"kind"`
	AlertName   string `json:"alertname"`
	State       string `json:"state"`
	Cluster     string `json:"cluster"`
	Namespace   string `json:"namespace"`
	App         string `json:"app"`
	// Destination, Port and Protocol are empty for volume anomalies.
	Destination    string            `json:"destination,omitempty"`
	Port           uint16            `json:"port,omitempty"`
	Protocol       string            `json:"protocol,omitempty"`
	StartedAt      time.Time         `json:"started_at"`
	ResolvedAt     *time.Time        `json:"resolved_at,omitempty"`
	Pod            string            `json:"pod,omitempty"`
	Node           string            `json:"node,omitempty"`
	Verdict        string            `json:"verdict,omitempty"`
	NameSource     string            `json:"name_source,omitempty"`
	BaselineSource string            `json:"baseline_source,omitempty"`
	Summary        string            `json:"summary"`
	Details        map[string]string `json:"details,omitempty"`
	// Severity is critical, warning or info (empty for anomalies stored
	// before severities); Evidence says why.
	Severity string           `json:"severity,omitempty"`
	Evidence egressd.Evidence `json:"evidence"`
}

func toAnomalyJSON(a egressd.Anomaly) anomalyJSON {
	j := anomalyJSON{
		Fingerprint:    a.Fingerprint,
		Kind:           string(a.Kind),
		AlertName:      a.Kind.AlertName(),
		State:          "firing",
		Cluster:        a.App.Cluster,
		Namespace:      a.App.Namespace,
		App:            a.App.Name,
		Destination:    a.Destination.Name,
		Port:           a.Destination.Port,
		Protocol:       a.Destination.Protocol,
		StartedAt:      a.Time,
		Pod:            a.Pod,
		Node:           a.Node,
		BaselineSource: a.BaselineSource,
		Summary:        a.Summary,
		Details:        a.Details,
		Severity:       string(a.Severity),
		Evidence:       a.Evidence,
	}
	if !a.ResolvedAt.IsZero() {
		t := a.ResolvedAt
		j.State, j.ResolvedAt = "resolved", &t
	}
	if a.Verdict != egressd.VerdictUnknown {
		j.Verdict = a.Verdict.String()
	}
	if a.NameSource != 0 {
		j.NameSource = a.NameSource.String()
	}
	return j
}

// anomalyKinds are the kinds the kind parameter accepts.
var anomalyKinds = []egressd.AnomalyKind{
	egressd.AnomalyNovelDestination,
	egressd.AnomalyNovelFlood,
	egressd.AnomalyEgressVolume,
	egressd.AnomalyDNSTunnel,
}

// listAnomalies answers GET /api/v1/anomalies[?state=firing|resolved|all]
// [&app=NAMESPACE/APP[&cluster=C]][&kind=K][&limit=100][&after=CURSOR],
// newest first.
func (s *server) listAnomalies(w http.ResponseWriter, r *http.Request) {
	f, clusters, err := s.anomalyFilter(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var page []egressd.Anomaly
	if f.App == nil {
		page, err = s.b.Anomalies.Anomalies(r.Context(), f)
	} else {
		page, err = s.appAnomalies(r, f, clusters)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := struct {
		Anomalies []anomalyJSON `json:"anomalies"`
		// Next continues the listing; absent on a page that is not full,
		// the last one.
		Next string `json:"next,omitempty"`
	}{Anomalies: make([]anomalyJSON, 0, len(page))}
	for _, a := range page {
		out.Anomalies = append(out.Anomalies, toAnomalyJSON(a))
	}
	if len(page) == f.Limit {
		last := page[len(page)-1]
		out.Next = encodeCursor(anomalyCursor{Kind: cursorAnomalies, Time: last.Time, Fingerprint: last.Fingerprint})
	}
	writeJSON(w, http.StatusOK, out)
}

// appAnomalies lists the anomalies of the app namespace/name in clusters.
// AnomalyFilter selects an app in one cluster, and the path does not name
// the cluster: each cluster's page is read and the newest Limit kept,
// which pages correctly because every cluster's listing continues from the
// same cursor.
func (s *server) appAnomalies(r *http.Request, f egressd.AnomalyFilter, clusters []string) ([]egressd.Anomaly, error) {
	var all []egressd.Anomaly
	for _, c := range clusters {
		app := *f.App
		app.Cluster = c
		cf := f
		cf.App = &app
		page, err := s.b.Anomalies.Anomalies(r.Context(), cf)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
	}
	if len(clusters) > 1 {
		// The listing's order: newest first, then fingerprint descending.
		slices.SortFunc(all, func(a, b egressd.Anomaly) int {
			return cmp.Or(b.Time.Compare(a.Time), strings.Compare(b.Fingerprint, a.Fingerprint))
		})
		all = all[:min(len(all), f.Limit)]
	}
	return all, nil
}

// anomalyFilter reads the listing's parameters. With app, it also returns
// the clusters to list: the cluster parameter, or every cluster the app was
// seen in.
func (s *server) anomalyFilter(r *http.Request) (egressd.AnomalyFilter, []string, error) {
	var f egressd.AnomalyFilter
	q, err := parseQuery(r, "state", "app", "cluster", "kind", "limit", "after")
	if err != nil {
		return f, nil, err
	}
	switch v, _ := q.get("state"); v {
	case "", "all":
		f.State = egressd.AnomaliesAll
	case "firing":
		f.State = egressd.AnomaliesFiring
	case "resolved":
		f.State = egressd.AnomaliesResolved
	default:
		return f, nil, egressd.Errorf(egressd.EINVALID, "state %q: want firing, resolved or all", echo(v))
	}
	if v, ok := q.get("kind"); ok {
		if !slices.Contains(anomalyKinds, egressd.AnomalyKind(v)) {
			names := make([]string, len(anomalyKinds))
			for i, k := range anomalyKinds {
				names[i] = string(k)
			}
			return f, nil, egressd.Errorf(egressd.EINVALID, "kind %q: want one of %s", echo(v), strings.Join(names, ", "))
		}
		f.Kind = egressd.AnomalyKind(v)
	}
	if f.Limit, err = q.limit(); err != nil {
		return f, nil, err
	}
	if f.After, err = q.anomaliesAfter(); err != nil {
		return f, nil, err
	}
	cluster, err := q.cluster()
	if err != nil {
		return f, nil, err
	}
	v, ok := q.get("app")
	if !ok {
		if cluster != "" {
			return f, nil, egressd.Errorf(egressd.EINVALID, "cluster: give it with app=NAMESPACE/APP")
		}
		return f, nil, nil
	}
	app, err := egressd.ParseApp(v)
	if err != nil {
		return f, nil, egressd.Errorf(egressd.EINVALID, "app: %s", egressd.ErrorMessage(err))
	}
	f.App = &app
	if cluster != "" {
		return f, []string{cluster}, nil
	}
	clusters, err := s.b.Apps.AppClusters(r.Context(), app.Namespace, app.Name)
	return f, clusters, err
}

// getAnomaly answers GET /api/v1/anomalies/{fingerprint}: the link alerts
// carry.
func (s *server) getAnomaly(w http.ResponseWriter, r *http.Request) {
	fp, err := fingerprintParam(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if _, err := parseQuery(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	a, err := s.b.Anomalies.Anomaly(r.Context(), fp)
	if err != nil {
		if egressd.ErrorCode(err) == egressd.ENOTFOUND {
			err = egressd.Errorf(egressd.ENOTFOUND, "no anomaly with fingerprint %s", fp)
		}
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Anomaly anomalyJSON `json:"anomaly"`
	}{toAnomalyJSON(a)})
}
