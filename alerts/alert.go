package alerts

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-openapi/strfmt"
	"github.com/prometheus/alertmanager/api/v2/models"

	"github.com/egressd/egressd"
)

// Bounds of what an alert carries. Every legitimate label value (DNS names,
// app, namespace and pod names) fits well within MaxLabelValueLen; longer
// values, which can only come from a bug or a hostile flow, are cut and end
// in TruncatedSuffix.
const (
	MaxLabelValueLen = 256
	MaxAnnotationLen = 2048
	TruncatedSuffix  = "...(truncated)"
)

// Label names of egressd's alerts (docs/operations.md, Alerts).
const (
	LabelAlertName   = "alertname"
	LabelSeverity    = "severity"
	LabelCluster     = "cluster"
	LabelNamespace   = "namespace"
	LabelApp         = "app"
	LabelDestination = "destination"
	LabelPort        = "port"
	// LabelVerdict is on novel-destination alerts: FORWARDED, or DROPPED
	// for an attempt the policy stopped.
	LabelVerdict = "verdict"
)

// DefaultSeverity is the severity label of anomalies stored before
// severities were derived from evidence.
const DefaultSeverity = egressd.SeverityWarning

func severity(a egressd.Anomaly) string {
	if a.Severity == "" {
		return string(DefaultSeverity)
	}
	return string(a.Severity)
}

// AnomalyPath is where egressd serves one anomaly's triage page (package
// triage), by fingerprint, below Options.ExternalURL: what a person opens
// from the notification. The JSON is at /api/v1/anomalies/FINGERPRINT.
const AnomalyPath = "/triage/anomalies/"

// resolvedFactor times ResendInterval is how far ahead a firing alert's
// endsAt lies: Alertmanager resolves it by itself only after three resends
// in a row were missed.
const resolvedFactor = 4

// PostableAlert maps a delivery to the alert posted to Alertmanager at now.
// Labels identify the alert (Alertmanager deduplicates on them): alertname,
// severity (the anomaly's, from its evidence; DefaultSeverity for anomalies
// stored before severities), cluster, namespace, app, and for novel
// destinations destination, port ("443/TCP") and verdict (FORWARDED,
// DROPPED); empty values are left out, as Alertmanager treats an empty
// label as absent. Annotations carry summary, description (which names the
// severity and why), severity_reason (the rule table's reasons, "; "
// between them), evidence (Evidence.Summary, one fact per line),
// first_seen (RFC 3339), example_pod, flow_count (from Details["flows"]),
// baseline_source, fingerprint and, with Options.ExternalURL, link, which
// is also the generatorURL. A firing alert starts at the anomaly's time and
// ends at now + 4 x ResendInterval; a resolved one ends at now.
func PostableAlert(d egressd.Delivery, opts Options, now time.Time) *models.PostableAlert {
	a := d.Anomaly
	labels := models.LabelSet{}
	setLabel := func(k, v string) {
		if v != "" {
			labels[k] = boundLabel(v)
		}
	}
	setLabel(LabelAlertName, a.Kind.AlertName())
	setLabel(LabelSeverity, severity(a))
	setLabel(LabelCluster, a.App.Cluster)
	setLabel(LabelNamespace, a.App.Namespace)
	setLabel(LabelApp, a.App.Name)
	if novel(a.Kind) && a.Destination.Name != "" {
		setLabel(LabelDestination, a.Destination.Name)
		setLabel(LabelPort, a.Destination.PortString())
		if a.Verdict != egressd.VerdictUnknown {
			setLabel(LabelVerdict, a.Verdict.String())
		}
	}

	ann := models.LabelSet{}
	setAnn := func(k, v string) {
		if v != "" {
			ann[k] = boundAnnotation(v, k == "description" || k == "evidence")
		}
	}
	setAnn("summary", summary(a))
	setAnn("description", description(a))
	setAnn("severity_reason", strings.Join(a.Evidence.Reasons, "; "))
	if a.Severity != "" {
		setAnn("evidence", a.Evidence.Summary())
	}
	if !a.Time.IsZero() {
		setAnn("first_seen", a.Time.UTC().Format(time.RFC3339))
	}
	setAnn("example_pod", a.Pod)
	setAnn("flow_count", a.Details["flows"])
	setAnn("baseline_source", a.BaselineSource)
	setAnn("fingerprint", a.Fingerprint)
	link := Link(opts.ExternalURL, a.Fingerprint)
	setAnn("link", link)

	ends := now.Add(resolvedFactor * opts.ResendInterval)
	if d.Resolved {
		ends = now
	}
	// Alertmanager refuses an alert that ends before it starts: an anomaly
	// time ahead of this clock (a node with a skewed clock) would make a
	// resolved alert unsendable.
	starts := a.Time
	if starts.IsZero() || starts.After(now) {
		starts = now
	}
	return &models.PostableAlert{
		Alert: models.Alert{
			Labels:       labels,
			GeneratorURL: strfmt.URI(link),
		},
		Annotations: ann,
		StartsAt:    strfmt.DateTime(starts.UTC()),
		EndsAt:      strfmt.DateTime(ends.UTC()),
	}
}

// Link returns externalURL + AnomalyPath + the escaped fingerprint, or ""
// when either is empty.
func Link(externalURL, fingerprint string) string {
	if externalURL == "" || fingerprint == "" {
		return ""
	}
	return strings.TrimRight(externalURL, "/") + AnomalyPath + url.PathEscape(fingerprint)
}

func novel(k egressd.AnomalyKind) bool {
	return k == egressd.AnomalyNovelDestination || k == egressd.AnomalyNovelFlood
}

func summary(a egressd.Anomaly) string {
	if a.Summary != "" {
		return a.Summary
	}
	switch a.Kind {
	case egressd.AnomalyNovelDestination:
		return fmt.Sprintf("%s reached %s, new for this app", a.App, a.Destination)
	case egressd.AnomalyNovelFlood:
		return fmt.Sprintf("%s reached many new destinations, such as %s", a.App, a.Destination)
	case egressd.AnomalyEgressVolume:
		return fmt.Sprintf("%s sends far more than its own history", a.App)
	case egressd.AnomalyDNSTunnel:
		return fmt.Sprintf("%s asked DNS for many distinct names, such as %s", a.App, a.Destination.Name)
	}
	return fmt.Sprintf("%s: %s", a.App, a.Kind)
}

// description is the alert's body: what happened, where, since when, and
// every detail the detector attached, one per line in key order.
func description(a egressd.Anomaly) string {
	var b strings.Builder
	b.WriteString(summary(a))
	b.WriteString(".\n")
	if a.Severity != "" {
		b.WriteString("severity: ")
		b.WriteString(string(a.Severity))
		if len(a.Evidence.Reasons) > 0 {
			b.WriteString(" (")
			b.WriteString(strings.Join(a.Evidence.Reasons, "; "))
			b.WriteString(")")
		}
		b.WriteString("\n")
	}
	b.WriteString("app: ")
	b.WriteString(a.App.String())
	if a.App.Cluster != "" {
		b.WriteString(" (cluster ")
		b.WriteString(a.App.Cluster)
		b.WriteString(")")
	}
	if a.Destination.Name != "" {
		b.WriteString("\ndestination: ")
		b.WriteString(a.Destination.Name)
		b.WriteString(" ")
		b.WriteString(a.Destination.PortString())
	}
	if !a.Time.IsZero() {
		b.WriteString("\nfirst seen: ")
		b.WriteString(a.Time.UTC().Format(time.RFC3339))
	}
	if a.Pod != "" {
		b.WriteString("\npod: ")
		b.WriteString(a.Pod)
		if a.Node != "" {
			b.WriteString(" on node ")
			b.WriteString(a.Node)
		}
	}
	if a.BaselineSource != "" {
		b.WriteString("\ncompared with: ")
		b.WriteString(a.BaselineSource)
	}
	keys := make([]string, 0, len(a.Details))
	for k := range a.Details {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString("\n")
		b.WriteString(k)
		b.WriteString(": ")
		b.WriteString(a.Details[k])
	}
	if !a.ResolvedAt.IsZero() {
		b.WriteString("\nresolved: ")
		b.WriteString(a.ResolvedAt.UTC().Format(time.RFC3339))
	}
	return b.String()
}

func boundLabel(s string) string {
	return bound(s, MaxLabelValueLen, false)
}

func boundAnnotation(s string, multiline bool) string {
	return bound(s, MaxAnnotationLen, multiline)
}

// bound returns s as valid UTF-8 without control characters (newlines kept
// when multiline), cut at a rune boundary to at most max bytes, ending in
// TruncatedSuffix when cut.
func bound(s string, max int, multiline bool) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.IndexFunc(s, func(r rune) bool { return control(r, multiline) }) >= 0 {
		s = strings.Map(func(r rune) rune {
			if control(r, multiline) {
				return '\uFFFD'
			}
			return r
		}, s)
	}
	if len(s) <= max {
		return s
	}
	cut := max - len(TruncatedSuffix)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + TruncatedSuffix
}

func control(r rune, multiline bool) bool {
	if r == '\n' && multiline {
		return false
	}
	return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0)
}
