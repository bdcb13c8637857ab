// Package detector raises egress anomalies: novel destinations and egress
// volume far above an app's own history.
//
// Novelty is decided in memory on the hot path. The Detector is a collector
// Sink: each observation costs one hash lookup in a cache of (app,
// destination, port, protocol) keys already judged normal. A miss takes the
// slow path, which consults, in order: destinations accepted by an operator;
// the app's committed baseline file when there is one (exact names and
// Cilium toFQDNs patterns; the file is then the app's whole baseline); else
// the live rolling window (what the app reached in the last 7 days, loaded
// from PostgreSQL at start and extended as the app is observed). Apps in
// their learning period (24 h from first sight, in flow time) only learn;
// unbounded apps never raise novelty. A novel destination becomes an
// Anomaly handed to a bounded queue; a goroutine records it through the
// Store, which keeps it once under its fingerprint, so restarts and
// replicas never raise it twice.
//
// Floods: when one app reaches more than FloodThreshold novel destinations
// within FloodWindow (fifty subdomains of one domain in minutes, a DNS
// tunnel, a crawler gone wild), the first FloodThreshold are raised one by
// one and the rest are summarised in one novel_destination_flood anomaly per
// window, which lists how many there were and the first examples.
//
// Volume: every minute (of flow time, or of wall time with Prometheus) the
// volume rule asks a RateSource for each app's current rate and its average
// over the history window, and raises egress_volume when the current rate is
// above Factor times the average and above Floor for Hold; it resolves the
// anomaly once the rate has been back under that line for Hold.
package detector
