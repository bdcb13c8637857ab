// Package egressd holds the domain vocabulary of egressd, the egress anomaly
// detector for Cilium clusters: apps, destinations, observations, the rollups
// the collector hands to storage, baselines and error codes.
//
// It imports only the standard library. Each technology (Hubble, PostgreSQL,
// Alertmanager, HTTP) lives in a package of its own that converts to and from
// these types at its edge; cmd/egressd wires the packages together.
package egressd
