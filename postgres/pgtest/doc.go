// Package pgtest gives tests a real PostgreSQL database.
//
// A package's TestMain calls Main. The first test that asks for a database
// connects to $TEST_DATABASE_URL or, when that is unset, starts one
// throwaway server (pgserver.Start) for the whole test binary, and
// migrates a template database once. Each NewDB or URL is then a fresh
// database copied from that template, dropped when the test ends, so tests
// may commit, run in parallel and never see each other's rows. Main stops
// the server and drops the template after the tests.
//
// A Snapshot is a state several tests start from that is costly to build
// (a week of flows replayed): filled once per test binary, then copied
// into a fresh database per test the same way.
//
// Tests never skip for want of a database: without TEST_DATABASE_URL and
// without the PostgreSQL server binaries they fail, saying what to install.
package pgtest
