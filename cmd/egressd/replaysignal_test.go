package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/postgres/pgtest"
)

// TestReplayStopsOnSignal runs the real binary on inputs that never end and
// checks that SIGTERM or SIGINT stops it within a second, with its
// statistics printed and a non-zero exit status.
func TestReplayStopsOnSignal(t *testing.T) {
	t.Parallel()
	bin := faultBuild(t)
	lines := gunzipFile(t, capture)
	first := lines[:strings.Index(string(lines), "\n")+1]

	// stopWithin signals p once ready says it is reading, and checks how
	// it ends.
	stopWithin := func(t *testing.T, p *faultProc, sig syscall.Signal) {
		t.Helper()
		start := time.Now()
		require.NoError(t, p.cmd.Process.Signal(sig))
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			t.Fatalf("replay still runs 5 s after %v", sig)
		}
		took := time.Since(start)
		t.Logf("stopped %s after %v", took.Round(time.Millisecond), sig)
		require.Less(t, took, time.Second, "replay took %s to stop after %v", took, sig)
		var ee *exec.ExitError
		require.True(t, errors.As(p.err, &ee), "exit status: %v", p.err)
		require.Equal(t, 2, ee.ExitCode(), p.logs.String())
		require.Contains(t, p.logs.String(), "replayed ", "statistics are printed")
		require.Contains(t, p.logs.String(), "replay interrupted")
	}
	// reading waits until the process has path open.
	reading := func(t *testing.T, p *faultProc, path string) {
		t.Helper()
		waitUntil(t, "replay opens "+path, func() bool {
			fds, _ := os.ReadDir(filepath.Join("/proc", itoa64(int64(p.cmd.Process.Pid)), "fd"))
			for _, fd := range fds {
				if l, err := os.Readlink(filepath.Join("/proc", itoa64(int64(p.cmd.Process.Pid)), "fd", fd.Name())); err == nil && l == path {
					return true
				}
			}
			return false
		})
	}

	t.Run("/dev/zero, SIGTERM", func(t *testing.T) {
		t.Parallel()
		p := faultStart(t, bin, "replay", "--database-url", string(pgtest.URL(t)), "/dev/zero")
		reading(t, p, "/dev/zero")
		time.Sleep(200 * time.Millisecond) // let it spin on the endless line
		stopWithin(t, p, syscall.SIGTERM)
	})
	t.Run("FIFO with an idle writer, SIGTERM", func(t *testing.T) {
		t.Parallel()
		fifo := filepath.Join(t.TempDir(), "flows")
		require.NoError(t, syscall.Mkfifo(fifo, 0o600))
		p := faultStart(t, bin, "replay", "--database-url", string(pgtest.URL(t)), fifo)
		// Opening for writing returns once replay has opened it for
		// reading; the writer then writes one flow and idles.
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		require.NoError(t, err)
		defer w.Close()
		_, err = w.Write(first)
		require.NoError(t, err)
		reading(t, p, fifo)
		waitUntil(t, "replay reads the line", func() bool { return unread(t, w) == 0 })
		stopWithin(t, p, syscall.SIGTERM)
		require.Contains(t, p.logs.String(), "1 flow records")
	})
	t.Run("standard input with an idle writer, SIGINT", func(t *testing.T) {
		t.Parallel()
		r, w, err := os.Pipe()
		require.NoError(t, err)
		defer w.Close()
		p := faultStartIn(t, r, bin, "replay", "--database-url", string(pgtest.URL(t)), "-")
		r.Close()
		_, err = w.Write(first)
		require.NoError(t, err)
		waitUntil(t, "replay reads the line", func() bool { return unread(t, w) == 0 })
		stopWithin(t, p, syscall.SIGINT)
		require.Contains(t, p.logs.String(), "1 flow records")
	})
}

// unread returns how many bytes written to the pipe or FIFO w have not been
// read yet (the FIONREAD ioctl).
func unread(t *testing.T, w *os.File) int {
	t.Helper()
	rc, err := w.SyscallConn()
	require.NoError(t, err)
	var n int32
	var errno syscall.Errno
	require.NoError(t, rc.Control(func(fd uintptr) {
		const fionread = 0x541B // Linux
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, fionread, uintptr(unsafe.Pointer(&n)))
	}))
	require.Zero(t, errno, "FIONREAD")
	return int(n)
}
