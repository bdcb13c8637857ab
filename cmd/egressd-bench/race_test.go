//go:build race

package main

// raceEnabled: the race detector's instrumentation allocates, so allocation
// counts are only asserted without it.
const raceEnabled = true
