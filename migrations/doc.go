// Package migrations holds egressd's PostgreSQL schema as numbered SQL files
// in tern's format (NNN_name.sql, each applied once, in order, inside a
// transaction). The postgres package embeds them through FS and applies them
// from `egressd migrate` and at the start of `egressd serve`.
//
// A migration, once released, is never edited: a schema change is a new file
// with the next number. Files are evaluated as Go text/template by tern, so
// they must not contain "{{".
package migrations
