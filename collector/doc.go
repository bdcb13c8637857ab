// Package collector turns Cilium Hubble flows into egressd observations and
// rolls them up for PostgreSQL.
//
// Flows arrive encoded, from the live gRPC observer API (Client, which
// receives raw GetFlowsResponse bytes through a pass-through codec) or from
// JSON lines files (Replayer, which encodes the fields the collector reads of
// each line as a GetFlowsResponse, so that replay takes the live path). The
// Replayer reads a line with fastjson, checked against the messages'
// descriptors as protojson checks it, and leaves any line it cannot vouch
// for to protojson: TestFastJSONAgreesWithProtojson and a fuzz target hold
// the two to the same result. A Pipeline per stream decodes only the fields attribution
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
//     (is_reply, else the deprecated reply field), nor ICMP messages that
//     answer traffic: errors a pod sends in answer to inbound packets
//     (destination unreachable, time exceeded...), which Cilium reports as
//     EGRESS flows that are not replies (conntrack RELATED), and echo and
//     other ICMP replies. Echo requests count.
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
//
// # Time at the door
//
// A flow's time is checked before anything reads it: a flow stamped before
// 2000, or more than Options.MaxClockSkew (default 5 minutes) ahead of
// Options.Now, is rejected. It is not an observation, moves no cursor, is
// counted in egressd_flows_rejected_total{reason="clock"} and is logged with
// its node at most once per 10 seconds. A cursor is where a restarted
// collector resumes: one flow stamped 2100 would otherwise make it skip every
// real flow until then. Seconds beyond 2262 cannot be nanoseconds in an
// int64 and are rejected before any arithmetic.
//
// In a replay the receiving clock bounds little (a capture is recorded
// before it is replayed), so the bound is also relative to the capture's own
// flows: a flow more than MaxClockSkew after the newest flow accepted so far
// is held back until the next flow. If that one is not more than the skew
// before it, time really moved on (a quiet spell, the next file) and both
// are handled; otherwise the held flow was a stray stamp and is rejected
// like one from the future. The last flow of a replay has no next one: it
// is rejected when it is more than the skew after the flows before it. A
// stray that stood would cover the time up to it in its node's replay
// cursor (below) and become the newest stored flow that retention counts
// from. Limits: two or more consecutive strays confirm each other; a
// node whose clock runs ahead is rejected only while its flows are
// interleaved with others'.
//
// # Replay: what was stored, by flow identity
//
// A flow's identity is its node and its time: Hubble numbers nothing across
// a cluster, but each node's flows come in time order, and two complete
// captures of a node hold the same flows over the same time. So a replay
// keeps a cursor per node and span of flow time it handled, named
// "replay:NODE@FIRST" (FIRST the span's first flow, in Unix ns; NODE the node
// name, or a hash of it when it is not made of name characters), whose time
// is the span's newest flow. A flow inside a span stored by any earlier
// replay is skipped as already_stored, whatever file, copy, compression or
// pipe it comes from; a flow outside every stored span is handled and
// extends this replay's span of its node. Hence:
//
//   - the same capture again, from a path, a renamed or gzipped copy, or
//     standard input, stores nothing; an interrupted replay resumes where
//     its last flush got to (the cursors are written with the rollups);
//   - different captures (other times, other nodes) are all stored, in any
//     order: an older capture after a newer one too;
//   - overlapping captures of a node store the overlap once and the rest;
//   - a flow more than an hour after its node's span opens a new span: a
//     quiet hour costs one more cursor row, and a flow stamped far ahead of
//     its neighbours covers only itself, not the time in between.
//
// Limits: two captures of the same node and time taken with different
// filters (say `hubble observe --namespace a`, then `--namespace b`) are
// taken for one, and the second is skipped; replay them with different
// node names in a pre-processing step, or into one capture. A node's flows
// out of time order by more than their span (rare: a node's ring buffer is
// ordered) open spans of their own. A replay opens at most 1000 spans per
// node; past that, later flows extend the newest span, which can only
// under-state what was stored (such flows may be counted again by a later
// replay of the same capture). Cursors of older versions (per file path)
// are not read: a capture replayed by them is counted again once.
package collector
