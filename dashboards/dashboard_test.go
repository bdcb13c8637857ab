package dashboards_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// currentSchemaVersion is the classic-model schemaVersion these files are
// written in: the one Grafana 12 writes (docs: "Dashboard JSON model").
const currentSchemaVersion = 42

// Data source plugins the dashboards use, by __inputs pluginId.
const (
	pluginPostgres   = "grafana-postgresql-datasource"
	pluginPrometheus = "prometheus"
)

// dashboard is the part of Grafana's classic dashboard JSON model the tests
// rely on. Everything else is left to Grafana.
type dashboard struct {
	Inputs   []input       `json:"__inputs"`
	Requires []requirement `json:"__requires"`

	ID            *int       `json:"id"`
	UID           string     `json:"uid"`
	Title         string     `json:"title"`
	SchemaVersion int        `json:"schemaVersion"`
	Tags          []string   `json:"tags"`
	Panels        []panel    `json:"panels"`
	Templating    templating `json:"templating"`
	Time          struct {
		From string `json:"from"`
		To   string `json:"to"`
	} `json:"time"`

	file string
	raw  []byte
}

type input struct {
	Name       string `json:"name"`
	Label      string `json:"label"`
	Type       string `json:"type"`
	PluginID   string `json:"pluginId"`
	PluginName string `json:"pluginName"`
}

type requirement struct {
	Type    string `json:"type"`
	ID      string `json:"id"`
	Name    string `json:"name"`
	Version string `json:"version"`
}

type panel struct {
	ID         int      `json:"id"`
	Type       string   `json:"type"`
	Title      string   `json:"title"`
	Datasource *dsRef   `json:"datasource"`
	GridPos    gridPos  `json:"gridPos"`
	Targets    []target `json:"targets"`
	Collapsed  bool     `json:"collapsed"`
	Panels     []panel  `json:"panels"` // a collapsed row's panels
}

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type gridPos struct {
	X int `json:"x"`
	Y int `json:"y"`
	W int `json:"w"`
	H int `json:"h"`
}

type target struct {
	RefID      string `json:"refId"`
	Datasource *dsRef `json:"datasource"`
	// PostgreSQL
	Format   string `json:"format"`
	RawQuery bool   `json:"rawQuery"`
	RawSQL   string `json:"rawSql"`
	// Prometheus
	Expr    string `json:"expr"`
	Instant bool   `json:"instant"`
}

type templating struct {
	List []variable `json:"list"`
}

type variable struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	Datasource *dsRef `json:"datasource"`
	// Query is the variable's query: SQL or a Prometheus label_values()
	// call for query variables, the plugin id for data source variables.
	Query      string `json:"query"`
	Definition string `json:"definition"`
	Multi      bool   `json:"multi"`
	IncludeAll bool   `json:"includeAll"`
	AllValue   string `json:"allValue"`
	Hide       int    `json:"hide"`
}

// files are the dashboards and the data source each reads.
var files = map[string]string{
	"egressd-destinations.json": pluginPostgres,
	"egressd-health.json":       pluginPrometheus,
}

func load(t testing.TB, name string) *dashboard {
	t.Helper()
	raw, err := os.ReadFile(name)
	require.NoError(t, err)
	d := &dashboard{file: name, raw: raw}
	require.NoError(t, json.Unmarshal(raw, d), "%s does not decode", name)
	return d
}

// panels returns every panel but rows, including those of collapsed rows.
func (d *dashboard) panels() []panel {
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type != "row" {
				out = append(out, p)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

func (d *dashboard) panel(t testing.TB, title string) panel {
	t.Helper()
	for _, p := range d.panels() {
		if p.Title == title {
			return p
		}
	}
	t.Fatalf("%s: no panel titled %q", d.file, title)
	return panel{}
}

func (d *dashboard) variable(name string) (variable, bool) {
	for _, v := range d.Templating.List {
		if v.Name == name {
			return v, true
		}
	}
	return variable{}, false
}

func (d *dashboard) input(name string) (input, bool) {
	for _, in := range d.Inputs {
		if in.Name == name {
			return in, true
		}
	}
	return input{}, false
}

// inputRef matches a data source reference to an import input: ${DS_...}.
var inputRef = regexp.MustCompile(`^\$\{(DS_[A-Z0-9_]+)\}$`)

func TestFilesAreTheDashboards(t *testing.T) {
	t.Parallel()
	got, err := filepath.Glob("*.json")
	require.NoError(t, err)
	want := make([]string, 0, len(files))
	for f := range files {
		want = append(want, f)
	}
	slices.Sort(want)
	require.Equal(t, want, got, "every dashboard file is tested; add new ones to files")
}

func TestStructure(t *testing.T) {
	t.Parallel()
	uids := map[string]string{}
	titles := map[string]string{}
	for name, plugin := range files {
		d := load(t, name)
		t.Run(name, func(t *testing.T) {
			checkDashboard(t, d, plugin)
		})
		if prev, ok := uids[d.UID]; ok {
			t.Errorf("%s and %s share uid %q", prev, name, d.UID)
		}
		uids[d.UID] = name
		if prev, ok := titles[d.Title]; ok {
			t.Errorf("%s and %s share title %q", prev, name, d.Title)
		}
		titles[d.Title] = name
	}
}

var validUID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,40}$`)

func checkDashboard(t *testing.T, d *dashboard, plugin string) {
	require.Regexp(t, validUID, d.UID, "uid: at most 40 letters, digits, '-' or '_', stable across releases")
	require.NotEmpty(t, d.Title)
	require.Nil(t, d.ID, "id must be null in a file meant for import: Grafana assigns it")
	require.Equal(t, currentSchemaVersion, d.SchemaVersion)
	require.Contains(t, d.Tags, "egressd", "the dashboards link each other by this tag")
	require.NotEmpty(t, d.Time.From)

	// Formatting: what `jq .` or Grafana's export would write, so diffs
	// stay small.
	var indented bytes.Buffer
	require.NoError(t, json.Indent(&indented, bytes.TrimSpace(d.raw), "", "  "))
	require.Equal(t, indented.String()+"\n", string(d.raw), "indent with 2 spaces and end with a newline")

	// Inputs: data sources only, each of the dashboard's plugin, each used.
	require.NotEmpty(t, d.Inputs, "__inputs: the import dialog asks for these data sources")
	for _, in := range d.Inputs {
		require.Equal(t, "datasource", in.Type, "input %s", in.Name)
		require.Regexp(t, `^DS_[A-Z0-9_]+$`, in.Name)
		require.Equal(t, plugin, in.PluginID, "input %s", in.Name)
		require.NotEmpty(t, in.Label)
		require.NotEmpty(t, in.PluginName)
		require.Contains(t, string(d.raw), "${"+in.Name+"}", "input %s is never used", in.Name)
	}
	// Every ${DS_...} anywhere in the file is an input: the importer
	// replaces exactly those.
	for _, m := range regexp.MustCompile(`\$\{(DS_[A-Za-z0-9_]+)\}`).FindAllStringSubmatch(string(d.raw), -1) {
		_, ok := d.input(m[1])
		require.True(t, ok, "${%s} is not declared in __inputs", m[1])
	}

	// Requires: Grafana, each input's plugin, each panel type.
	req := map[string]bool{}
	for _, r := range d.Requires {
		require.Contains(t, []string{"grafana", "datasource", "panel"}, r.Type)
		require.NotEmpty(t, r.ID)
		req[r.Type+"/"+r.ID] = true
	}
	require.True(t, req["grafana/grafana"], "__requires names Grafana")
	for _, in := range d.Inputs {
		require.True(t, req["datasource/"+in.PluginID], "__requires names data source plugin %s", in.PluginID)
	}

	// Panels: unique ids, a grid without overlaps, data sources from the
	// inputs, non-empty targets.
	ids := map[int]string{}
	var all []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			all = append(all, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, p := range all {
		require.Positive(t, p.ID, "panel %q", p.Title)
		if prev, ok := ids[p.ID]; ok {
			t.Errorf("panels %q and %q share id %d", prev, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		require.NotEmpty(t, p.Title, "panel %d", p.ID)
		g := p.GridPos
		require.True(t, g.W >= 1 && g.H >= 1 && g.X >= 0 && g.Y >= 0 && g.X+g.W <= 24,
			"panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		if p.Type == "row" {
			require.Equal(t, 24, g.W, "row %q spans the grid", p.Title)
			require.Empty(t, p.Targets)
			if !p.Collapsed {
				require.Empty(t, p.Panels, "an open row's panels follow it at the top level")
			}
			continue
		}
		require.True(t, req["panel/"+p.Type], "__requires names panel type %s", p.Type)
		checkDatasource(t, d, "panel "+p.Title, p.Datasource)
		require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			require.NotEmpty(t, tg.RefID, "panel %q", p.Title)
			require.False(t, refs[tg.RefID], "panel %q: refId %s twice", p.Title, tg.RefID)
			refs[tg.RefID] = true
			checkDatasource(t, d, "panel "+p.Title+" query "+tg.RefID, tg.Datasource)
			require.Equal(t, *p.Datasource, *tg.Datasource, "panel %q query %s: same data source as its panel", p.Title, tg.RefID)
			switch tg.Datasource.Type {
			case pluginPostgres:
				require.NotEmpty(t, strings.TrimSpace(tg.RawSQL), "panel %q query %s: empty rawSql", p.Title, tg.RefID)
				require.True(t, tg.RawQuery, "panel %q query %s: code mode (rawQuery) so the SQL is used as written", p.Title, tg.RefID)
				require.Contains(t, []string{"table", "time_series"}, tg.Format, "panel %q query %s", p.Title, tg.RefID)
				require.Empty(t, tg.Expr)
			case pluginPrometheus:
				require.NotEmpty(t, strings.TrimSpace(tg.Expr), "panel %q query %s: empty expr", p.Title, tg.RefID)
				require.Empty(t, tg.RawSQL)
			}
		}
	}
	checkNoOverlap(t, d)

	// Variables: unique names; query variables read an input's data
	// source; data source variables shadow an input (see doc.go).
	names := map[string]bool{}
	for _, v := range d.Templating.List {
		require.Regexp(t, `^\w+$`, v.Name)
		require.False(t, names[v.Name], "variable %s twice", v.Name)
		names[v.Name] = true
		switch v.Type {
		case "query":
			checkDatasource(t, d, "variable "+v.Name, v.Datasource)
			require.NotEmpty(t, strings.TrimSpace(v.Query), "variable %s: empty query", v.Name)
			require.Equal(t, v.Query, v.Definition, "variable %s: definition shows the query", v.Name)
		case "datasource":
			in, ok := d.input(v.Name)
			require.True(t, ok, "data source variable %s shadows an input of the same name", v.Name)
			require.Equal(t, in.PluginID, v.Query, "data source variable %s lists %s data sources", v.Name, in.PluginID)
			require.Equal(t, 2, v.Hide, "data source variable %s is hidden: after an import the panels no longer refer to it", v.Name)
		default:
			t.Errorf("variable %s: type %s is not tested", v.Name, v.Type)
		}
	}
}

func checkDatasource(t *testing.T, d *dashboard, what string, ref *dsRef) {
	t.Helper()
	require.NotNil(t, ref, "%s: no datasource", what)
	m := inputRef.FindStringSubmatch(ref.UID)
	require.NotNil(t, m, "%s: datasource uid %q is not an input reference ${DS_...}", what, ref.UID)
	in, ok := d.input(m[1])
	require.True(t, ok, "%s: datasource %s is not in __inputs", what, ref.UID)
	require.Equal(t, in.PluginID, ref.Type, "%s: datasource type", what)
}

func checkNoOverlap(t *testing.T, d *dashboard) {
	t.Helper()
	top := d.Panels // a collapsed row's panels are laid out when it opens
	for i, a := range top {
		for _, b := range top[i+1:] {
			ga, gb := a.GridPos, b.GridPos
			if ga.X < gb.X+gb.W && gb.X < ga.X+ga.W && ga.Y < gb.Y+gb.H && gb.Y < ga.Y+ga.H {
				t.Errorf("panels %q %+v and %q %+v overlap", a.Title, ga, b.Title, gb)
			}
		}
	}
}

func TestPanelsPerDashboard(t *testing.T) {
	t.Parallel()
	// The panels the README describes: renaming one is a README change.
	want := map[string][]string{
		"egressd-destinations.json": {
			"Firing anomalies", "New destinations", "Active destinations", "Alert deliveries retrying",
			"New destinations over time", "Anomalies started, by kind", "Anomalies", "Destinations per app",
		},
		"egressd-health.json": {
			"Hubble stream up", "Messages received", "Observations by kind", "Hubble lost events by source",
			"Skipped flows by reason", "Unattributed flows by reason", "Stream errors, reconnects and decode errors",
			"DNS cache and duplicate filter", "Flush latency", "Flushes by result", "Flush errors",
			"Observations dropped", "Cursor lag", "Rows written and keys waiting", "Anomalies raised by kind",
			"Novel destinations suppressed by reason", "Detector drops and errors", "Observations judged",
			"Known keys and apps", "Alert deliveries by result", "Alert drops", "Retries and outbox errors",
			"Alertmanager POST latency", "Outbox depth",
		},
	}
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	for name, titles := range want {
		d := load(t, name)
		var got []string
		for _, p := range d.panels() {
			got = append(got, p.Title)
		}
		require.Equal(t, titles, got, name)
		for _, title := range titles {
			require.Contains(t, string(readme), fmt.Sprintf("**%s**", title), "README.md describes panel %q", title)
		}
	}
}
