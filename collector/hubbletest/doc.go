// Package hubbletest provides an in-process Hubble observer for tests, demos
// and load benchmarks, in the way net/http/httptest provides an HTTP server.
//
// It is product code, not test code: `egressd demo` streams its sample
// traffic through this server, so the egressd binary links it. It is a
// simulator of Hubble and imports no testing package (a test in
// cmd/egressd fails if the server binary links one); despite the name,
// nothing here needs a *testing.T.
//
// A [Server] implements the real observer.ObserverServer gRPC interface of
// github.com/cilium/cilium/api/v1/observer on a loopback TCP port or a unix
// socket, so egressd's live Hubble client talks to it exactly as it talks to
// Hubble Relay or to a Cilium agent socket. Tests [Server.Add] flows into a
// buffer that behaves like Hubble's ring buffer; GetFlows serves them with
// Hubble's request semantics (since, until, number, first, follow, whitelist,
// blacklist, field_mask) and wakes followers when new flows arrive.
//
// Where Hubble's behaviour is subtle the server copies it rather than
// guessing; the source followed is cilium/cilium v1.20.2 (the version in
// go.mod), named in comments next to each piece:
//
//   - pkg/hubble/observer/local_observer.go: newRingReader (where a request
//     starts in the buffer; since takes precedence over number), eventsReader
//     (since, until, number, lost events bypass filters and time ranges) and
//     GetFlows (field mask, lost_events responses, first+follow rejected).
//   - pkg/hubble/filters/*.go: the semantics of every FlowFilter field the
//     server supports (see [SupportedFilterFields]).
//   - pkg/hubble/parser/fieldmask/fieldmask.go: field mask trimming.
//   - pkg/hubble/container/ring.go: a reader overtaken by the writer gets a
//     lost_events response with source HUBBLE_RING_BUFFER.
//
// The server differs from Hubble on purpose in three ways, all in favour of
// tests that fail loudly: a FlowFilter field the server does not implement,
// or one it does not know (a newer client), makes GetFlows fail with
// codes.InvalidArgument naming the field, where Hubble would silently ignore
// an unknown one; a ring-buffer loss is reported as one lost_events response
// per gap instead of being rate-limited per interval; and the reply filter
// falls back to the deprecated reply field for flows recorded by agents that
// predate is_reply (see [SupportedFilterFields]).
//
// What a Hubble client learns from these semantics (true of real Hubble too):
//
//   - since is inclusive: a stream resumed with since = last seen time
//     repeats the flows of that instant; deduplicate.
//   - since takes precedence over number: since with number N sends the
//     first N flows at or after since, not the last N.
//   - follow with number N sends the last N flows, then new ones; follow
//     alone sends only new ones; first with follow is InvalidArgument.
//   - lost_events (and Relay's node_status) ignore filters, since, until and
//     number; ring-buffer losses carry the detection time, not a flow time.
//   - An empty FlowFilter matches everything: in a blacklist it blocks all.
//   - Label filters compare whole keys: "reserved:world" does not match the
//     "reserved:world-ipv4"/"reserved:world-ipv6" labels of dual-stack
//     clusters or CIDR identities; list all three.
//   - A pod filter without "/" means namespace "default".
//   - With a field mask, the response's time and node_name come from the
//     masked flow: list "time" and "node_name" in the mask.
//   - Behind Relay, number applies per node (up to N times the node count).
//   - A Hubble that does not know a filter field (older than the client)
//     ignores it silently, so a client must not rely on server-side
//     filtering for correctness.
//
// Fault injection for client tests: [Server.CutStreamsAfter] ends streams
// with codes.Unavailable, [Server.Requests] records what clients asked (to
// assert the since of a resumed stream), and [Server.WaitStreams] and
// [Server.WaitRequests] let a test wait for a client without sleeping.
// Replays and losses are simulated by adding the same responses again or by
// adding lost_events responses.
//
// [NewFlow], [Response] and [LoadJSONLines] build realistic input: flows
// from a compact description, or the GetFlowsResponse lines that
// `hubble observe -o jsonpb` and the Hubble exporter write.
package hubbletest
