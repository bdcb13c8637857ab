// Package promtest gives tests a real Prometheus server and a cAdvisor-shaped
// exporter for it to scrape.
//
// Start runs the prometheus binary of Debian's prometheus package (or the
// one in PATH, or $PROMETHEUS_BINARY) on a free port of 127.0.0.1 with a
// throwaway configuration and TSDB directory, scraping the targets the test
// names, and returns once /-/ready answers. Tests never skip for want of the
// binary: they fail, saying what to install.
//
// Exporter serves container_network_transmit_bytes_total per pod, labelled
// as the kubelet's cAdvisor endpoint labels it (namespace, pod, container,
// interface, name, id, image) and with explicit sample timestamps, as
// cAdvisor sends them. A test sets each pod's transmit rate and reads the
// exact byte count the counter had at any past time (Bytes), so it can
// compare what PromQL computes with the truth.
package promtest
