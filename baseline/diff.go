package baseline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/egressd/egressd"
)

// Change says what Export would do with an app's file.
type Change string

// Changes to a file.
const (
	// ChangeCreate means the app has no file yet.
	ChangeCreate Change = "create"
	// ChangeUpdate means the file's bytes change. When Added and Removed
	// are both empty only its form changes (order, case, spacing): a file
	// edited by hand that Export rewrites in canonical form.
	ChangeUpdate Change = "update"
	// ChangePrune means the app is absent from the live set and
	// ExportOptions.Prune deletes its file.
	ChangePrune Change = "prune"
)

// AppDiff is what Export would change in one app's file.
type AppDiff struct {
	// Namespace and App name the app.
	Namespace string
	App       string
	// Path is the app's file, as Path returns it.
	Path string
	// Change is what happens to the file.
	Change Change
	// Added lists the destinations the file gains, and for destinations
	// it already has, the ports they gain: each entry holds only the new
	// ports. For a new file, every destination.
	Added []egressd.BaselineDestination
	// Removed lists the destinations, or the ports of destinations, the
	// file loses. For a pruned file, every destination.
	Removed []egressd.BaselineDestination
	// Suggested lists the suggestions the file gains (see Suggest).
	Suggested []egressd.BaselineSuggestion
}

// Diff reports exactly what Export(dir, live, opts) would change, without
// changing anything: one AppDiff per file Export would write or prune, sorted
// by namespace and app. An empty result means the files match the live
// baselines (no drift). A missing dir is an empty one. Files Export could
// not handle are reported in the error as Export reports them, and left out
// of the result.
func Diff(dir string, live []egressd.Baseline, opts ExportOptions) ([]AppDiff, error) {
	root, err := os.OpenRoot(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		root = nil
	case err != nil:
		return nil, fmt.Errorf("open baseline directory: %w", err)
	default:
		defer root.Close()
	}
	steps, errs := plan(root, dir, live, opts)
	var out []AppDiff
	for _, s := range steps {
		d := AppDiff{Namespace: s.app.Namespace, App: s.app.Name, Path: s.path}
		switch {
		case s.unchanged():
			continue
		case s.prune:
			d.Change = ChangePrune
			d.Removed = cloneDestinations(s.old.Destinations)
		case !s.exists:
			d.Change = ChangeCreate
			d.Added = cloneDestinations(s.next.Destinations)
			d.Suggested = s.next.Suggestions
		default:
			d.Change = ChangeUpdate
			d.Added = subtract(s.next.Destinations, s.old.Destinations)
			d.Removed = subtract(s.old.Destinations, s.next.Destinations)
			for _, g := range s.next.Suggestions {
				if !slices.ContainsFunc(s.old.Suggestions, func(o egressd.BaselineSuggestion) bool { return o.Pattern == g.Pattern }) {
					d.Suggested = append(d.Suggested, g)
				}
			}
		}
		out = append(out, d)
	}
	return out, errors.Join(errs...)
}

func cloneDestinations(ds []egressd.BaselineDestination) []egressd.BaselineDestination {
	out := make([]egressd.BaselineDestination, len(ds))
	for i, d := range ds {
		out[i] = cloneDestination(d)
	}
	return out
}

// subtract returns the destinations and ports of a that b lacks, both sorted
// by name. Ports are compared as written: "0/ANY" in b does not hide
// "443/TCP" in a, because Diff reports changes to the file, not to what it
// allows.
func subtract(a, b []egressd.BaselineDestination) []egressd.BaselineDestination {
	var out []egressd.BaselineDestination
	j := 0
	for _, d := range a {
		for j < len(b) && b[j].Name < d.Name {
			j++
		}
		if j == len(b) || b[j].Name != d.Name {
			out = append(out, cloneDestination(d))
			continue
		}
		var ports []egressd.Port
		for _, p := range d.Ports {
			if !slices.Contains(b[j].Ports, p) {
				ports = append(ports, p)
			}
		}
		if len(ports) > 0 {
			out = append(out, egressd.BaselineDestination{Name: d.Name, Ports: ports, Note: d.Note})
		}
	}
	return out
}

// WriteDiff prints diffs as a report for people and CI logs, one line per
// fact, each starting with the app, in the order of diffs:
//
//	media/recyclarr: new file baselines/media/recyclarr.json
//	media/recyclarr: + api.github.com 443/TCP
//	media/sonarr: + api.sonarr.tv 443/TCP
//	media/sonarr: - old.example.com 80/TCP
//	media/legacy: pruned baselines/media/legacy.json
//	media/legacy: - ftp.example.com 21/TCP
//	media/tidy: rewrite baselines/media/tidy.json (form only, same destinations)
//	backup/restic: suggests tenant-*.s3.example.com 443/TCP (covers 12 listed names, such as ...; not applied)
//
// Within an app, lines are sorted by destination, then port, removals before
// additions. Nothing is printed for an empty diff.
func WriteDiff(w io.Writer, diffs []AppDiff) error {
	var buf bytes.Buffer
	for _, d := range diffs {
		app := d.Namespace + "/" + d.App
		switch d.Change {
		case ChangeCreate:
			fmt.Fprintf(&buf, "%s: new file %s\n", app, d.Path)
		case ChangePrune:
			fmt.Fprintf(&buf, "%s: pruned %s\n", app, d.Path)
		default:
			if len(d.Added) == 0 && len(d.Removed) == 0 && len(d.Suggested) == 0 {
				fmt.Fprintf(&buf, "%s: rewrite %s (form only, same destinations)\n", app, d.Path)
			}
		}
		type line struct {
			name string
			port egressd.Port
			sign byte
		}
		var lines []line
		for _, ds := range []struct {
			sign  byte
			dests []egressd.BaselineDestination
		}{{'-', d.Removed}, {'+', d.Added}} {
			for _, dst := range ds.dests {
				for _, p := range dst.Ports {
					lines = append(lines, line{dst.Name, p, ds.sign})
				}
			}
		}
		slices.SortStableFunc(lines, func(a, b line) int {
			if c := strings.Compare(a.name, b.name); c != 0 {
				return c
			}
			if c := comparePorts(a.port, b.port); c != 0 {
				return c
			}
			return int(b.sign) - int(a.sign) // '-' before '+'
		})
		for _, l := range lines {
			fmt.Fprintf(&buf, "%s: %c %s %s\n", app, l.sign, l.name, l.port)
		}
		for _, g := range d.Suggested {
			ports := make([]string, len(g.Ports))
			for i, p := range g.Ports {
				ports[i] = p.String()
			}
			fmt.Fprintf(&buf, "%s: suggests %s %s (covers %d listed names, such as %s; not applied)\n",
				app, g.Pattern, strings.Join(ports, ","), g.Evidence, strings.Join(g.Examples, ", "))
			if g.Warning != "" {
				fmt.Fprintf(&buf, "%s:   warning: %s\n", app, g.Warning)
			}
		}
	}
	_, err := w.Write(buf.Bytes())
	return err
}
