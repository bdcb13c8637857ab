package detector_test

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/detector"
)

// encoded returns the i-th chunk of "data" as a tunnel writes it into a
// label: n characters of hex or base32.
func encoded(i, n int, b32 bool) string {
	sum := sha256.Sum256([]byte(strconv.Itoa(i)))
	s := hex.EncodeToString(sum[:])
	if b32 {
		s = strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:]))
	}
	return s[:n]
}

func TestTunnelShapedNames(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		encoded(1, 40, false) + ".t.evil.example":                             true, // dnscat2: hex
		encoded(2, 52, true) + "." + encoded(3, 30, true) + ".t.evil.example": true, // iodine: base32
		encoded(4, 24, false) + ".evil.example":                               true, // short hex label
		"prometheus-node-exporter-17.monitoring.example.com":                  false,
		"checkout-service-canary-v2.eu-west-1.example.com":                    false,
		"storageaccountbackupwesteurope2024.blob.core.windows.net":            false, // a number at the end
		"ip-10-0-12-34.eu-west-1.compute.internal":                            false,
		"d1a2b3c4d5e6f7.cloudfront.net":                                       false, // too short
		strings.Repeat("a1", 20) + ".example.com":                             false, // no entropy... of 1 bit
		"www.example.com": false,
		// The random part must be below the registrable domain.
		"www." + encoded(5, 40, false) + ".com": false,
	} {
		require.Equal(t, want, detector.TunnelShaped(name, detector.RegistrableDomain(name)), name)
	}
	require.Equal(t, "example.co.uk", detector.RegistrableDomain("a.b.example.co.uk"))
	require.Equal(t, "evil.example", detector.RegistrableDomain("x.t.evil.example"))
	require.Equal(t, "203.0.113.7", detector.RegistrableDomain("203.0.113.7"))
	require.Equal(t, "2001:db8::1", detector.RegistrableDomain("2001:db8::1"))
}

// TestSlowDNSTunnelByShape: a tunnel asks a few hundred long random labels
// under one parent within minutes, far fewer names than DNSFloodThreshold,
// and raises dns_tunnel once; a crawler and a monitoring probe asking as
// many ordinary names (the probe all under one registrable domain) raise
// nothing.
func TestSlowDNSTunnelByShape(t *testing.T) {
	t.Parallel()
	store := &fakeStore{}
	do := detector.DefaultOptions()
	require.Equal(t, 500, do.DNSFloodThreshold)
	require.Equal(t, 100, do.DNSTunnelNames)
	det, err := detector.New(do, store, slog.New(slog.DiscardHandler), detector.NewMetrics(prometheus.NewRegistry()))
	require.NoError(t, err)
	crawler := egressd.App{Cluster: "homelab", Namespace: "web", Name: "crawler"}
	probe := egressd.App{Cluster: "homelab", Namespace: "monitoring", Name: "blackbox"}
	det.LoadApps(map[egressd.App]time.Time{evil: t0.Add(-48 * time.Hour), crawler: t0.Add(-48 * time.Hour), probe: t0.Add(-48 * time.Hour)})
	ask := func(a egressd.App, name string, at time.Time) {
		det.Observe(&egressd.Observation{Time: at, Kind: egressd.KindDNSQuery, App: a, Pod: a.Name + "-pod",
			Destination: egressd.Destination{Name: name}, Verdict: egressd.VerdictForwarded})
	}
	// In 5 minutes the tunnel asks 300 names, the crawler and the probe
	// 400 each (under DNSFloodThreshold too).
	for i := range 300 {
		at := t0.Add(time.Duration(i) * time.Second)
		ask(evil, encoded(i, 48, i%2 == 0)+"."+strconv.Itoa(i)+".t.evil.example", at)
		if i >= 200 {
			continue
		}
		ask(crawler, "www.site-"+strconv.Itoa(i)+".com", at)
		ask(crawler, "cdn-"+strconv.Itoa(i%7)+".images.shop"+strconv.Itoa(i)+".example.net", at)
		ask(probe, "prometheus-node-exporter-"+strconv.Itoa(i)+".monitoring.example.com", at)
		ask(probe, "checkout-service-canary-v"+strconv.Itoa(i)+".eu-west-1.example.com", at)
	}
	drain(t, det)

	require.Len(t, store.raised, 1, "the tunnel only, once")
	a := store.raised[0]
	require.Equal(t, evil, a.App)
	require.Equal(t, egressd.AnomalyDNSTunnel, a.Kind)
	require.Equal(t, egressd.DNSTunnelFingerprint(evil, t0), a.Fingerprint)
	require.Equal(t, "shape", a.Details["rule"])
	require.Equal(t, "evil.example", a.Details["domain"])
	require.Equal(t, "100", a.Details["threshold"])
	// The 100th encoded name raises it.
	require.Equal(t, t0.Add(99*time.Second), a.Time)
	require.Contains(t, a.Summary, "100 distinct names under evil.example")
}

// TestDNSTunnelShapeRuleOff: DNSTunnelNames 0 leaves the count rule only.
func TestDNSTunnelShapeRuleOff(t *testing.T) {
	t.Parallel()
	store := &fakeStore{}
	do := detector.DefaultOptions()
	do.DNSTunnelNames = 0
	det := newDetector(t, do, store)
	det.LoadApps(map[egressd.App]time.Time{evil: t0.Add(-48 * time.Hour)})
	for i := range 300 {
		det.Observe(&egressd.Observation{Time: t0.Add(time.Duration(i) * time.Second), Kind: egressd.KindDNSQuery, App: evil,
			Destination: egressd.Destination{Name: encoded(i, 48, false) + ".t.evil.example"}})
	}
	drain(t, det)
	require.Empty(t, store.raised)
}

// FuzzTunnelShaped: any name, valid or not, is judged without a panic, and
// a name judged tunnel-shaped below its domain is so on its own too (the
// cheap check Observe makes first never rejects what the full one takes).
func FuzzTunnelShaped(f *testing.F) {
	f.Add(encoded(1, 40, false) + ".t.evil.example")
	f.Add("www.example.co.uk")
	f.Add("..")
	f.Add("203.0.113.7")
	f.Add("\xff\x00.example.com")
	f.Fuzz(func(t *testing.T, name string) {
		domain := detector.RegistrableDomain(name)
		if detector.TunnelShaped(name, domain) {
			require.True(t, detector.TunnelShaped(name, ""), name)
		}
	})
}

// TestPrimeRebuildsSlowTunnel: a restart in the middle of a slow tunnel
// counts the tunnel-shaped names the store kept, so the tunnel is raised at
// its 100th name, as by one process.
func TestPrimeRebuildsSlowTunnel(t *testing.T) {
	t.Parallel()
	store := &fakeStore{}
	det := newDetector(t, detector.DefaultOptions(), store)
	state := &fakeState{first: map[egressd.App]time.Time{evil: t0.Add(-48 * time.Hour)}, newest: t0.Add(79 * time.Second)}
	for i := range 80 {
		state.dns = append(state.dns, egressd.DNSQueryRollup{App: evil, Name: encoded(i, 48, false) + ".t.evil.example",
			FirstSeen: t0.Add(time.Duration(i) * time.Second), LastSeen: t0.Add(time.Duration(i) * time.Second), Queries: 1})
	}
	_, err := det.Prime(t.Context(), state, time.Time{})
	require.NoError(t, err)
	for i := 80; i < 120; i++ {
		det.Observe(&egressd.Observation{Time: t0.Add(time.Duration(i) * time.Second), Kind: egressd.KindDNSQuery, App: evil,
			Destination: egressd.Destination{Name: encoded(i, 48, false) + ".t.evil.example"}})
	}
	drain(t, det)
	require.Len(t, store.raised, 1)
	require.Equal(t, "shape", store.raised[0].Details["rule"])
	require.Equal(t, t0.Add(99*time.Second), store.raised[0].Time)
	require.Equal(t, egressd.DNSTunnelFingerprint(evil, t0), store.raised[0].Fingerprint)
}

// BenchmarkObserveDNSShape measures what the tunnel-shape rule adds to a
// DNS question on the hot path, against the count rule alone in the same
// run: ordinary names (rejected by the cheap check) and encoded ones (their
// registrable domain looked up and counted). Names repeat over 1000, as an
// app asks the same names again; the window never raises.
func BenchmarkObserveDNSShape(b *testing.B) {
	for _, names := range []struct {
		kind string
		name func(i int) string
	}{
		{"ordinary", func(i int) string { return "api-" + strconv.Itoa(i) + ".service.example.com" }},
		{"encoded", func(i int) string { return encoded(i, 48, false) + ".t.evil.example" }},
	} {
		for _, shape := range []int{0, 1 << 30} {
			b.Run(fmt.Sprintf("names=%s/shape=%v", names.kind, shape > 0), func(b *testing.B) {
				do := detector.DefaultOptions()
				do.DNSFloodThreshold, do.DNSTunnelNames = 1<<30, shape
				det, err := detector.New(do, &fakeStore{}, slog.New(slog.DiscardHandler), detector.NewMetrics(prometheus.NewRegistry()))
				require.NoError(b, err)
				det.LoadApps(map[egressd.App]time.Time{evil: t0.Add(-48 * time.Hour)})
				obs := make([]egressd.Observation, 1000)
				for i := range obs {
					obs[i] = egressd.Observation{Time: t0, Kind: egressd.KindDNSQuery, App: evil, Destination: egressd.Destination{Name: names.name(i)}}
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					det.Observe(&obs[i%len(obs)])
					i++
				}
			})
		}
	}
}
