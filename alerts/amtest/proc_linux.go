package amtest

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill Alertmanager when the test binary dies
// without running its cleanups (a panic, go test's timeout), so no
// Alertmanager outlives its test.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
