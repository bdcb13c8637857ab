package pgserver

import (
	"os"
	"syscall"
)

// setParentDeathSignal makes the kernel send the server a fast-shutdown
// signal if egressd dies without calling Close (a test binary killed on
// timeout), so no orphan server is left running.
func setParentDeathSignal(a *syscall.SysProcAttr) {
	a.Pdeathsig = syscall.SIGINT
}

// defaultDir is /dev/shm when it is a tmpfs with room to spare: a
// throwaway cluster gains nothing from a disk, and creating a database there
// is several times faster. Containers often have a small /dev/shm (64 MiB in
// Docker); then the temporary directory is used.
func defaultDir() string {
	const shm = "/dev/shm"
	const tmpfsMagic = 0x01021994
	var st syscall.Statfs_t
	if err := syscall.Statfs(shm, &st); err == nil && st.Type == tmpfsMagic &&
		uint64(st.Bavail)*uint64(st.Bsize) >= 1<<30 {
		return shm
	}
	return os.TempDir()
}
