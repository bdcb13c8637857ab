package promtest_test

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/detector/promtest"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestExporterBytes(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	clk := &fakeClock{t: t0}
	e := promtest.NewExporter(promtest.ExporterOptions{Now: clk.Now, PauseContainer: true, NodeBytesPerSecond: 1})

	e.SetRate("shop", "web-1", 100) // t0
	clk.Add(10 * time.Second)
	e.SetRate("shop", "web-1", 1000) // t0+10s
	clk.Add(5 * time.Second)
	e.RemovePod("shop", "web-1") // t0+15s
	clk.Add(5 * time.Second)
	e.SetRate("shop", "web-2", 7) // t0+20s

	for _, tc := range []struct {
		name string
		pod  string
		at   time.Duration
		want float64
	}{
		{"before start", "web-1", -time.Second, 0},
		{"first segment", "web-1", 4 * time.Second, 400},
		{"second segment", "web-1", 12 * time.Second, 1000 + 2000},
		{"frozen after removal", "web-1", time.Hour, 1000 + 5000},
		{"other pod", "web-2", 30 * time.Second, 70},
		{"unknown pod", "nope", time.Hour, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.InDelta(t, tc.want, e.Bytes("shop", tc.pod, t0.Add(tc.at)), 1e-6)
		})
	}

	clk.Add(10 * time.Second) // t0+30s
	body := scrape(t, e.Handler())
	require.Contains(t, body, `container_network_transmit_bytes_total{container="",id="/kubepods/besteffort/pod`)
	require.Contains(t, body, `interface="eth0",name="",namespace="shop",pod="web-2"} 70 `+strconv.FormatInt(t0.Add(30*time.Second).UnixMilli(), 10)+"\n", "explicit timestamp, as cAdvisor sends")
	require.Contains(t, body, `container="POD"`, "pause container series")
	require.Contains(t, body, `id="/",image="",interface="ens3",name="",namespace="",pod=""} 30 `, "node series")
	require.NotContains(t, body, `pod="web-1"`, "a removed pod is not served")
}

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	addr := promtest.Serve(t, h)
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

func TestMissingBinarySaysWhatToInstall(t *testing.T) {
	t.Parallel()
	_, err := promtest.StartServer(context.Background(), promtest.Options{Binary: "/nonexistent/prometheus"})
	require.ErrorContains(t, err, "apt-get install prometheus")
}

func TestServerScrapesTargets(t *testing.T) {
	t.Parallel()
	e := promtest.NewExporter(promtest.ExporterOptions{})
	e.SetRate("shop", "web-1", 1000)
	addr := promtest.Serve(t, e.Handler())

	srv := promtest.Start(t, promtest.Options{
		Targets: []promtest.Target{{Address: addr}, {Job: "kubelet", Address: addr}},
	})
	resp, err := http.Get(srv.URL() + "/-/ready")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	srv.WaitScraped(t, `container_network_transmit_bytes_total{job="cadvisor",pod="web-1"}`, time.Now(), 10*time.Second)
	srv.WaitScraped(t, `container_network_transmit_bytes_total{job="kubelet",pod="web-1"}`, time.Now(), 10*time.Second)

	srv.Stop()
	srv.Stop() // idempotent
	_, err = http.Get(srv.URL() + "/-/ready")
	require.Error(t, err, "stopped server still answers")
}
