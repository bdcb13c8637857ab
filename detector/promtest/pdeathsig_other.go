//go:build !linux

package promtest

import "syscall"

// setParentDeathSignal does nothing where the kernel offers no parent death
// signal: a killed test binary may leave Prometheus running.
func setParentDeathSignal(*syscall.SysProcAttr) {}
