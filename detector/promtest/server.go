package promtest

import (
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

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/egressd/egressd/internal/tail"
)

// EnvBinary names the variable that points at a prometheus binary other than
// the one in PATH or /usr/bin.
const EnvBinary = "PROMETHEUS_BINARY"

// installHint ends every error about a missing binary.
const installHint = "install Debian's prometheus package (apt-get install prometheus), or set " + EnvBinary + " to a prometheus binary"

// Target is one scrape target.
type Target struct {
	// Job is the job label of the target's series; "" means "cadvisor".
	Job string
	// Address is host:port, scraped over plain HTTP.
	Address string
	// MetricsPath defaults to /metrics.
	MetricsPath string
}

// Options configure Start. The zero value scrapes nothing.
type Options struct {
	// Targets are scraped every ScrapeInterval. Two targets of different
	// jobs on one address give every series twice, as a Prometheus that
	// scrapes the kubelet twice has them.
	Targets []Target
	// ScrapeInterval defaults to 1 s. The scrape timeout equals it.
	ScrapeInterval time.Duration
	// Binary is the prometheus binary; "" means $PROMETHEUS_BINARY, else
	// prometheus in PATH, else /usr/bin/prometheus.
	Binary string
	// StartTimeout bounds the start until /-/ready answers and every
	// target has been scraped once; 0 means 30 s.
	StartTimeout time.Duration
	// Dir holds the configuration and the TSDB. "" means a new temporary
	// directory, removed by Stop.
	Dir string
}

// Server is a running Prometheus.
type Server struct {
	url     string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	waitErr error         // set before done is closed
	dir     string
	ownDir  bool
	log     *tail.Writer

	stopOnce sync.Once
}

// Start starts a Prometheus for t and stops it when t ends. It returns once
// the server is ready and has scraped every target once (about 5 s: see
// waitTargets). It fails t (it
// never skips it) when the binary is missing or does not become ready.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Dir == "" {
		// t.TempDir registers its removal first, so it runs after Stop.
		opts.Dir = t.TempDir()
	}
	s, err := StartServer(context.Background(), opts)
	if err != nil {
		t.Fatalf("promtest: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// StartServer starts a Prometheus and returns once it is ready and has
// scraped every target once; the caller must Stop it. ctx bounds the start
// only.
func StartServer(ctx context.Context, opts Options) (*Server, error) {
	bin, err := findBinary(opts.Binary)
	if err != nil {
		return nil, err
	}
	interval := opts.ScrapeInterval
	if interval <= 0 {
		interval = time.Second
	}
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	yml, err := configYAML(opts.Targets, interval)
	if err != nil {
		return nil, fmt.Errorf("start prometheus: %w", err)
	}
	dir, ownDir := opts.Dir, false
	if dir == "" {
		if dir, err = os.MkdirTemp("", "promtest-"); err != nil {
			return nil, fmt.Errorf("start prometheus: %w", err)
		}
		ownDir = true
	}
	config := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(config, []byte(yml), 0o600); err != nil {
		return nil, fmt.Errorf("start prometheus: %w", err)
	}

	// Another process may take the free port between the probe and
	// Prometheus's bind: try again on a new one.
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, fmt.Errorf("start prometheus: find a free port: %w", err)
		}
		s := &Server{
			url:    "http://127.0.0.1:" + strconv.Itoa(port),
			dir:    dir,
			ownDir: ownDir,
			log:    tail.New(16 << 10),
			done:   make(chan struct{}),
		}
		err = s.start(ctx, bin, config, port)
		if err == nil {
			err = s.waitTargets(ctx, len(opts.Targets))
			if err == nil {
				return s, nil
			}
			s.Stop()
			return nil, err
		}
		s.stopProcess()
		if attempt == 3 || !strings.Contains(s.log.String(), "address already in use") {
			if ownDir {
				os.RemoveAll(dir)
			}
			return nil, err
		}
	}
}

func (s *Server) start(ctx context.Context, bin, config string, port int) error {
	s.cmd = exec.Command(bin,
		"--config.file="+config,
		"--storage.tsdb.path="+filepath.Join(s.dir, "data"),
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(port),
		"--log.level=warn",
	)
	s.cmd.Dir = s.dir
	s.cmd.Stdout = s.log
	s.cmd.Stderr = s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{}
	setParentDeathSignal(s.cmd.SysProcAttr)
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start prometheus %s: %w", bin, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.done)
	}()

	// Poll /-/ready: it answers 200 once the TSDB is open and the
	// configuration loaded.
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/-/ready", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.done:
			return fmt.Errorf("prometheus exited before it was ready: %v\n%s", s.waitErr, s.log)
		case <-ctx.Done():
			return fmt.Errorf("prometheus not ready at %s: %w\n%s", s.url, ctx.Err(), s.log)
		case <-tick.C:
		}
	}
}

// waitTargets waits until n targets have been scraped successfully once.
// Prometheus 2.x hands targets to the scrape manager at most every 5 s, so
// the first scrape comes that long after /-/ready; returning only then lets
// tests count their time from data that exists.
func (s *Server) waitTargets(ctx context.Context, n int) error {
	if n == 0 {
		return nil
	}
	c, err := api.NewClient(api.Config{Address: s.url})
	if err != nil {
		return err
	}
	q := v1.NewAPI(c)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		r, err := q.Targets(ctx)
		up := 0
		if err == nil {
			last = ""
			for _, t := range r.Active {
				if t.Health == v1.HealthGood {
					up++
				} else if t.LastError != "" {
					last = t.ScrapeURL + ": " + t.LastError
				}
			}
		} else {
			last = err.Error()
		}
		if up >= n {
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("prometheus exited: %v\n%s", s.waitErr, s.log)
		case <-ctx.Done():
			return fmt.Errorf("prometheus: %d of %d targets scraped: %w (%s)\n%s", up, n, ctx.Err(), last, s.log)
		case <-tick.C:
		}
	}
}

// URL returns the server's base URL, http://127.0.0.1:PORT.
func (s *Server) URL() string {
	return s.url
}

// Log returns the tail of the server's log.
func (s *Server) Log() string {
	return s.log.String()
}

// Stop stops the server (SIGTERM, then SIGKILL after 10 s) and removes the
// directory Start created. It is safe to call more than once.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		s.stopProcess()
		if s.ownDir {
			os.RemoveAll(s.dir)
		}
	})
}

func (s *Server) stopProcess() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

func findBinary(bin string) (string, error) {
	if bin == "" {
		bin = os.Getenv(EnvBinary)
	}
	if bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("prometheus binary %s: %w: %s", bin, err, installHint)
		}
		return bin, nil
	}
	if p, err := exec.LookPath("prometheus"); err == nil {
		return p, nil
	}
	const debian = "/usr/bin/prometheus"
	if _, err := os.Stat(debian); err == nil {
		return debian, nil
	}
	return "", errors.New("no prometheus binary in PATH or at " + debian + ": " + installHint)
}

// configYAML writes the configuration: one scrape job per Target.Job. Labels
// from the targets are kept as they are (honor_labels), and so are their
// sample timestamps, as a kubelet scrape configuration does.
func configYAML(targets []Target, interval time.Duration) (string, error) {
	var b strings.Builder
	iv := strconv.FormatInt(interval.Milliseconds(), 10) + "ms"
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  scrape_timeout: %s\n  evaluation_interval: %s\n", iv, iv, iv)
	b.WriteString("scrape_configs:\n")
	jobs := map[string][]Target{}
	var order []string
	for _, t := range targets {
		if t.Job == "" {
			t.Job = "cadvisor"
		}
		if t.MetricsPath == "" {
			t.MetricsPath = "/metrics"
		}
		if prev, ok := jobs[t.Job]; !ok {
			order = append(order, t.Job)
		} else if prev[0].MetricsPath != t.MetricsPath {
			return "", fmt.Errorf("targets of job %s have different metrics paths %s and %s: give them different jobs", t.Job, prev[0].MetricsPath, t.MetricsPath)
		}
		jobs[t.Job] = append(jobs[t.Job], t)
	}
	for _, job := range order {
		ts := jobs[job]
		fmt.Fprintf(&b, "  - job_name: %q\n    honor_labels: true\n    honor_timestamps: true\n    metrics_path: %q\n    static_configs:\n      - targets:\n", job, ts[0].MetricsPath)
		for _, t := range ts {
			fmt.Fprintf(&b, "          - %q\n", t.Address)
		}
	}
	return b.String(), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WaitScraped waits until Prometheus holds a sample of selector (a PromQL
// series selector) stamped at or after at, so that queries evaluated at
// times up to at see every sample they will ever see. It fails tb when that
// takes longer than timeout.
func (s *Server) WaitScraped(tb testing.TB, selector string, at time.Time, timeout time.Duration) {
	tb.Helper()
	c, err := api.NewClient(api.Config{Address: s.url})
	if err != nil {
		tb.Fatalf("promtest: %v", err)
	}
	q := v1.NewAPI(c)
	expr := "max(timestamp(" + selector + "))"
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		v, _, _, err := q.Query(ctx, expr, time.Time{})
		cancel()
		switch vec, _ := v.(model.Vector); {
		case err != nil:
			last = err.Error()
		case len(vec) == 0:
			last = "no sample yet"
		case float64(vec[0].Value) >= float64(at.UnixMilli())/1000:
			return
		default:
			last = "newest sample at " + vec[0].Value.String()
		}
		if time.Now().After(deadline) {
			tb.Fatalf("promtest: no sample of %s at or after %s within %s (%s)\n%s", selector, at.Format(time.RFC3339Nano), timeout, last, s.Log())
		}
		time.Sleep(50 * time.Millisecond) // poll interval, not a wait for a condition
	}
}
