//go:build unix && !linux

package pgserver

import (
	"os"
	"syscall"
)

// setParentDeathSignal is Linux-only; elsewhere an orphaned server keeps
// running until stopped by hand.
func setParentDeathSignal(*syscall.SysProcAttr) {}

func defaultDir() string { return os.TempDir() }
