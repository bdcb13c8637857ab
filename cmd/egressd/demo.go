package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cilium/cilium/api/v1/observer"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/alerts"
	"github.com/egressd/egressd/baseline"
	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/collector/flowgen"
	"github.com/egressd/egressd/collector/hubbletest"
	"github.com/egressd/egressd/detector"
	"github.com/egressd/egressd/postgres"
	"github.com/egressd/egressd/postgres/pgserver"
	"github.com/egressd/egressd/triage"
)

const demoUsage = `Usage: egressd demo [flags]

Shows the whole pipeline with no setup: an in-process Hubble server streams
nine days of a small home-lab cluster's traffic (generated, compressed into
seconds, ending now) to the real egressd service, which learns each app's
destinations for a week and then alerts on the incidents planted in the last
two days. Each alert is printed as it fires, and the learnt baselines are
printed too (and kept with --dir).

The demo starts a throwaway PostgreSQL from the local binaries and deletes
it, with everything else it created, when it ends. It ignores $DATABASE_URL:
only a --database-url given on its command line makes it write its made-up
data into that database (and keep it there).

With --keep-running, once the story is told the simulated Hubble keeps
streaming the home lab in real time, with a new incident, and the demo
prints the 'egressd serve' command that reads it: run serve, open its API,
accept the destination and watch the alert resolve (in an Alertmanager too,
with --alertmanager-url). Ctrl-C ends the demo.

Flags:
`

func (c *CLI) demo(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("egressd demo", flag.ContinueOnError)
	cm := c.commonFlags(fs)
	// The demo writes made-up data: $DATABASE_URL, likely a real database,
	// is not a default it may take.
	cm.databaseURL = ""
	dbFlag := fs.Lookup("database-url")
	dbFlag.DefValue = ""
	dbFlag.Usage = "write the demo's made-up data into this PostgreSQL (and keep it) instead of a throwaway one; $DATABASE_URL is ignored"
	dir := fs.String("dir", "", "also write the learnt baselines here, and keep them (default: printed only)")
	listen := fs.String("listen", "127.0.0.1:0", "HTTP address of the API and /metrics while the story is told")
	amURLs := fs.String("alertmanager-url", "", "also send the alerts to these Alertmanagers (comma-separated base URLs)")
	keep := fs.Bool("keep-running", false, "afterwards, keep a simulated Hubble streaming in real time, with the database, for egressd serve; until interrupted")
	fs.Usage = func() { fmt.Fprint(fs.Output(), demoUsage); printFlags(fs) }
	if rest, err := parseArgs(fs, args); err != nil {
		return err
	} else if len(rest) > 0 {
		return usageError("demo: unexpected argument %q", rest[0])
	}
	if cm.logLevel == "info" {
		cm.logLevel = "error" // the demo's own output is the story
	}
	log, err := c.logger(cm)
	if err != nil {
		return err
	}
	ao := alerts.DefaultOptions()
	ao.Targets = splitList(*amURLs)
	if len(ao.Targets) > 0 {
		if err := ao.Validate(); err != nil {
			return flagError(err, map[string]string{"Options.Targets": "alertmanager-url"})
		}
	}
	// The detector prints alerts from its own goroutine while the demo
	// prints its progress: one lock for both.
	out := &lockedWriter{w: c.Stdout}

	ownDB := cm.databaseURL != ""
	if ownDB {
		fmt.Fprintf(out, "==> writing the demo's made-up home lab into %s (--database-url); it stays there\n", postgres.DSN(cm.databaseURL))
	} else {
		fmt.Fprintln(out, "==> starting a throwaway PostgreSQL (deleted when the demo ends)")
		eph, err := pgserver.Start(ctx, pgserver.Options{})
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		defer eph.Close()
		cm.databaseURL = string(eph.URL())
	}
	db, err := openDB(ctx, cm, true)
	if err != nil {
		return err
	}
	defer db.Close()

	// The story ends now, so that the last day's alerts are recent: with
	// --keep-running they are still firing when serve takes over.
	end := time.Now().UTC().Truncate(time.Minute)
	start := end.Add(-9 * 24 * time.Hour)
	scenario := demoScenario(start)
	resps, err := scenario.Generate()
	if err != nil {
		return fmt.Errorf("demo: generate traffic: %w", err)
	}

	hubble := hubbletest.NewServer(hubbletest.Options{})
	hubbleAddr, err := hubble.Start()
	if err != nil {
		return fmt.Errorf("demo: hubble server: %w", err)
	}
	defer hubble.Stop()

	// Listening first gives the address the alerts link to.
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return usageError("demo: --listen %s: %v", *listen, err)
	}
	httpAddr := lis.Addr().String()
	ao.ExternalURL = "http://" + httpAddr
	// Each alert is printed with its triage page: this egressd's while the
	// story is told, or with --keep-running that of the serve command the
	// demo prints, which reads the same database afterwards.
	triageBase := ao.ExternalURL
	if *keep {
		triageBase = "http://" + demoServeListen
	}
	printer := &alertPrinter{w: out, start: start, link: func(fp string) string { return triage.Link(triageBase, fp) }}
	co := collector.DefaultClientOptions()
	co.Address = hubbleAddr
	agg := collector.DefaultAggregatorOptions()
	agg.FlushInterval = 200 * time.Millisecond
	m, err := NewMain(ServeConfig{
		DB: db, Client: co, Pipeline: collector.DefaultOptions(), Aggregate: agg, Listener: lis,
		Detect: detector.DefaultOptions(), Alerts: ao, AlertTTL: 24 * time.Hour, Refresh: time.Second,
		OnAnomaly: printer.print,
	}, log)
	if err != nil {
		lis.Close()
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	// Whichever way the demo ends, the service has stopped before the
	// database and the Hubble server it uses are closed.
	done := make(chan struct{})
	var runErr error
	go func() { runErr = m.Run(runCtx); close(done) }()
	defer func() { stop(); <-done }()
	stopped := func() error { return fmt.Errorf("demo: egressd stopped: %v", runErr) }
	m.Addr(runCtx)
	fmt.Fprintf(out, "==> egressd is serving http://%s/metrics, http://%s/api/v1/apps and the triage pages http://%s/triage/ (Hubble: %s)\n", httpAddr, httpAddr, httpAddr, hubbleAddr)
	if err := hubble.WaitStreams(ctx, 1); err != nil {
		return err
	}

	// Stream the traffic a day at a time and wait until each day is
	// stored, so the progress lines tell the truth.
	fmt.Fprintf(out, "==> streaming %d Hubble records: 7 days of learning, then 2 days with planted incidents\n", len(resps))
	source := "hubble:" + hubbleAddr
	for day := 0; day < 9; day++ {
		dayEnd := start.Add(time.Duration(day+1) * 24 * time.Hour)
		batch := takeUntil(&resps, dayEnd)
		hubble.Add(batch...)
		if err := waitStored(ctx, db, source, batch, done, stopped); err != nil {
			return err
		}
		phase := "learning"
		if day >= 7 {
			phase = "watching"
		}
		fmt.Fprintf(out, "    day %d (%s): %d records streamed, until %s\n", day+1, phase, len(batch), dayEnd.Format("Mon Jan 2 15:04"))
	}
	// Let the detector record and print what it raised last.
	for m.Pending() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	time.Sleep(300 * time.Millisecond)
	fmt.Fprintf(out, "==> %d alerts raised", printer.count())
	if len(ao.Targets) > 0 {
		fmt.Fprintf(out, " and sent to %d Alertmanager(s)", len(ao.Targets))
	}
	fmt.Fprintln(out)

	learnt := start.Add(7 * 24 * time.Hour)
	if err := c.demoBaselines(ctx, out, db, learnt, *dir); err != nil {
		return err
	}
	if ownDB {
		fmt.Fprintf(out, "==> the same files from your database: egressd baseline export --dir DIR --at %s\n", learnt.Format(time.RFC3339))
	}

	// The story's egressd stops here (releasing its Hubble source), so
	// that the operator's `egressd serve` takes the stream over at once.
	stop()
	<-done
	if runErr != nil || !*keep {
		if runErr == nil && !ownDB {
			fmt.Fprintln(out, "==> done; the throwaway database is deleted, and the triage links above with it. Run 'egressd demo --keep-running' to try egressd serve, its triage pages, its API and accept against a live stream")
		}
		return runErr
	}
	return demoLive(ctx, out, hubble, hubbleAddr, cm.databaseURL, ownDB, ao.Targets, end)
}

// demoBaselines prints the baselines learnt by learnt, and writes them to
// dir when one is given. Without one they are exported to a temporary
// directory that is removed at once.
func (c *CLI) demoBaselines(ctx context.Context, out io.Writer, db *postgres.DB, learnt time.Time, dir string) error {
	keep := dir != ""
	if !keep {
		// $TMPDIR as os.TempDir reads it, through Getenv for the tests.
		tmp, err := os.MkdirTemp(c.Getenv("TMPDIR"), "egressd-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	live, err := liveBaselines(ctx, db, learnt.Add(-168*time.Hour), learnt)
	if err != nil {
		return err
	}
	res, err := baseline.Export(dir, live, baseline.ExportOptions{})
	if err != nil {
		return err
	}
	if keep {
		fmt.Fprintf(out, "==> the learnt baselines (first week) are in %s:\n", dir)
	} else {
		fmt.Fprintln(out, "==> the learnt baselines (first week; --dir DIR keeps them):")
	}
	for _, p := range append(res.Written, res.Unchanged...) {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(out, "--- %s\n%s", filepath.ToSlash(rel), b)
	}
	return nil
}

// demoLiveIncident is the novelty the live stream plants a few seconds in:
// serve raises it, and accepting it resolves it.
const (
	demoLiveApp  = "media/recyclarr"
	demoLiveName = "files.example.org"
)

// demoLive keeps hubble streaming the home lab in real time from from on,
// with a novel destination a few seconds in, and tells the operator how to
// run serve against it, until ctx ends.
func demoLive(ctx context.Context, out io.Writer, hubble *hubbletest.Server, hubbleAddr, dbURL string, ownDB bool, targets []string, from time.Time) error {
	dbArg := shellQuote(dbURL)
	if ownDB {
		dbArg = "\"$YOUR_DATABASE_URL\"" // the one given; not printed with its password
	}
	// A token of its own: serve refuses API mutations without one.
	token := rand.Text()
	serve := fmt.Sprintf("EGRESSD_API_TOKEN=%s egressd serve --hubble-address %s --database-url %s --listen %s --external-url http://%s",
		token, hubbleAddr, dbArg, demoServeListen, demoServeListen)
	if len(targets) > 0 {
		serve += " --alertmanager-url " + strings.Join(targets, ",")
	}
	ns, app, _ := strings.Cut(demoLiveApp, "/")
	fmt.Fprintf(out, `==> live: the simulated Hubble at %s keeps streaming the home lab in real time,
    and %s starts reaching %s:443. The demo's own egressd has stopped;
    run yours against the stream and the demo's database (in another terminal):

    %s

    Open http://127.0.0.1:9090/triage/ (the alerts above link there too), sign
    in with any name and the token above, and accept or dismiss; or use the API:

    curl -s 'http://127.0.0.1:9090/api/v1/anomalies?state=firing'
    curl -s -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' \
      http://127.0.0.1:9090/api/v1/apps/%s/%s/accepted -d '{"destination":"%s","port":443}'

    The alert resolves (in Alertmanager too, with --alertmanager-url). Ctrl-C
    here ends the demo and deletes what it created.
`, hubbleAddr, demoLiveApp, demoLiveName, serve, token, ns, app, demoLiveName)
	return streamLive(ctx, hubble, from, flowgen.NovelName(from.Add(5*time.Second), demoLiveApp, demoLiveName, netip.MustParseAddr("198.51.100.12"), 443))
}

// streamLive adds the home lab's traffic to hubble as its time comes, an
// hour generated at a time, from from on, with extra planted, until ctx
// ends.
func streamLive(ctx context.Context, hubble *hubbletest.Server, from time.Time, extra ...flowgen.Event) error {
	const chunk = time.Hour
	var pending []*observer.GetFlowsResponse
	next := from
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		if len(pending) == 0 && next.Before(time.Now().Add(time.Minute)) {
			s := flowgen.HomeLab(next, chunk)
			if next.Equal(from) {
				s.Extra = append(s.Extra, extra...)
			}
			resps, err := s.Generate()
			if err != nil {
				return fmt.Errorf("demo: generate live traffic: %w", err)
			}
			pending, next = resps, next.Add(chunk)
		}
		if batch := takeUntil(&pending, time.Now()); len(batch) > 0 {
			hubble.Add(batch...)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@%+=:,./-_", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// demoScenario is nine days of the home lab with incidents planted in the
// last two, and an app deployed on day 8 that is still learning.
func demoScenario(start time.Time) flowgen.Scenario {
	day := 24 * time.Hour
	s := flowgen.HomeLab(start, 9*day)
	s.Workloads = append(s.Workloads, flowgen.Workload{
		Namespace: "default", Name: "new-app", Kind: flowgen.KindDeployment,
		Labels: []string{"app=new-app"}, ServiceAccount: "new-app",
		Pods: []flowgen.Pod{{Name: "new-app-6d8f7c9b5d-q2w4x", Node: "k8s-node-1"}},
	})
	at := func(d time.Duration) time.Time { return start.Add(d) }
	s.Extra = []flowgen.Event{
		flowgen.NovelName(at(7*day+6*time.Hour), "media/recyclarr", "exfil.example.net", netip.MustParseAddr("198.51.100.7"), 443),
		flowgen.BareIP(at(7*day+10*time.Hour), "home/home-assistant", netip.MustParseAddr("203.0.113.99"), 8443),
		flowgen.NovelName(at(8*day+time.Hour), "default/new-app", "api.new-app.example", netip.MustParseAddr("198.51.100.9"), 443),
		flowgen.DNSOnlyName(at(8*day+2*time.Hour), "media/sonarr", "cdn.newthing.example", netip.MustParseAddr("198.51.100.8"), 443),
		flowgen.DroppedAttempt(at(8*day+5*time.Hour), "media/recyclarr", netip.MustParseAddr("192.0.2.10"), 22),
	}
	if sky := s.Remote("skyhook.sonarr.tv"); sky != nil {
		s.Extra = append(s.Extra, flowgen.VolumeBurst(at(8*day+12*time.Hour), "media/sonarr", sky, 443, flowgen.NamesInFlow, 3000, 10*time.Minute))
	}
	return s
}

// takeUntil removes and returns the leading responses before end.
func takeUntil(resps *[]*observer.GetFlowsResponse, end time.Time) []*observer.GetFlowsResponse {
	rs := *resps
	i := sort.Search(len(rs), func(i int) bool { return !rs[i].GetTime().AsTime().Before(end) })
	*resps = rs[i:]
	return rs[:i]
}

// waitStored waits until the cursor of source covers the batch's last
// streamed flow (egress or DNS: what the server-side filter passes).
func waitStored(ctx context.Context, db *postgres.DB, source string, batch []*observer.GetFlowsResponse, done <-chan struct{}, stopped func() error) error {
	var want time.Time
	for i := len(batch) - 1; i >= 0; i-- {
		f := batch[i].GetFlow()
		if f.GetTrafficDirection() == 2 || f.GetL7().GetDns() != nil {
			want = f.GetTime().AsTime()
			break
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		cur, err := db.Cursor(ctx, source)
		if err == nil && !cur.Before(want) {
			return nil
		}
		if err != nil && egressd.ErrorCode(err) != egressd.ENOTFOUND {
			return err
		}
		if time.Now().After(deadline) {
			return errors.New("demo: the pipeline did not store the streamed flows within 2 minutes")
		}
		select {
		case <-done:
			return stopped()
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// lockedWriter serialises writes from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// demoServeListen is where the serve command that --keep-running prints
// listens.
const demoServeListen = "127.0.0.1:9090"

// alertPrinter prints anomalies readably as they are stored, each with its
// severity, the reasons for it, and the link to its triage page.
type alertPrinter struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
	link  func(fingerprint string) string
	n     int
}

func (p *alertPrinter) print(a egressd.Anomaly) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	day := int(a.Time.Sub(p.start)/(24*time.Hour)) + 1
	// One write per alert, so its lines stay together.
	line := fmt.Sprintf("    ALERT %s %s  day %d %s  %s\n", a.Kind.AlertName(), cmp.Or(string(a.Severity), "unranked"), day, a.Time.Format("15:04"), a.Summary)
	if len(a.Evidence.Reasons) > 0 {
		line += fmt.Sprintf("          why: %s\n", strings.Join(a.Evidence.Reasons, "; "))
	}
	if a.Pod != "" {
		line += fmt.Sprintf("          pod %s, compared with the %s baseline\n", a.Pod, a.BaselineSource)
	}
	line += fmt.Sprintf("          triage: %s\n", p.link(a.Fingerprint))
	io.WriteString(p.w, line)
}

func (p *alertPrinter) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}
