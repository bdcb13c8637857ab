// Package collector turns Cilium Hubble flows into egressd observations and
// rolls them up for PostgreSQL.
//
// Flows arrive encoded, from the live gRPC observer API (Client, which
// receives raw GetFlowsResponse bytes through a pass-through codec) or from
// JSON lines files (Replayer, which re-encodes each line so that replay takes
// the live path). A Pipeline per stream decodes only the fields attribution
// needs with protowire (no full proto.Unmarshal, no allocation per flow),
// drops Hubble's duplicates, learns which names each pod's DNS answers gave
// to which addresses, and keeps egress flows that leave the cluster, each
// attributed to its app (namespace, workload) and destination (name or IP,
// port, protocol). Observations go to Sinks: the Aggregator, which writes
// commutative rollups to PostgreSQL once per flush interval, and later the
// detector.
//
// Attribution decides, in order:
//
//   - L7 DNS records: an answer (RESPONSE with addresses) teaches the asking
//     pod's address->name map, honouring the TTL but at least DNSMinTTL;
//     a question (REQUEST) is a dns_query observation. Neither is a
//     destination.
//   - Other flows must be egress (traffic_direction EGRESS) and not replies
//     (is_reply, else the deprecated reply field).
//   - The destination must be outside the cluster according to its labels
//     (reserved:world*, cidr:, fqdn:), must not name a pod (the L7-proxy
//     quirk of identity 2 with a pod name), must not carry another reserved
//     label (kube-apiserver, host, remote-node...), and its address must not
//     be in Options.InternalCIDRs (node and LAN addresses Cilium calls world).
//   - The app is the first of Options.AppPrecedence that gives a valid name;
//     host-network sources are the app host/<node>.
//   - The destination name is the first destination_names entry, else the
//     name from the pod's DNS answers, else the IP address.
//
// Every flow that is not kept is counted by reason in
// egressd_collector_flows_skipped_total or
// egressd_collector_unattributed_flows_total; nothing read from a flow can
// make the pipeline allocate without bound or panic.
package collector
