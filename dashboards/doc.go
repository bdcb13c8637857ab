// Package dashboards holds egressd's Grafana dashboards and the tests that
// keep them working; it has no Go API.
//
// egressd-destinations.json reads the PostgreSQL system of record (apps,
// destinations, anomalies, alert_outbox) and egressd-health.json reads
// egressd's own Prometheus metrics. Both are in Grafana's classic dashboard
// JSON model as Grafana exports it for sharing: __inputs name the data
// sources (DS_POSTGRESQL, DS_PROMETHEUS) that the import dialog asks for,
// and panels refer to them as ${DS_...}. A hidden data source variable of
// the same name resolves those references when the files are provisioned
// from disk instead, where Grafana does not substitute __inputs.
//
// The tests decode each file, check its structure (unique uids and panel
// ids, grid positions, data source references declared in __inputs),
// expand the Grafana macros and variables of every SQL query the way
// Grafana's PostgreSQL data source does and run it against the migrated
// schema with seeded rows, and send every PromQL expression to a real
// Prometheus scraping egressd's real metrics. cmd/egressd's
// TestDashboardsShowDataOnAFreshInstall runs the same PromQL against a
// freshly started serve: every panel has a series before the first event.
// README.md tells operators how to import them.
package dashboards
