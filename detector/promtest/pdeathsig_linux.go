package promtest

import "syscall"

// setParentDeathSignal makes the kernel stop Prometheus if the test binary
// dies without calling Stop (killed on timeout), so no orphan server is left
// running.
func setParentDeathSignal(a *syscall.SysProcAttr) {
	a.Pdeathsig = syscall.SIGTERM
}
