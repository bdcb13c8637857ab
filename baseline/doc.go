// Package baseline turns the destinations each app reached within a rolling
// window into reviewable JSON files, one per app at <dir>/<namespace>/<app>.json,
// and reads those files back for the detector and the policy generator. It is
// the last stage of the pipeline: it reads window entries that postgres
// produced and writes files that operators commit to a GitOps repository.
//
// The files are deterministic (fixed field order, sorted destinations and
// ports, 2-space indent, trailing newline, no times or counters), so exporting
// the same window twice gives byte-identical files and a commit shows only real
// changes. Operators edit them by hand; Merge keeps those edits on re-export:
//
//   - "unbounded" and the top-level "note" always come from the file.
//   - Destinations whose name contains '*' (Cilium toFQDNs matchPattern
//     syntax, written by hand) are kept; a live name that a pattern matches is
//     folded into the pattern's entry instead of being listed on its own.
//   - Destinations with a "note" are kept, even after the window stops
//     showing them, and gain the live ports.
//   - Every other destination is replaced by the live set: a name that left
//     the window leaves the file.
//
// Build groups by namespace and app and ignores the cluster: the files of a
// GitOps repository describe a workload however many clusters run it, so the
// same namespace/app in two clusters shares one file with the union of their
// destinations.
//
// Patterns follow Cilium's toFQDNs matchPattern (see MatchName), so a baseline
// converts 1:1 into a CiliumNetworkPolicy. Bare IP addresses are destinations
// too (an app that reached an address without a DNS answer) and only ever
// match themselves.
//
// Names read from flows never choose where a file goes on their own: Path
// accepts only validated namespace and app names, and Export, Diff and LoadDir
// reach the directory through an os.Root, so not even a symbolic link inside
// it leads outside.
package baseline
