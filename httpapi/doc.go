// Package httpapi is egressd's HTTP surface: the chi router with /metrics for
// Prometheus, /healthz (the process is alive) and /readyz (its dependencies
// answer). Handlers reach the rest of egressd only through small interfaces
// declared here, which cmd/egressd fills in.
package httpapi
