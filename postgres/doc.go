// Package postgres is egressd's system of record: it stores the rollups the
// collector flushes (apps, destinations with lifetime totals, hourly buckets,
// DNS questions, collector cursors), reads the window the baseline is built
// from, and keeps the detector's anomalies, the alert outbox and the
// destinations operators accepted. The schema lives in package migrations;
// Migrate applies it.
//
// It is the only package that imports pgx and holds every SQL statement.
// Errors leave it without pgx types: pgx.ErrNoRows becomes
// egressd.ErrNotFound, a cancelled context stays detectable with errors.Is,
// anything else becomes a message with the SQLSTATE.
//
// Writes are set-based: WriteRollup sends each table's rows as arrays, in a
// fixed number of statements whatever the number of keys, and merges them
// commutatively (counts add, first seen is the minimum, last seen the
// maximum), so several collectors may write at once and in any order. Every
// writer locks rows in the same order (tables in a fixed sequence, rows
// sorted by key), so concurrent writers wait for each other but never
// deadlock; writers sharing apps are serialized by the apps rows.
//
// Hourly buckets live in one partition of destination_hourly per UTC day,
// created on demand by the writer that first needs it (creation serialized
// by an advisory lock) and dropped whole by DropBucketsBefore. Retention and
// writers exclude each other through a second advisory lock, so a writer's
// partition cannot vanish between its check and its insert. Retention is
// measured back from the newest stored flow, not from the clock
// (RetentionCutoff): a replayed capture older than the period survives
// until newer flows arrive.
//
// Collector cursors say where a source resumes. ResumeCursor repairs one
// that lies in the future (stored by a version that accepted future-dated
// flows) from the newest stored data not after the bound, with a log line.
//
// Detection state lives here too. Anomalies are stored once under their
// fingerprint (RecordAnomaly: INSERT ... ON CONFLICT DO NOTHING), and only the
// call that stored one queues its deliveries, one per Alertmanager, in the
// alert_outbox table; so replicas that raise the same anomaly alert once.
// Senders claim due deliveries with FOR UPDATE SKIP LOCKED and a lease
// (ClaimDeliveries), never the same one twice while its lease lasts, and
// report each back (DeliverySent, DeliveryFailed, DeliveryDropped); a sender
// that dies lets its lease end and another takes over, so an Alertmanager
// outage or a restart loses no alert. Resolving (ResolveAnomaly, ExpireNovel,
// Accept) turns an anomaly's deliveries into resolves sent once. Every
// transaction that locks several of these rows locks anomalies by
// fingerprint, then deliveries by id, so none deadlocks with another.
// Values read from flows are length-bounded before they are stored (see
// MaxSummaryLen).
//
// The HTTP API reads through DB.API: the same methods on a small pool of
// its own (Options.APIMaxConns), so that no number of API requests can take
// the connections flushes and lease renewals need. Its listings
// (AppSummaries, AppDestinations, Anomalies) take the root package's
// filters and are paged by keyset: a page walks an index from the previous
// page's last key, so it costs the same wherever it starts.
//
// A throwaway server for the demo and the tests is package pgserver's job,
// not this one's.
package postgres
