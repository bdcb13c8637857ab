//go:build unix && !linux

package postgres

import (
	"os"
	"syscall"
)

// setParentDeathSignal is Linux-only; elsewhere an orphaned server keeps
// running until stopped by hand.
func setParentDeathSignal(*syscall.SysProcAttr) {}

func defaultEphemeralDir() string { return os.TempDir() }
