package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/collector/hubbletest"
	"github.com/egressd/egressd/detector"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgserver"
)

// faultServe runs the real service in-process against the Hubble server at
// addr, flushing every flush, until the returned stop function is called.
// edits, if any, change the configuration first.
func faultServe(t *testing.T, db *postgres.DB, addr string, flush time.Duration, edits ...func(*ServeConfig)) (m *Main, stop func()) {
	t.Helper()
	co := collector.DefaultClientOptions()
	co.Address = addr
	co.BackoffMin, co.BackoffMax = 10*time.Millisecond, 50*time.Millisecond
	agg := collector.DefaultAggregatorOptions()
	agg.FlushInterval = flush
	// A flush against a stopped server fails at once (connection
	// refused); the timeout only matters if one hangs.
	agg.FlushTimeout = 5 * time.Second
	cfg := ServeConfig{DB: db, Client: co, Pipeline: collector.DefaultOptions(), Aggregate: agg, Listen: "127.0.0.1:0", Detect: detector.DefaultOptions()}
	for _, edit := range edits {
		edit(&cfg)
	}
	return runMain(t, cfg)
}

// faultApps and faultNames are the keys the feed spreads its flows over.
var (
	faultApps  = []string{"sonarr", "radarr"}
	faultNames = []string{"api.example.com", "cdn.example.net", "tracker.example.org"}
)

// faultPostgres starts a PostgreSQL server of the test's own, which the
// test may stop and restart, and opens a migrated database on it with a
// short connect timeout; both are closed when the test ends.
func faultPostgres(ctx context.Context, t *testing.T) (*pgserver.Server, *postgres.DB) {
	t.Helper()
	pg, err := pgserver.Start(ctx, pgserver.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { pg.Close() })
	opts := postgres.DefaultOptions()
	opts.URL, opts.MaxConns, opts.ConnectTimeout = pg.URL(), 4, 2*time.Second
	db, err := postgres.Open(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	require.NoError(t, db.Migrate(ctx))
	return pg, db
}

// faultKey is the key a stored destination is counted under: app name and
// destination name (every fed flow goes to port 443/TCP of cluster homelab,
// namespace media).
func faultKey(app, name string) string { return app + " " + name }

// faultFeed adds egress flows to a test Hubble server, one at a time, stamped
// with the wall clock (strictly increasing, so that each flow has a time of
// its own), and remembers what it streamed.
type faultFeed struct {
	srv *hubbletest.Server

	mu     sync.Mutex
	times  []time.Time
	counts map[string]int64

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

// newFaultFeed returns a feed that adds flows only when add is called.
func newFaultFeed(srv *hubbletest.Server) *faultFeed {
	return &faultFeed{srv: srv, counts: map[string]int64{}, stop: make(chan struct{})}
}

// startFaultFeed adds a flow every interval until Stop.
func startFaultFeed(t *testing.T, srv *hubbletest.Server, every time.Duration) *faultFeed {
	f := newFaultFeed(srv)
	f.done = make(chan struct{})
	go func() {
		defer close(f.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-f.stop:
				return
			case <-tick.C:
				f.add(1)
			}
		}
	}()
	t.Cleanup(f.Stop)
	return f
}

// add adds n flows.
func (f *faultFeed) add(n int) {
	for range n {
		f.mu.Lock()
		i := len(f.times)
		at := time.Now().UTC()
		if i > 0 && !at.After(f.times[i-1]) {
			at = f.times[i-1].Add(time.Microsecond)
		}
		app, name := faultApps[i%len(faultApps)], faultNames[(i/len(faultApps))%len(faultNames)]
		f.times = append(f.times, at)
		f.counts[faultKey(app, name)]++
		// Added under the lock, so that the server's order is the
		// order of times.
		f.srv.Add(hubbletest.Response(egressFlow(at, app, name, "198.51.100."+strconv.Itoa(1+i%3))))
		f.mu.Unlock()
	}
}

// Stop stops a feed started with startFaultFeed and waits until it has.
func (f *faultFeed) Stop() {
	f.stopOnce.Do(func() { close(f.stop) })
	if f.done != nil {
		<-f.done
	}
}

// Len returns how many flows were streamed so far.
func (f *faultFeed) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.times)
}

// Times returns the times of the flows streamed so far, in order.
func (f *faultFeed) Times() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.times...)
}

// Counts returns the flows streamed so far per faultKey.
func (f *faultFeed) Counts() map[string]int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]int64, len(f.counts))
	for k, v := range f.counts {
		out[k] = v
	}
	return out
}

// faultCountsOf reads the stored flows per faultKey.
func faultCountsOf(t *testing.T, db *postgres.DB) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	apps, err := db.Apps(ctx)
	require.NoError(t, err)
	out := map[string]int64{}
	for _, a := range apps {
		ds, err := db.Destinations(ctx, a.App)
		require.NoError(t, err)
		for _, d := range ds {
			out[faultKey(a.App.Name, d.Destination.Name)] += d.Flows
		}
	}
	return out
}

// faultCursor returns the stored cursor of the Hubble source at addr, zero
// when there is none yet. Errors (the database being down) are returned.
func faultCursor(db *postgres.DB, addr string) (time.Time, error) {
	cur, err := db.Cursor(context.Background(), "hubble:"+addr)
	if egressd.ErrorCode(err) == egressd.ENOTFOUND {
		return time.Time{}, nil
	}
	return cur, err
}

// faultFlowTotal returns the stored flow total, or -1 when the database does not
// answer.
func faultFlowTotal(db *postgres.DB) int64 {
	n, err := db.FlowTotal(context.Background())
	if err != nil {
		return -1
	}
	return n
}

// faultCountUpTo returns how many of the sorted times are at or before t.
func faultCountUpTo(times []time.Time, t time.Time) int {
	n := 0
	for _, x := range times {
		if x.After(t) {
			break
		}
		n++
	}
	return n
}

// faultBuild returns the egressd binary, built once per test binary as the
// image builds it (static, -trimpath): each build links the whole binary
// again, seconds of CPU. The tests run it, none writes it.
func faultBuild(t *testing.T) string {
	t.Helper()
	bin, err := builtBinary()
	require.NoError(t, err)
	return bin
}

// builtDir holds the binary built by builtBinary; TestMain removes it.
var builtDir string

var builtBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "egressd-test-bin-")
	if err != nil {
		return "", err
	}
	builtDir = dir
	bin := filepath.Join(dir, "egressd")
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // static, as in the image
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/egressd: %w\n%s", err, out)
	}
	return bin, nil
})

// removeBuilt removes the binary builtBinary built, if any.
func removeBuilt() {
	if builtDir != "" {
		os.RemoveAll(builtDir)
	}
}

// faultLog is a bytes.Buffer safe for a process writing while a test
// reads.
type faultLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *faultLog) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *faultLog) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// faultProc is an egressd process.
type faultProc struct {
	cmd  *exec.Cmd
	logs *faultLog
	done chan struct{}
	err  error // the exit status, once done is closed
}

// faultStart runs the binary with args and a clean environment; the
// process is killed when the test ends if it still runs.
func faultStart(t *testing.T, bin string, args ...string) *faultProc {
	t.Helper()
	return faultStartIn(t, nil, bin, args...)
}

// faultStartIn is faultStart with stdin as the process's standard input.
func faultStartIn(t *testing.T, stdin *os.File, bin string, args ...string) *faultProc {
	t.Helper()
	p := &faultProc{cmd: exec.Command(bin, args...), logs: &faultLog{}, done: make(chan struct{})}
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	if stdin != nil {
		p.cmd.Stdin = stdin
	}
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	require.NoError(t, p.cmd.Start())
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("egressd %s log:\n%s", strings.Join(args, " "), p.logs.String())
		}
	})
	return p
}

// signal sends sig and waits until the process has exited.
func (p *faultProc) signal(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(sig))
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("egressd did not exit 60 s after %v", sig)
	}
	return p.err
}

// waitRequests waits until the Hubble server has received n GetFlows
// requests and at least one stream is being served, failing at once if the
// process exits first.
func (p *faultProc) waitRequests(t *testing.T, srv *hubbletest.Server, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go func() {
		select {
		case <-p.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := srv.WaitRequests(ctx, n)
	if err == nil {
		err = srv.WaitStreams(ctx, 1)
	}
	if err != nil {
		select {
		case <-p.done:
			t.Fatalf("egressd exited: %v", p.err)
		default:
		}
		t.Fatalf("waiting for egressd's stream %d: %v", n, err)
	}
}

var faultListenLog = regexp.MustCompile(`"msg":"http_listening".*?"addr":"([^"]+)"`)

// httpAddr waits for the process to log its HTTP address (--log-format
// json) and returns it.
func (p *faultProc) httpAddr(t *testing.T) string {
	t.Helper()
	var addr string
	waitUntil(t, "egressd listens", func() bool {
		if m := faultListenLog.FindStringSubmatch(p.logs.String()); m != nil {
			addr = m[1]
			return true
		}
		select {
		case <-p.done:
			t.Fatalf("egressd exited: %v", p.err)
		default:
		}
		return false
	})
	return addr
}

// faultMetric returns the value of the unlabelled sample name on the
// /metrics page at addr, or -1 if it cannot be read.
func faultMetric(addr, name string) float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return -1
			}
			return f
		}
	}
	return -1
}

// faultLease is a row of source_leases.
type faultLease struct {
	holder            string
	token             int64
	acquired, expires time.Time
}

// faultLeaseOf reads the lease of the Hubble source at addr.
func faultLeaseOf(t *testing.T, dsn postgres.DSN, addr string) faultLease {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, string(dsn))
	require.NoError(t, err)
	defer conn.Close(ctx)
	var l faultLease
	require.NoError(t, conn.QueryRow(ctx, `SELECT holder, token, acquired_at, expires_at FROM source_leases WHERE source = $1`,
		"hubble:"+addr).Scan(&l.holder, &l.token, &l.acquired, &l.expires))
	return l
}
