package egressd

import (
	"strconv"
	"strings"
	"time"
)

// Summary writes the evidence as a few short lines, the facts first a
// person would check, for an alert's annotation: prevalence, the app's own
// history, the name's shape, the verdict and the pods. Facts that do not
// apply (no destination, no name) are left out.
func (e Evidence) Summary() string {
	var lines []string
	add := func(k, v string) { lines = append(lines, k+": "+v) }
	if e.Incomplete != "" {
		add("prevalence", "unknown ("+e.Incomplete+")")
	} else {
		add("other apps", strconv.Itoa(e.OtherApps)+" (in "+strconv.Itoa(e.OtherClusters)+" other clusters)")
		if e.Domain != "" {
			add("apps on "+e.Domain, strconv.Itoa(e.DomainApps))
		}
		first := "never before"
		if !e.ClusterFirstSeen.IsZero() {
			first = e.ClusterFirstSeen.UTC().Format(time.RFC3339)
		}
		add("cluster first seen", first)
	}
	if len(e.KnownPorts) > 0 {
		add("app's other ports", strings.Join(e.KnownPorts, ", "))
	}
	if len(e.Siblings) > 0 {
		add("in app's baseline", strings.Join(e.Siblings, ", "))
	}
	if !e.AppFirstSeen.IsZero() {
		add("app first seen", e.AppFirstSeen.UTC().Format(time.RFC3339))
	}
	switch {
	case e.BareIP:
		add("name", "bare IP, no DNS answer")
	case e.Labels > 0:
		add("name", strconv.Itoa(e.Labels)+" labels, longest "+strconv.Itoa(e.LongestLabel)+
			", entropy "+strconv.FormatFloat(e.Entropy, 'f', 1, 64)+" bits/char")
	}
	if e.PortClass != "" {
		add("port", e.PortClass)
	}
	if e.Dropped {
		add("verdict", "dropped by policy")
	}
	if len(e.Pods) > 0 {
		add("pods", strings.Join(e.Pods, ", "))
	}
	return strings.Join(lines, "\n")
}
