package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/collector/flowgen"
	"github.com/egressd/egressd/collector/hubbletest"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgtest"
)

// nonRootUID is the image's user (deploy/Dockerfile: distroless nonroot).
const nonRootUID = 65532

// TestServeRunsNonRootOnAReadOnlyRoot runs the static binary the way the
// container does: alone in a root filesystem that holds nothing but itself,
// mounted read-only, as user 65532, with no /tmp. It must stream, store and
// answer its probes there, and its log at debug level must not hold the
// database password or the API token.
//
// It needs a mount namespace: as root (CI) the process runs as 65532; as
// another user, unshare maps that user to root in a user namespace and the
// process runs as the invoking user, which is non-root outside it anyway.
func TestServeRunsNonRootOnAReadOnlyRoot(t *testing.T) {
	t.Parallel()
	unshare, err := exec.LookPath("unshare")
	require.NoError(t, err, "this test needs unshare and chroot (Debian: util-linux, coreutils)")

	root := t.TempDir()
	require.NoError(t, os.Chmod(root, 0o755))
	// The static binary, as in the image (faultBuild builds it so).
	bin, err := os.ReadFile(faultBuild(t))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(root, "egressd"), bin, 0o755))

	day, err := flowgen.HomeLab(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), 6*time.Hour).Generate()
	require.NoError(t, err)
	srv, hubbleAddr := startHubble(t, hubbletest.Options{})

	dsn := pgtest.URL(t)
	u, err := url.Parse(string(dsn))
	require.NoError(t, err)
	password, ok := u.User.Password()
	require.True(t, ok && password != "", "the test database URL carries a password")
	const token = "tok-3f9c1a7e5b2d4c6e8a0b"
	httpAddr := freeAddr(t)

	userspec := fmt.Sprintf("--userspec=%d:%d", nonRootUID, nonRootUID)
	args := []string{"--mount", "--propagation", "private"}
	if os.Geteuid() != 0 {
		args = []string{"--map-root-user", "--mount", "--propagation", "private"}
		userspec = "--userspec=0:0" // the invoking user, outside the namespace
	}
	// Bind the root onto itself, make that mount read-only, and run the
	// binary chrooted into it.
	script := `mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && exec chroot "$2" "$1" /egressd serve --log-level debug --listen "$3"`
	args = append(args, "--", "/bin/sh", "-c", script, "sh", root, userspec, httpAddr)
	cmd := exec.Command(unshare, args...)
	cmd.Dir = "/"
	cmd.Env = []string{
		"DATABASE_URL=" + string(dsn),
		"HUBBLE_ADDRESS=" + hubbleAddr,
		"EGRESSD_API_TOKEN=" + token,
	}
	var logs lockedBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
	})

	base := "http://" + httpAddr
	streamCtx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, srv.WaitStreams(streamCtx, 1), "egressd never connected to Hubble:\n%s", logs.String())
	srv.Add(day...)
	waitFor(t, exited, &logs, "/readyz answers 200 (stored and streaming)", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	opts := postgres.DefaultOptions()
	opts.URL = dsn
	db, err := postgres.Open(context.Background(), opts)
	require.NoError(t, err)
	defer db.Close()
	waitFor(t, exited, &logs, "the streamed day is stored", func() bool {
		return storedUpTo(t, db, hubbleAddr, lastStreamed(day))
	})
	total, err := db.FlowTotal(context.Background())
	require.NoError(t, err)
	require.Positive(t, total)

	// What the kernel says about the process now running the binary
	// (unshare and chroot exec it, so it is cmd's process).
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	require.NoError(t, err)
	wantUID := nonRootUID
	if os.Geteuid() != 0 {
		wantUID = os.Geteuid()
	}
	require.Regexp(t, fmt.Sprintf(`(?m)^Uid:\s+%d\s+%d\s`, wantUID, wantUID), string(status))
	mounts, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", cmd.Process.Pid))
	require.NoError(t, err)
	require.Regexp(t, `(?m)^\S+ \S+ \S+ \S+ / ro[,\s]`, string(mounts), "its root is mounted read-only")

	// A mutation without the token is refused; with it, it is done.
	accept := func(auth string) int {
		req, err := http.NewRequest(http.MethodPost, base+"/api/v1/apps/media/sonarr/accepted",
			strings.NewReader(`{"destination":"x.example","port":443,"protocol":"TCP","by":"test"}`))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusUnauthorized, accept(""))
	require.Equal(t, http.StatusUnauthorized, accept("wrong-token"))
	require.Equal(t, http.StatusCreated, accept(token))

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		require.NoError(t, err, "egressd exits cleanly on SIGTERM:\n%s", logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("egressd did not stop within 30s of SIGTERM:\n%s", logs.String())
	}
	log := logs.String()
	require.Contains(t, log, "http_listening", "the debug log was captured")
	require.NotContains(t, log, password, "the database password is never logged")
	require.NotContains(t, log, token, "the API token is never logged")
	require.NotContains(t, log, "read-only file system", "nothing tried to write to the root")
}

// waitFor polls cond until it holds, failing with the process's log when
// the process exits or 60 s pass.
func waitFor(t *testing.T, exited <-chan error, logs *lockedBuffer, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		select {
		case err := <-exited:
			t.Fatalf("egressd exited (%v) before %s:\n%s", err, what, logs.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s:\n%s", what, logs.String())
		}
	}
}

// freeAddr returns a loopback address no one listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// lockedBuffer collects a subprocess's output for reading while it runs.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
