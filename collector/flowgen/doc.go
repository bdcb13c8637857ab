// Package flowgen generates realistic, deterministic Hubble traffic: the
// responses a Hubble Relay streams from observer.GetFlows for a small cluster
// over days of simulated time, shaped like Cilium 1.19 output.
//
// egressd uses it as the test capture that proves the collector learns exactly
// the right destinations (see Truth and testdata/homelab-week.jsonl.gz), as the
// sample traffic of `egressd demo`, and as input of load benchmarks. No real
// recorded flow is copied here: every address, name and identifier is made up
// by the generator, and real recordings only informed the shapes.
//
// It is product code: the egressd binary links it for the demo, so it
// imports no testing package (a test in cmd/egressd checks the binary's
// dependencies).
//
// A Scenario is data: nodes, workloads with their pods, and routines (a
// schedule plus actions such as a DNS lookup followed by a connection). HomeLab
// returns the default scenario, whose ground truth is Truth. Generate renders
// a scenario into []*observer.GetFlowsResponse; the same scenario always gives
// the same responses, and WriteJSONLines always gives the same bytes. Planted
// anomalies (a novel name, a bare IP, a dropped attempt, a burst) are Events in
// Scenario.Extra; they do not change any other flow of the scenario.
//
// What the generated traffic contains, as Cilium 1.19 with cluster name
// "homelab" would report it:
//
//   - Each connection is a few flows, as monitor aggregation reports it: a
//     policy verdict for the first packet when the pod has a policy, then SYN,
//     SYN-ACK, a data exchange and FIN in each direction, replies marked
//     is_reply. Keep-alive requests are a data exchange only.
//   - DNS goes through the Cilium DNS proxy: policy verdict (REDIRECTED),
//     to-proxy trace, L7 request, L7 response (source = the DNS server,
//     destination = the asking pod, EGRESS, is_reply true), to-endpoint
//     trace of the answer. CoreDNS forwards cache misses upstream.
//   - node_name is "<cluster>/<node>", as Cilium writes it whenever the
//     cluster name is not "default"; endpoints on the observing node carry
//     their endpoint ID and workloads, remote ones do not.
//   - Drop events carry no is_reply (Hubble cannot tell), their policy
//     verdicts carry is_reply false.
//   - Relay delivers about one flow in a hundred twice, a few seconds later;
//     the agents report lost events; Relay reports a node reconnecting.
package flowgen
