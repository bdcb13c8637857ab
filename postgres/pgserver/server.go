package pgserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/egressd/egressd/internal/tail"
	"github.com/egressd/egressd/postgres"
)

// ephemeralUser owns the throwaway cluster; the URL connects as it.
const ephemeralUser = "egressd"

// ephemeralDatabase is created empty in the throwaway cluster; the URL
// names it.
const ephemeralDatabase = "egressd"

// installHint ends every error about missing PostgreSQL binaries.
const installHint = "install Debian's postgresql package (apt-get install postgresql) or set DATABASE_URL (TEST_DATABASE_URL for tests) to a running server"

// Options configures Start. The zero value is ready to use.
type Options struct {
	// BinDir is the directory holding initdb and postgres. Empty: the
	// directory of initdb found in PATH, else the newest
	// /usr/lib/postgresql/VERSION/bin.
	BinDir string
	// Dir is where the cluster's temporary directory is created. Empty
	// means /dev/shm on Linux when it is a tmpfs with at least 1 GiB free,
	// else os.TempDir(). When running as root the server runs as the user
	// postgres (or nobody), which must be able to reach it.
	Dir string
	// Log receives the server's log output. Nil keeps only its tail, for
	// error messages.
	Log io.Writer
	// StartTimeout bounds initdb and start-up together; 0 means 60 s.
	StartTimeout time.Duration
}

// Server is a throwaway PostgreSQL server: a fresh cluster in a temporary
// directory, listening on 127.0.0.1 and tuned for speed over durability
// (fsync off). Stop and Restart take it away and bring it back with its
// data, for fault tests; Close stops it and deletes every byte it stored.
type Server struct {
	dir string
	url postgres.DSN
	log *tail.Writer
	// What start needs again to restart the server on the same port.
	binDir   string
	owner    *osUser
	logTo    io.Writer
	port     int
	password string

	// mu guards cmd and done against Stop, Restart and Close called from
	// different goroutines.
	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the server process has exited
	closed  bool
	created bool // the database exists: a restart must not create it again

	closeOnce sync.Once
	closeErr  error
}

// Start initializes a new cluster from the local PostgreSQL
// binaries, starts it on a free port of 127.0.0.1 with its Unix socket in the
// temporary directory, and returns once it accepts connections. ctx bounds
// the start-up only; the server runs until Close.
//
// Run as root, it runs initdb and the server as the user postgres, or nobody
// when there is no such user, because PostgreSQL refuses to run as root.
func Start(ctx context.Context, opts Options) (*Server, error) {
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	binDir, err := findBinDir(opts.BinDir)
	if err != nil {
		return nil, err
	}
	owner, err := serverOwner()
	if err != nil {
		return nil, err
	}
	parent := opts.Dir
	if parent == "" {
		parent = defaultDir()
	}
	password := randomHex(16)
	dir, err := os.MkdirTemp(parent, "egressd-pg-")
	if err != nil {
		return nil, fmt.Errorf("pgserver: start throwaway server: %w", err)
	}
	e := &Server{dir: dir, log: tail.New(16 << 10), binDir: binDir, owner: owner, logTo: opts.Log, password: password}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	if err := owner.chown(dir); err != nil {
		return nil, fmt.Errorf("pgserver: start throwaway server: %w", err)
	}

	if err := e.initdb(ctx, binDir, owner, password); err != nil {
		return nil, err
	}

	// Another process may take the free port between our probe and the
	// server's bind; try again on a new one.
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, fmt.Errorf("pgserver: start throwaway server: find a free port: %w", err)
		}
		e.mu.Lock()
		err = e.start(ctx, port)
		e.mu.Unlock()
		if err == nil {
			break
		}
		if attempt == 3 || !errors.Is(err, errPortInUse) {
			return nil, err
		}
	}
	ok = true
	return e, nil
}

// URL returns the connection URL of the server's database "egressd".
func (e *Server) URL() postgres.DSN {
	return e.url
}

// Stop shuts the server down with a fast shutdown (sessions rolled back, no
// waiting for clients) and keeps its data, so that Restart brings it back
// with everything committed. Tests use it to take the database away from a
// running egressd. Stopping a stopped server does nothing.
func (e *Server) Stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.shutdown()
}

// Restart starts the server again on the same port, with the same data and
// URL, and returns once it accepts connections; a running server is stopped
// first. ctx bounds the start-up, and so does a 60 s timeout. It fails when
// another process took the port meanwhile, or after Close.
func (e *Server) Restart(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return errors.New("pgserver: restart throwaway server: it was closed")
	}
	e.shutdown()
	if err := e.start(ctx, e.port); err != nil {
		if errors.Is(err, errPortInUse) {
			return fmt.Errorf("pgserver: restart throwaway server: port %d was taken meanwhile: %w", e.port, err)
		}
		return err
	}
	return nil
}

// shutdown stops a running server with a fast shutdown (SIGINT), killing it
// if it has not exited after 30 s. e.mu must be held.
func (e *Server) shutdown() {
	if e.cmd == nil {
		return
	}
	_ = e.cmd.Process.Signal(os.Interrupt) // SIGINT: fast shutdown
	select {
	case <-e.done:
	case <-time.After(30 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.done
	}
	e.cmd = nil
}

// Close stops the server with a fast shutdown (sessions rolled back, no
// waiting for clients) and removes its directory. It is safe to call more
// than once.
func (e *Server) Close() error {
	e.closeOnce.Do(func() {
		e.mu.Lock()
		e.closed = true
		e.shutdown()
		e.mu.Unlock()
		if err := os.RemoveAll(e.dir); err != nil {
			e.closeErr = fmt.Errorf("pgserver: remove throwaway server directory: %w", err)
		}
	})
	return e.closeErr
}

func (e *Server) dataDir() string { return filepath.Join(e.dir, "data") }

func (e *Server) initdb(ctx context.Context, binDir string, owner *osUser, password string) error {
	pwfile := filepath.Join(e.dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(password+"\n"), 0o600); err != nil {
		return fmt.Errorf("pgserver: start throwaway server: %w", err)
	}
	defer os.Remove(pwfile)
	if err := owner.chown(pwfile); err != nil {
		return fmt.Errorf("pgserver: start throwaway server: %w", err)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "initdb"),
		"--pgdata", e.dataDir(),
		"--username", ephemeralUser,
		"--pwfile", pwfile,
		// Local socket connections (only the owner and root can reach the
		// directory) are trusted; TCP needs the password.
		"--auth-local", "trust",
		"--auth-host", "scram-sha-256",
		"--encoding", "UTF8",
		"--no-locale",
		"--no-sync",
	)
	cmd.Dir = e.dir
	cmd.Env = serverEnv()
	cmd.SysProcAttr = owner.procAttr()
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("pgserver: start throwaway server: initdb as user %s: %v\n%s", owner.name, err, bytes.TrimSpace(out))
		if owner.switched {
			msg += fmt.Sprintf("\n(the server runs as %s, which must be able to reach %s; set Options.Dir or TMPDIR to a directory it can reach)", owner.name, e.dir)
		}
		return errors.New(msg)
	}
	return nil
}

var errPortInUse = errors.New("port in use")

// start starts the server on port and waits until it accepts connections;
// the first successful start creates the database. e.mu must be held.
func (e *Server) start(ctx context.Context, port int) error {
	e.log.Reset() // judge this attempt by its own output
	cmd := exec.Command(filepath.Join(e.binDir, "postgres"),
		"-D", e.dataDir(),
		"-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+e.dir,
		// A throwaway cluster: durability buys nothing.
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=200",
		"-c", "timezone=UTC",
		"-c", "wal_level=minimal", "-c", "max_wal_senders=0",
	)
	cmd.Dir = e.dir
	cmd.Env = serverEnv()
	cmd.SysProcAttr = e.owner.procAttr()
	var w io.Writer = e.log
	if e.logTo != nil {
		w = io.MultiWriter(e.log, e.logTo)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgserver: start throwaway server: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	e.cmd, e.done = cmd, done

	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(ephemeralUser, e.password),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Path:     "/" + ephemeralDatabase,
		RawQuery: "sslmode=disable",
	}
	admin := u
	admin.Path = "/postgres"

	// Poll until the server accepts a connection, it exits, or ctx expires.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		conn, err := pgconn.Connect(ctx, admin.String())
		if err == nil {
			if !e.created {
				_, err = conn.Exec(ctx, "CREATE DATABASE "+ephemeralDatabase).ReadAll()
			}
			conn.Close(context.WithoutCancel(ctx))
			if err != nil {
				e.stop()
				return fmt.Errorf("pgserver: start throwaway server: create database: %v", err)
			}
			e.created, e.port = true, port
			e.url = postgres.DSN(u.String())
			return nil
		}
		select {
		case <-done:
			e.cmd = nil
			log := e.log.String()
			if strings.Contains(log, "Address already in use") {
				return errPortInUse
			}
			return fmt.Errorf("pgserver: start throwaway server: server exited: %s\n%s", cmd.ProcessState, log)
		case <-ctx.Done():
			e.stop()
			return fmt.Errorf("pgserver: start throwaway server: not accepting connections (%v; see Options.StartTimeout): %v\n%s", ctx.Err(), err, e.log.String())
		case <-tick.C:
		}
	}
}

// stop kills a server that failed to start.
func (e *Server) stop() {
	if e.cmd == nil {
		return
	}
	_ = e.cmd.Process.Kill()
	<-e.done
	e.cmd = nil
}

// serverEnv is the environment of initdb and the server: the C locale, so
// that an unset or uninstalled locale in the caller's environment cannot
// fail them, and no PG* variables that could redirect them.
func serverEnv() []string {
	env := []string{"LC_ALL=C", "LANG=C"}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PG") || strings.HasPrefix(k, "LC_") || k == "LANG" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// findBinDir returns the directory of initdb and postgres.
func findBinDir(dir string) (string, error) {
	if dir != "" {
		for _, name := range []string{"initdb", "postgres"} {
			if !isExecutable(filepath.Join(dir, name)) {
				return "", fmt.Errorf("pgserver: Options.BinDir %s has no %s: %s", dir, name, installHint)
			}
		}
		return dir, nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if d := filepath.Dir(p); isExecutable(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	// Debian and Ubuntu keep server binaries out of PATH, one directory per
	// major version; take the newest.
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		return compareVersions(filepath.Base(filepath.Dir(a)), filepath.Base(filepath.Dir(b)))
	})
	for _, d := range slices.Backward(dirs) {
		if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", fmt.Errorf("pgserver: no PostgreSQL server binaries (initdb and postgres in PATH or /usr/lib/postgresql/*/bin): %s", installHint)
}

// compareVersions compares dotted version numbers such as "9.6" and "15".
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) || i < len(bs); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x - y
		}
	}
	return 0
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// freePort returns a loopback port nobody listens on, below Linux's default
// range of ports for outgoing connections (32768-60999): a server stopped
// and restarted on its port (Restart) must not find it taken meanwhile as
// the local port of some connection.
func freePort() (int, error) {
	for range 100 {
		port := 20000 + mrand.IntN(12000)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		l.Close()
		return port, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand since Go 1.24)
	return hex.EncodeToString(b)
}
