// Package detector raises egress anomalies: novel destinations and egress
// volume far above an app's own history.
//
// Novelty is decided in memory on the hot path. The Detector is a collector
// Sink: each observation costs one hash lookup in a cache of (app,
// destination, port, protocol) keys already judged normal. A miss takes the
// slow path, which consults, in order: destinations accepted by an operator
// (exact names, or Cilium toFQDNs patterns accepted from the triage page);
// the app's committed baseline file when there is one (exact names and
// Cilium toFQDNs patterns; the file is then the app's whole baseline); else
// the live rolling window (what the app reached in the last 7 days, loaded
// from PostgreSQL at start and extended as the app is observed). Apps in
// their learning period (24 h from first sight, in flow time) only learn;
// unbounded apps never raise novelty. A novel destination becomes an
// Anomaly handed to a bounded queue; a goroutine records it through the
// Store, which keeps it once under its fingerprint, so restarts and
// replicas never raise it twice. The destination joins the window only once
// its anomaly is stored: while the store is down it stays pending (raised
// once), and when the queue is full the anomaly is dropped, counted, and
// raised again at the destination's next observation, or at the next start
// (below), never learnt silently.
//
// Floods: when one app reaches more than FloodThreshold novel destinations
// within FloodWindow (fifty subdomains of one domain in minutes, a DNS
// tunnel, a crawler gone wild), the first FloodThreshold are raised one by
// one and the rest are summarised in one novel_destination_flood anomaly per
// window, which lists how many there were and the first examples.
//
// DNS tunnels: an app raises one dns_tunnel per FloodWindow when it asks
// DNS for more than DNSFloodThreshold distinct names (rule "count"), or
// for DNSTunnelNames distinct tunnel-shaped names under one registrable
// domain (rule "shape"), however few names in all. A name is
// tunnel-shaped when the part below its registrable domain (public suffix
// list) holds a run of at least 24 letters and digits without a hyphen, in
// which letters and digits alternate at least twice, with at least 3 bits
// of entropy per character: data encoded in hex, base32 or base64, not
// words, service names or a host number.
//
// Evidence and severity: before an anomaly is recorded, Run gathers its
// evidence (egressd.Evidence): from memory, the app's first sight and
// baseline file, the name's shape (registrable domain, labels, entropy of
// the leftmost label, bare IP), the port's class, the verdict and the pod;
// from the EvidenceStore (UseEvidence), one query per anomaly, the
// destination's prevalence among the stored destinations with allowed
// flows first seen before the anomaly: other apps and clusters that
// reached the name, when the app's cluster first did, the app's other
// ports on it, other apps under the same registrable domain, and the
// app's names under that domain in its live window. Anomalies are rare, so
// this costs the hot path nothing. The severity is then set by this table,
// the first matching row deciding; its words are the first of the
// anomaly's Evidence.Reasons, followed by the facts "bare IP", "high port"
// (>= 1024), "random-looking name" (tunnel-shaped) and "dropped by policy"
// where they hold:
//
//	kind                  condition                                           severity
//	novel destination     the store did not answer (prevalence unknown)       warning
//	                      the app already reaches the name on another port    info
//	                      other apps (any cluster) reached the name           info
//	                      never reached by any app, dropped by policy          warning
//	                      never reached, its registrable domain is in the      warning
//	                        app's baseline (siblings)
//	                      never reached, other apps reach its domain           warning
//	                      never reached by any app in the cluster              critical
//	flood                 as its first destination past the threshold, at     warning+
//	                      least warning ("many new destinations at once")
//	dns_tunnel            rule shape (encoded names under one domain)          critical
//	                      rule count (more names than the threshold)          warning
//	egress_volume         always                                              warning
//
// So a destination no app in the cluster ever reached (critical) ranks
// above one other apps use every day and above a host the app already uses
// on a new port (info).
//
// Volume: every minute (of flow time, or of wall time with Prometheus) the
// volume rule asks a RateSource for each app's current rate and its average
// over the history window, and raises egress_volume when the current rate is
// above Factor times the average and above Floor for Hold; it resolves the
// anomaly once the rate has been back under that line for Hold. Hold is
// measured within half an evaluation interval, so a Hold of two minutes
// is two evaluations of a minute apart whatever the clock's jitter. With
// Prometheus, a failing query judges nothing (firing anomalies keep
// firing): the failure and the recovery are logged once each, and
// egressd_detector_volume_source_up is 0 in between.
//
// Restarts: Prime gives a new process what the verdicts of one long-lived
// process depend on, from the store, as of where its stream resumes (in
// serve the source's cursor, or the wall clock when nothing is stored; in
// replay the newest stored flow):
//   - apps' first sight (learning periods), accepted destinations and
//     baseline files (set before Prime);
//   - the live window: destinations seen in the 7 days before now;
//   - the destinations that appeared in those 7 days after their app's
//     learning period, judged again in the order they appeared. This
//     rebuilds the flood windows that span the restart, and raises what
//     the store lacks: an anomaly lost to a full queue or a store outage
//     just before the process stopped. Anomalies already stored are not
//     raised again;
//   - DNS flood windows: a stored dns_tunnel anomaly whose window is still
//     open stays raised; otherwise the names asked in the last FloodWindow
//     are counted again. The store keeps when each name was last asked, so
//     the rebuilt window starts at the first of those names, which can be
//     later than where one process would have started it: a tunnel is
//     still raised once, possibly under another start time;
//   - the volume history, from each app's flow count per hour (app_hourly,
//     written with every rollup). Hourly counts rather than per-minute ones:
//     the history average is over 24 h, and an hour spread evenly over its
//     minutes changes it only at the window's far edge, while a per-minute
//     table would cost 60 times the rows. The price is a burst that a
//     restart cuts in two before it fired: it is judged again from the
//     flows after the restart (the minutes before are spread over the
//     hour), so it fires once, up to Hold later and under a later start
//     time. An app is judged from its first sight, not from this process's
//     first minute;
//   - volume anomalies still firing, with the average they were raised
//     against, so that they resolve rather than fire again.
//
// The pod -> app map of the Prometheus source (PodAppMap) is loaded by the
// caller from the stored pods of each app (PodAppMap.Load), so that a pod
// that only keeps an old connection open is summed into its app at once.
package detector
