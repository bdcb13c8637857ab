package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/prometheus/alertmanager/api/v2/models"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/alerts/amtest"
	"github.com/egressd/egressd/collector/hubbletest"
	"github.com/egressd/egressd/postgres/pgtest"
	"github.com/egressd/egressd/triage"
)

// artifactsEnv overrides where the triage screenshots are kept (default
// bin/test-artifacts/triage in the repository, which git ignores).
const artifactsEnv = "EGRESSD_TEST_ARTIFACTS"

// artifactDir returns the directory the browser test keeps its
// screenshots in, created.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(artifactsEnv)
	if dir == "" {
		dir = filepath.Join("..", "..", "bin", "test-artifacts", "triage")
	}
	dir, err := filepath.Abs(dir)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

// chromium returns the path of Debian's chromium (or another Chrome).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium not found: install Debian's chromium package (apt-get install chromium; make test does it when run as root)")
	return ""
}

// phone is the viewport the pages are judged on: an iPhone 12-15 in CSS
// pixels.
const phoneWidth, phoneHeight = 390, 844

// TestTriageInBrowser is the path from the notification to a resolved
// alert, in a real Chromium on a phone-sized screen: novel flows streamed
// from Hubble raise alerts in a real Alertmanager, rated by the real
// detector; the critical one's generatorURL opens the anomaly's page, with
// its severity badge and reasons; the list shows every anomaly, by
// severity first; signing in with the API token and tapping "Accept"
// resolves it, and Alertmanager says so.
// Screenshots of each page are kept (artifactDir) and their paths logged.
func TestTriageInBrowser(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	recv := amtest.NewReceiver(t)
	am := amtest.Start(t, amtest.Options{WebhookURL: recv.URL()})
	srv, addr := startHubble(t, hubbletest.Options{})
	db := openTestDB(t, pgtest.URL(t))

	// The alert links to the address egressd really listens on.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cfg := alertingConfig(db, addr, am.URL())
	cfg.Listener = lis
	cfg.Alerts.ExternalURL = "http://" + lis.Addr().String()
	const token = "triage-test-token-0123456789abcdef"
	cfg.APIToken = token
	_, stop := runMain(t, cfg)
	defer stop()
	require.NoError(t, srv.WaitStreams(ctx, 1))

	// alert waits until Alertmanager lists the one alert filter matches.
	alert := func(filter ...string) *models.GettableAlert {
		t.Helper()
		for {
			as, err := am.Alerts(ctx, filter...)
			require.NoError(t, err)
			if len(as) == 1 {
				return as[0]
			}
			require.NoError(t, ctx.Err(), "no alert %s in Alertmanager; its log:\n%s", filter, am.Logs())
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Three anomalies, raised by the real detector and rated by its rule
	// table: sonarr reaches api.example.org, which no app ever reached
	// (critical); once that is stored, recyclarr reaches
	// exfil.example.net, never reached either (critical), then, newest,
	// api.example.org, which sonarr now uses (info). Each flow waits for
	// the one before to be stored, since the evidence is what the
	// database knew before the flow.
	srv.Add(hubbletest.Response(egressFlow(time.Now(), "sonarr", "api.example.org", "198.51.100.8")))
	alert(`app="sonarr"`)
	waitUntil(t, "sonarr's destination is stored", func() bool {
		ds, err := db.Destinations(ctx, egressd.App{Cluster: "homelab", Namespace: "media", Name: "sonarr"})
		require.NoError(t, err)
		return len(ds) == 1
	})
	srv.Add(hubbletest.Response(egressFlow(time.Now(), "recyclarr", "exfil.example.net", "198.51.100.7")))
	const filter = `destination="exfil.example.net"`
	exfil := alert(filter)
	require.Equal(t, "critical", exfil.Labels["severity"])
	srv.Add(hubbletest.Response(egressFlow(time.Now(), "recyclarr", "api.example.org", "198.51.100.8")))
	require.Equal(t, "info", alert(`app="recyclarr"`, `destination="api.example.org"`).Labels["severity"])

	// The alert, as Alertmanager's API lists it.
	link := string(exfil.GeneratorURL)
	require.Equal(t, link, exfil.Annotations["link"])
	require.True(t, strings.HasPrefix(link, cfg.Alerts.ExternalURL+triage.Prefix+"/anomalies/"), link)

	dir := artifactDir(t)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(phoneWidth, phoneHeight))...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	// The browser lives as long as this first call's context: no timeout
	// on it (chromedp.Run); each step below has one.
	require.NoError(t, chromedp.Do(browser, chromedp.EmulateViewport(phoneWidth, phoneHeight, chromedp.EmulateScale(2), chromedp.EmulateMobile)))
	step := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(browser, 15*time.Second)
		defer cancel()
		require.NoError(t, chromedp.Do(sctx, steps...), what)
	}
	text := func(sel string) string {
		t.Helper()
		sctx, cancel := context.WithTimeout(browser, 15*time.Second)
		defer cancel()
		s, err := chromedp.Run(sctx, chromedp.Text(chromedp.CSS(sel)))
		require.NoError(t, err, sel)
		return s
	}
	shot := func(name string) {
		t.Helper()
		sctx, cancel := context.WithTimeout(browser, 15*time.Second)
		defer cancel()
		// Nothing is wider than the phone: no sideways scrolling.
		fits, err := chromedp.Run(sctx, chromedp.Evaluate[bool]("document.documentElement.scrollWidth <= window.innerWidth"))
		require.NoError(t, err)
		require.True(t, fits, "%s is wider than a %d px phone screen", name, phoneWidth)
		png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		p := filepath.Join(dir, name+".png")
		require.NoError(t, os.WriteFile(p, png, 0o644))
		t.Logf("screenshot %s: %s", name, p)
	}

	// The link from the notification: the anomaly, signed out.
	step("open the alert's link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.ID("title")))
	require.Contains(t, text("#title"), "media/recyclarr")
	require.Contains(t, text("#title"), "exfil.example.net:443/TCP")
	require.Contains(t, text("#state"), "Firing")
	require.Contains(t, text("#own"), "FORWARDED", "no recent flows")
	require.Contains(t, text("#pods"), "recyclarr-7d9f8b6c5d-x2k9p")
	// Its severity badge (in capitals, as its style shows it), and the
	// rule that set it.
	require.Equal(t, "CRITICAL", text("#severity"))
	require.Contains(t, text("#reasons"), "never reached by any app in the cluster")
	shot("anomaly-signed-out")

	// The list of firing anomalies, by severity: the two critical ones
	// (the newer first), then the info one, although it is the newest.
	step("open the list", chromedp.Navigate(cfg.Alerts.ExternalURL+triage.Prefix+"/"), chromedp.WaitVisible(chromedp.ID("anomalies")))
	sctx, cancelList := context.WithTimeout(browser, 15*time.Second)
	cards, err := chromedp.Run(sctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#anomalies a.card")].map(c => c.innerText.replace(/\s+/g, " "))`))
	cancelList()
	require.NoError(t, err)
	require.Len(t, cards, 3, "%q", cards)
	for i, want := range []string{"CRITICAL media/recyclarr → exfil.example.net:443/TCP", "CRITICAL media/sonarr → api.example.org:443/TCP", "INFO media/recyclarr → api.example.org:443/TCP"} {
		require.True(t, strings.HasPrefix(cards[i], want), "card %d: want %q first, got %q", i, want, cards[i])
	}
	require.Contains(t, cards[0], "never reached by any app in the cluster")
	require.Contains(t, cards[2], "reached by 1 other app")
	shot("list")

	// Back to the anomaly, sign in from it, and land on it again.
	step("tap the anomaly", chromedp.Click(chromedp.CSS("#anomalies a")), chromedp.WaitVisible(chromedp.ID("signin-act")))
	step("tap sign in", chromedp.Click(chromedp.ID("signin-act")), chromedp.WaitVisible(chromedp.ID("token")))
	shot("login")
	step("sign in",
		chromedp.SendKeys(chromedp.ID("name"), "alice"),
		chromedp.SendKeys(chromedp.ID("token"), token),
		chromedp.Click(chromedp.ID("login")),
		chromedp.WaitVisible(chromedp.ID("accept")))
	require.Contains(t, text("header"), "alice")
	shot("anomaly")

	// Accept: the page says who accepted it, and Alertmanager resolves it.
	step("accept", chromedp.Click(chromedp.ID("accept")), chromedp.WaitVisible(chromedp.CSS("p.ok")))
	require.Contains(t, text("#state"), "accepted by alice")
	shot("accepted")

	for {
		as, err := am.Alerts(ctx, filter)
		require.NoError(t, err)
		if len(as) == 0 {
			break // Alertmanager lists resolved alerts no more
		}
		require.NoError(t, ctx.Err(), "the alert still fires in Alertmanager: %+v", as[0].Status)
		time.Sleep(20 * time.Millisecond)
	}
	_, err = recv.Wait(ctx, amtest.Labeled("resolved", map[string]string{"destination": "exfil.example.net", "app": "recyclarr"}))
	require.NoError(t, err, "Alertmanager never notified the resolve")
}
