// Package pgserver starts a throwaway PostgreSQL server from the local
// PostgreSQL binaries (initdb, postgres): a fresh cluster in a temporary
// directory, on a free port of 127.0.0.1, with fsync off. It is the
// infrastructure of tests (postgres/pgtest), of `egressd demo` and of the
// benchmark harness, kept out of the system-of-record package postgres so
// that the server binary's database code holds nothing but that.
package pgserver
