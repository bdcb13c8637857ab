package amtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	httptransport "github.com/go-openapi/runtime/client"
	"github.com/go-openapi/strfmt"
	"github.com/prometheus/alertmanager/api/v2/client"
	"github.com/prometheus/alertmanager/api/v2/client/alert"
	"github.com/prometheus/alertmanager/api/v2/models"
)

// BinaryNames are the names Start looks for in PATH, in order: Debian's
// package installs prometheus-alertmanager, upstream releases alertmanager.
var BinaryNames = []string{"prometheus-alertmanager", "alertmanager"}

// BinaryEnv names an environment variable that, when set, is the path of the
// Alertmanager binary to use.
const BinaryEnv = "ALERTMANAGER_BIN"

// InstallHint says how to get the binary; it ends every "not found" failure.
const InstallHint = "install Debian's prometheus-alertmanager package (apt-get install prometheus-alertmanager; make test does it when run as root), or put an alertmanager binary in PATH or in $" + BinaryEnv

// Options configure the Alertmanager that Start runs.
type Options struct {
	// WebhookURL receives every notification (Receiver.URL). Required.
	WebhookURL string
	// Route timings; zero values take the defaults below, chosen so that a
	// test sees a notification within about GroupInterval: GroupWait 0s
	// (notify a new group at once), GroupInterval 100ms (how soon a change
	// to a group, such as a resolved alert, is notified), RepeatInterval
	// 5s (how often an unchanged firing alert is notified again).
	GroupWait      time.Duration
	GroupInterval  time.Duration
	RepeatInterval time.Duration
	// StartTimeout bounds the wait for /-/ready (default 20s).
	StartTimeout time.Duration
}

// Alertmanager is a running Alertmanager process. Its methods are safe for
// concurrent use, except that Stop and Restart must not race each other.
type Alertmanager struct {
	t       testing.TB
	bin     string
	config  string
	storage string
	addr    string // 127.0.0.1:port, kept across restarts
	timeout time.Duration
	api     *client.AlertmanagerAPI

	mu   sync.Mutex
	proc *process
	logs *tailBuffer
}

// process is one run of the binary.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited
	err  error         // Wait's error, set before done closes
}

// Binary returns the path of the Alertmanager binary, or an error that says
// what to install.
func Binary() (string, error) {
	if p := os.Getenv(BinaryEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("$%s=%q: %v; %s", BinaryEnv, p, err, InstallHint)
		}
		return p, nil
	}
	for _, name := range BinaryNames {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no Alertmanager binary (%s) in PATH: %s", strings.Join(BinaryNames, " or "), InstallHint)
}

// Start runs an Alertmanager that sends every alert to opts.WebhookURL and
// returns once it is ready. It is stopped when the test ends. Start fails
// the test (it never skips) when the binary is missing or does not start.
func Start(t testing.TB, opts Options) *Alertmanager {
	t.Helper()
	am, err := Launch(opts, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	am.t = t
	t.Cleanup(func() {
		am.Stop()
		if t.Failed() {
			t.Logf("amtest: Alertmanager %s output (last %d bytes):\n%s", am.addr, am.logs.max, am.logs.String())
		}
	})
	return am
}

// Launch is Start for programs that are not tests (egressd bench): it keeps
// its configuration and storage in dir, and the caller stops it with Stop.
// Restart is for Start's Alertmanagers only.
func Launch(opts Options, dir string) (*Alertmanager, error) {
	if opts.WebhookURL == "" {
		return nil, errors.New("amtest: Options.WebhookURL is required (use NewReceiver(t).URL())")
	}
	bin, err := Binary()
	if err != nil {
		return nil, fmt.Errorf("amtest: %w", err)
	}
	if opts.GroupInterval == 0 {
		opts.GroupInterval = 100 * time.Millisecond
	}
	if opts.RepeatInterval == 0 {
		opts.RepeatInterval = 5 * time.Second
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 20 * time.Second
	}
	am := &Alertmanager{
		bin:     bin,
		config:  filepath.Join(dir, "alertmanager.yml"),
		storage: filepath.Join(dir, "data"),
		timeout: opts.StartTimeout,
		logs:    &tailBuffer{max: 64 << 10},
	}
	if err := os.WriteFile(am.config, []byte(Config(opts)), 0o600); err != nil {
		return nil, fmt.Errorf("amtest: write config: %w", err)
	}
	// Another process may take the free port between our probe and
	// Alertmanager's bind; try a few ports before failing.
	for try := 0; ; try++ {
		am.addr, err = freeAddr()
		if err != nil {
			return nil, fmt.Errorf("amtest: find a free port: %w", err)
		}
		err = am.start()
		if err == nil {
			break
		}
		if try == 2 || !strings.Contains(am.logs.String(), "address already in use") {
			return nil, fmt.Errorf("amtest: start %s: %w\n%s", bin, err, am.logs.String())
		}
	}
	am.api = client.New(httptransport.New(am.addr, "/api/v2", []string{"http"}), strfmt.Default)
	return am, nil
}

// Config returns the Alertmanager configuration Start writes: one route,
// grouping by every label (each alert notifies on its own), to one webhook
// receiver that is also told about resolved alerts.
func Config(opts Options) string {
	return fmt.Sprintf(`# Written by egressd's alerts/amtest.
route:
  receiver: webhook
  group_by: ['...']
  group_wait: %s
  group_interval: %s
  repeat_interval: %s
receivers:
  - name: webhook
    webhook_configs:
      - url: %q
        send_resolved: true
`, promDuration(opts.GroupWait), promDuration(opts.GroupInterval), promDuration(opts.RepeatInterval), opts.WebhookURL)
}

// promDuration writes d in Prometheus' duration syntax, which has no
// fractional units: whole milliseconds.
func promDuration(d time.Duration) string {
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}

// URL returns the Alertmanager's base URL, http://127.0.0.1:PORT. It does not
// change across Restart.
func (am *Alertmanager) URL() string {
	return "http://" + am.addr
}

// Stop stops the Alertmanager (SIGTERM, then SIGKILL after 10 s) and waits
// for it to exit. Stopping a stopped Alertmanager does nothing.
func (am *Alertmanager) Stop() {
	am.mu.Lock()
	p := am.proc
	am.proc = nil
	am.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Restart starts the Alertmanager again on the same port with the same
// configuration and storage, stopping it first if it runs, and returns once
// it is ready. Its alerts are gone: Alertmanager keeps them in memory.
func (am *Alertmanager) Restart() {
	am.t.Helper()
	am.Stop()
	if err := am.start(); err != nil {
		am.t.Fatalf("amtest: restart Alertmanager on %s: %v\n%s", am.addr, err, am.logs.String())
	}
}

// Alerts lists the Alertmanager's active alerts (GET /api/v2/alerts),
// optionally filtered by matchers such as `app="billing"`.
func (am *Alertmanager) Alerts(ctx context.Context, filter ...string) (models.GettableAlerts, error) {
	params := alert.NewGetAlertsParamsWithContext(ctx).WithTimeout(5 * time.Second)
	if len(filter) > 0 {
		params = params.WithFilter(filter)
	}
	ok, err := am.api.Alert.GetAlerts(params)
	if err != nil {
		return nil, fmt.Errorf("list alerts of %s: %w", am.URL(), err)
	}
	return ok.Payload, nil
}

// Logs returns the end of the Alertmanager's output, across restarts.
func (am *Alertmanager) Logs() string {
	return am.logs.String()
}

// start runs the binary and waits for /-/ready, polling with a deadline.
func (am *Alertmanager) start() error {
	cmd := exec.Command(am.bin,
		"--config.file="+am.config,
		"--storage.path="+am.storage,
		"--web.listen-address="+am.addr,
		"--cluster.listen-address=", // no gossip: a lone replica
		"--log.level=info",
	)
	cmd.Stdout = am.logs
	cmd.Stderr = am.logs
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	am.mu.Lock()
	am.proc = p
	am.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), am.timeout)
	defer cancel()
	hc := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, am.URL()+"/-/ready", nil)
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			am.mu.Lock()
			am.proc = nil
			am.mu.Unlock()
			return fmt.Errorf("exited before it was ready: %v", p.err)
		case <-ctx.Done():
			am.Stop()
			return errors.New("not ready within " + am.timeout.String())
		case <-tick.C:
		}
	}
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p, dropping the oldest bytes beyond max.
func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if over := b.buf.Len() - b.max; over > 0 {
		b.buf.Next(over)
	}
	return len(p), nil
}

// String returns what the buffer holds.
func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
