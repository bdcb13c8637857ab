// Package service is the long-running egressd service (`egressd serve`) as
// an ordered set of components, each a Run(ctx) error, and the lifecycle
// that ties them together: who collects a Hubble source (a lease in
// PostgreSQL, hand-over to a standby replica), what each term of that lease
// loads from storage before it streams (the detector's state, DNS answers,
// pods), what is reread while running (accepted destinations, baseline
// files, alert TTLs), what is dropped (retention), and the order in which
// everything stops.
//
// Stop order, whatever stops the service (a signal, a component failing,
// Hubble finishing a stream without --follow):
//
//  1. collector: the Hubble stream stops, then the aggregator writes its
//     last flush under the lease, so every received flow is counted and
//     the cursor covers it;
//  2. volume, refresh, retention: nothing more is judged or reread;
//  3. detector: finishes the write in flight, then records what it has
//     queued (the flows of 1 and the volume verdicts of 2 included);
//  4. alerts: the sender finishes the claim in flight, then its last
//     round claims and posts what is due, those anomalies included;
//  5. lease: the source's lease is released, so a standby takes over at
//     once from the cursor of 1;
//  6. http: /metrics, /healthz and /readyz answer until everything else
//     has stopped.
//
// docs/architecture.md describes the components, the data flow and how a
// restart recovers its state.
package service
