package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/alerts/amtest"
	"github.com/egressd/egressd/postgres/pgtest"
)

// TestDemo runs `egressd demo` into a database given on its command line:
// it says it writes there, learns, prints each planted incident as an
// alert, writes the learnt baselines where --dir says, and its closing hint
// works against that database.
func TestDemo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	url := pgtest.URL(t)
	r := run(t, map[string]string{"TMPDIR": t.TempDir()}, "demo", "--database-url", string(url), "--dir", dir)
	require.Equal(t, 0, r.code, r.stderr)
	for _, want := range []string{
		"==> writing the demo's made-up home lab into " + url.String() + " (--database-url); it stays there",
		"day 1 (learning)", "day 9 (watching)",
		"media/recyclarr reached exfil.example.net:443/TCP",
		"home/home-assistant reached 203.0.113.99:8443/TCP",
		"media/sonarr reached cdn.newthing.example:443/TCP",
		"media/recyclarr tried to reach 192.0.2.10:22/TCP",
		"EgressVolumeAnomaly",
		"==> 5 alerts raised",
		"/api/v1/apps",
		"==> the learnt baselines (first week) are in " + dir,
	} {
		require.Contains(t, r.stdout, want)
	}
	require.NotContains(t, r.stdout, "new-app", "an app still learning raises nothing")
	require.NotContains(t, r.stdout, "throwaway")
	// Each alert is printed with its severity, the reasons for it from the
	// detector's rule table, and its triage page on the demo's egressd.
	alerts := regexp.MustCompile(`(?m)^\s+ALERT (\S+) (\S+)  day \d .*  (\S+ \S+ \S+).*\n\s+why: (.*)\n(?:\s+pod .*\n)?\s+triage: http://127\.0\.0\.1:\d+/triage/anomalies/[0-9a-f]{32}$`).FindAllStringSubmatch(r.stdout, -1)
	got := map[string]string{}
	for _, a := range alerts {
		got[a[3]] = a[1] + " " + a[2] + ": " + a[4]
	}
	// The volume alert's factor depends on the hour the demo runs.
	require.Regexp(t, `^EgressVolumeAnomaly warning: sends \d+x its average$`, got["media/sonarr sends 20"])
	delete(got, "media/sonarr sends 20")
	const never = "never reached by any app in the cluster"
	require.Empty(t, cmp.Diff(map[string]string{
		"media/recyclarr reached exfil.example.net:443/TCP,": "EgressNovelDestination critical: " + never,
		"home/home-assistant reached 203.0.113.99:8443/TCP,": "EgressNovelDestination critical: " + never + "; bare IP; high port",
		"media/sonarr reached cdn.newthing.example:443/TCP,": "EgressNovelDestination critical: " + never,
		"media/recyclarr tried to":                           "EgressNovelDestination warning: " + never + "; bare IP; dropped by policy",
	}, got), "alerts by summary (-want +got) in:\n%s", r.stdout)
	files, err := filepath.Glob(filepath.Join(dir, "*", "*.json"))
	require.NoError(t, err)
	require.Len(t, files, 6)
	b, err := os.ReadFile(filepath.Join(dir, "media", "recyclarr.json"))
	require.NoError(t, err)
	require.True(t, strings.Contains(string(b), "api.github.com") && !strings.Contains(string(b), "exfil"))

	// The closing hint, run after the demo, gives the same files.
	hint := regexp.MustCompile(`egressd (baseline export --dir DIR --at \S+)`).FindStringSubmatch(r.stdout)
	require.NotNil(t, hint, "no closing hint in:\n%s", r.stdout)
	again := t.TempDir()
	args := strings.Fields(strings.Replace(hint[1], "DIR", again, 1))
	r = run(t, map[string]string{"DATABASE_URL": string(url)}, args...)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, readTree(t, dir), readTree(t, again))
}

// TestDemoKeepRunningServesASandbox is the README's walkthrough, run as
// written: `egressd demo --keep-running` (with $DATABASE_URL set, which it
// must ignore) tells its story and keeps a Hubble streaming; the
// `egressd serve` command it prints becomes ready against it and raises
// the live incident in a real Alertmanager; accepting the destination
// through the API, with the printed request, resolves the alert there.
// When the demo ends it leaves nothing behind.
func TestDemoKeepRunningServesASandbox(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	recv := amtest.NewReceiver(t)
	am := amtest.Start(t, amtest.Options{WebhookURL: recv.URL()})
	userDB := pgtest.URL(t)
	tmp := t.TempDir()

	demoCtx, stopDemo := context.WithCancel(ctx)
	defer stopDemo()
	var demoOut, demoErr lockedBuffer
	demo := &CLI{Stdin: strings.NewReader(""), Stdout: &demoOut, Stderr: &demoErr, Getenv: func(k string) string {
		return map[string]string{"DATABASE_URL": string(userDB), "TMPDIR": tmp}[k]
	}}
	demoDone := make(chan int, 1)
	go func() {
		demoDone <- demo.Run(demoCtx, []string{"demo", "--keep-running", "--alertmanager-url", am.URL()})
	}()

	// The printed serve command, and the accept request.
	serveLine := regexp.MustCompile(`(?m)^\s+EGRESSD_API_TOKEN=(\S+) egressd (serve .*)$`)
	var m []string
	for m == nil {
		select {
		case code := <-demoDone:
			t.Fatalf("demo ended (%d) before printing the serve command:\n%s\n%s", code, demoOut.String(), demoErr.String())
		case <-ctx.Done():
			t.Fatalf("no serve command printed:\n%s", demoOut.String())
		case <-time.After(100 * time.Millisecond):
		}
		m = serveLine.FindStringSubmatch(demoOut.String())
	}
	out := demoOut.String()
	require.Contains(t, out, "==> starting a throwaway PostgreSQL", "$DATABASE_URL is not the demo's to write")
	require.Contains(t, out, "--alertmanager-url "+am.URL(), "serve gets the demo's Alertmanager")
	token := m[1]
	args := strings.Fields(m[2])
	for i, a := range args {
		if strings.HasPrefix(a, "'") {
			args[i] = strings.Trim(a, "'")
		}
	}
	listen := freeAddr(t)
	for i := range args {
		if args[i] == "127.0.0.1:9090" {
			args[i] = listen
		}
	}
	accept := regexp.MustCompile(`curl -s -H 'Authorization: Bearer (\S+)' -H 'Content-Type: application/json' \\\n\s+http://127.0.0.1:9090(/api/v1/apps/\S+/accepted) -d '(.*)'`).FindStringSubmatch(out)
	require.NotNil(t, accept, "no accept request printed:\n%s", out)
	require.Equal(t, token, accept[1])

	serveCtx, stopServe := context.WithCancel(ctx)
	defer stopServe()
	var serveErr lockedBuffer
	serve := &CLI{Stdin: strings.NewReader(""), Stdout: &lockedBuffer{}, Stderr: &serveErr, Getenv: func(k string) string {
		return map[string]string{"EGRESSD_API_TOKEN": token, "DATABASE_URL": string(userDB)}[k]
	}}
	serveDone := make(chan int, 1)
	go func() { serveDone <- serve.Run(serveCtx, args) }()

	// Ready: serve took the stream over (under load, priming from nine
	// days of data takes a while).
	for ready := false; !ready; {
		select {
		case code := <-serveDone:
			t.Fatalf("serve ended (%d):\n%s", code, serveErr.String())
		case <-ctx.Done():
			t.Fatalf("serve never ready against the demo's Hubble:\n%s", serveErr.String())
		case <-time.After(100 * time.Millisecond):
		}
		if resp, err := http.Get("http://" + listen + "/readyz"); err == nil {
			resp.Body.Close()
			ready = resp.StatusCode == http.StatusOK
		}
	}
	labels := map[string]string{
		"alertname": "EgressNovelDestination", "namespace": "media", "app": "recyclarr",
		"destination": demoLiveName, "port": "443/TCP",
	}
	_, err := recv.Wait(ctx, amtest.Labeled("firing", labels))
	require.NoError(t, err, "the live incident never fired; serve:\n%s\nAlertmanager:\n%s", serveErr.String(), am.Logs())

	// The story's triage links open on serve (here on another port).
	link := regexp.MustCompile(`triage: http://127\.0\.0\.1:9090(/triage/anomalies/[0-9a-f]{32})`).FindStringSubmatch(out)
	require.NotNil(t, link, "no triage link printed:\n%s", out)
	resp, err := http.Get("http://" + listen + link[1])
	require.NoError(t, err)
	page, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(page))
	require.Contains(t, string(page), `id="title"`)

	resp, err = http.Post("http://"+listen+accept[2], "application/json", strings.NewReader(accept[3]))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "mutations need the token")
	req, err := http.NewRequest(http.MethodPost, "http://"+listen+accept[2], strings.NewReader(accept[3]))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	_, err = recv.Wait(ctx, amtest.Labeled("resolved", labels))
	require.NoError(t, err, "accepting did not resolve the alert; serve:\n%s", serveErr.String())

	stopServe()
	require.Equal(t, 0, <-serveDone, serveErr.String())
	stopDemo()
	require.Equal(t, 0, <-demoDone, demoErr.String())

	// The user's database was never written.
	db := openTestDB(t, userDB)
	apps, err := db.Apps(ctx)
	require.NoError(t, err)
	require.Empty(t, apps, "the demo wrote into $DATABASE_URL")
	// Nothing left behind in $TMPDIR.
	left, err := os.ReadDir(tmp)
	require.NoError(t, err)
	require.Empty(t, left)
}
