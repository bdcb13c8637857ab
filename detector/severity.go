package detector

import (
	"cmp"
	"strconv"
	"strings"

	"github.com/egressd/egressd"
)

// Severity returns an anomaly's severity from its evidence, and the reasons,
// in order: the rule that set it, then the facts of the name that a person
// reads next. It is the rule table of the package doc, and deterministic:
// the same evidence always gives the same severity and words.
func Severity(a egressd.Anomaly) (egressd.Severity, []string) {
	e := a.Evidence
	switch a.Kind {
	case egressd.AnomalyEgressVolume:
		r := "sends far more than its own history"
		if f := a.Details["factor"]; f != "" {
			r = "sends " + f + "x its average"
		}
		return egressd.SeverityWarning, []string{r}
	case egressd.AnomalyDNSTunnel:
		if a.Details["rule"] == "shape" {
			return egressd.SeverityCritical, []string{"DNS names that look like encoded data under " + cmp.Or(a.Details["domain"], e.Domain)}
		}
		return egressd.SeverityWarning, []string{"more distinct DNS names than the threshold (" + a.Details["threshold"] + ")"}
	}
	sev, reasons := rateDestination(a)
	if a.Kind == egressd.AnomalyNovelFlood && sev == egressd.SeverityInfo {
		// Many new destinations at once are worth a look today, whatever
		// the first one past the threshold is.
		sev, reasons = egressd.SeverityWarning, append([]string{"many new destinations at once"}, reasons...)
	}
	return sev, reasons
}

// rateDestination rates a novel destination (or a flood's example): the
// first rule that matches decides.
func rateDestination(a egressd.Anomaly) (egressd.Severity, []string) {
	e := a.Evidence
	var facts []string
	if e.BareIP {
		facts = append(facts, "bare IP")
	}
	if e.PortClass == "registered" || e.PortClass == "dynamic" {
		facts = append(facts, "high port")
	}
	if e.Domain != "" && tunnelShaped(a.Destination.Name, e.Domain) {
		facts = append(facts, "random-looking name")
	}
	if e.Dropped {
		facts = append(facts, "dropped by policy")
	}
	const never = "never reached by any app in the cluster"
	switch {
	case e.Incomplete != "":
		return egressd.SeverityWarning, append([]string{"prevalence unknown: " + e.Incomplete}, facts...)
	case len(e.KnownPorts) > 0:
		return egressd.SeverityInfo, append([]string{"the app already reaches " + a.Destination.Name + " on " + strings.Join(e.KnownPorts, ", ")}, facts...)
	case e.OtherApps > 0:
		r := "reached by " + plural(e.OtherApps, "other app")
		if e.OtherClusters > 0 {
			r += " (" + plural(e.OtherClusters, "other cluster") + ")"
		}
		return egressd.SeverityInfo, append([]string{r}, facts...)
	case e.Dropped:
		return egressd.SeverityWarning, append([]string{never}, facts...)
	case len(e.Siblings) > 0:
		return egressd.SeverityWarning, append([]string{never, e.Domain + " is in the app's baseline (" + strings.Join(e.Siblings, ", ") + ")"}, facts...)
	case e.DomainApps > 0:
		return egressd.SeverityWarning, append([]string{never, e.Domain + " is reached by " + plural(e.DomainApps, "other app")}, facts...)
	}
	return egressd.SeverityCritical, append([]string{never}, facts...)
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}
