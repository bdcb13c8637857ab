package baseline

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/egressd/egressd"
)

// Finding is a destination the window saw that the baseline files would not
// allow: the detector would call it novel, and the app's policy would drop
// it.
type Finding struct {
	Namespace   string    `json:"namespace"`
	App         string    `json:"app"`
	Destination string    `json:"destination"`
	Port        uint16    `json:"port"`
	Protocol    string    `json:"protocol"`
	Flows       int64     `json:"flows"`
	LastSeen    time.Time `json:"lastSeen"`
	ExamplePod  string    `json:"examplePod,omitempty"`
}

// CheckReport is what Check found.
type CheckReport struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Apps counts the apps with traffic in the window, Checked those of
	// them that have a file.
	Apps    int `json:"apps"`
	Checked int `json:"checked"`
	// Findings are sorted by namespace, app, destination, port and
	// protocol.
	Findings []Finding `json:"findings"`
	// WithoutFile are the apps with traffic in the window but no file
	// ("namespace/app"): they get no policy and the detector learns them,
	// so nothing of theirs is dropped, but a reviewer should know.
	WithoutFile []string `json:"withoutFile"`
	// Coverage says where Hubble lost flows inside the window: the files
	// may then allow less than the apps need.
	Coverage []string `json:"coverage"`
}

// Failed reports whether something would be novel or dropped.
func (r *CheckReport) Failed() bool { return len(r.Findings) > 0 }

// Check replays the window's entries against the baseline files as they
// would be enforced (see Matcher: exact names, matchPattern patterns,
// ports and protocols, unbounded apps allow everything) and lists every
// destination an app with a file reached that its file would not allow.
// Apps are matched by namespace and name, whatever their cluster, as Build
// groups them.
func Check(files []egressd.Baseline, entries []egressd.WindowEntry) CheckReport {
	type key struct{ namespace, app string }
	matchers := make(map[key]*Matcher, len(files))
	for _, b := range files {
		matchers[key{b.Namespace, b.App}] = NewMatcher(b)
	}
	var r CheckReport
	apps := map[key]bool{}
	// One finding per app and destination, the clusters' traffic summed.
	found := map[Finding]int{}
	for _, e := range entries {
		k := key{e.App.Namespace, e.App.Name}
		m, ok := matchers[k]
		if _, seen := apps[k]; !seen {
			apps[k] = ok
		}
		if !ok || m.Match(e.Destination.Name, e.Destination.Port, e.Destination.Protocol) {
			continue
		}
		f := Finding{Namespace: k.namespace, App: k.app, Destination: e.Destination.Name, Port: e.Destination.Port, Protocol: e.Destination.Protocol}
		if i, ok := found[f]; ok {
			g := &r.Findings[i]
			g.Flows += e.Flows
			if e.LastSeen.After(g.LastSeen) {
				g.LastSeen = e.LastSeen
				if e.ExamplePod != "" {
					g.ExamplePod = e.ExamplePod
				}
			}
			continue
		}
		found[f] = len(r.Findings)
		f.Flows, f.LastSeen, f.ExamplePod = e.Flows, e.LastSeen.UTC(), e.ExamplePod
		r.Findings = append(r.Findings, f)
	}
	for k, hasFile := range apps {
		r.Apps++
		if hasFile {
			r.Checked++
		} else {
			r.WithoutFile = append(r.WithoutFile, k.namespace+"/"+k.app)
		}
	}
	slices.Sort(r.WithoutFile)
	slices.SortFunc(r.Findings, func(a, b Finding) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.App, b.App),
			strings.Compare(a.Destination, b.Destination), cmp.Compare(a.Port, b.Port), strings.Compare(a.Protocol, b.Protocol))
	})
	return r
}

// WriteCheckText writes the report for a person: per app, each destination
// that would be novel or dropped, then the apps without a file and the
// coverage warnings.
func WriteCheckText(w io.Writer, r CheckReport) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	last := ""
	for _, f := range r.Findings {
		if app := f.Namespace + "/" + f.App; app != last {
			last = app
			n := 0
			for _, g := range r.Findings {
				if g.Namespace == f.Namespace && g.App == f.App {
					n++
				}
			}
			fmt.Fprintf(tw, "%s: %d destinations would be novel, and dropped by its policy:\n", app, n)
			fmt.Fprintf(tw, "  DESTINATION\tPORT\tFLOWS\tLAST SEEN\tEXAMPLE POD\n")
		}
		pod := f.ExamplePod
		if pod == "" {
			pod = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%s\n", f.Destination, egressd.FormatPort(f.Port, f.Protocol), f.Flows, f.LastSeen.Format(time.RFC3339), pod)
	}
	for _, a := range r.WithoutFile {
		fmt.Fprintf(tw, "%s: no baseline file (no policy; the detector learns it)\n", a)
	}
	for _, c := range r.Coverage {
		fmt.Fprintf(tw, "warning: %s\n", c)
	}
	return tw.Flush()
}

// WriteCheckJSON writes the report as one JSON object, for CI bots.
func WriteCheckJSON(w io.Writer, r CheckReport) error {
	if r.Findings == nil {
		r.Findings = []Finding{}
	}
	if r.WithoutFile == nil {
		r.WithoutFile = []string{}
	}
	if r.Coverage == nil {
		r.Coverage = []string{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(r)
}

// CoverageWarnings says, for each node that lost events within a window,
// that the window misses flows: "node X lost N events between A and B;
// baselines may be incomplete".
func CoverageWarnings(losses []egressd.NodeLoss) []string {
	out := make([]string, 0, len(losses))
	for _, l := range losses {
		node := "node " + l.Node
		if l.Node == "" {
			node = "a node that did not say its name"
		}
		out = append(out, fmt.Sprintf("%s lost %d events between %s and %s; baselines may be incomplete",
			node, l.Events, l.First.UTC().Format(time.RFC3339), l.Last.UTC().Format(time.RFC3339)))
	}
	return out
}
