package collector_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/collector/hubbletest"
)

// testPKI is a CA with a server and a client certificate, written as PEM
// files like the ones Cilium's Hubble Relay mTLS setup hands out.
type testPKI struct {
	dir            string
	caFile         string
	serverCert     tls.Certificate
	clientCertFile string
	clientKeyFile  string
	pool           *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test hubble CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	p := &testPKI{dir: dir, pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.caFile = writePEM(t, dir, "ca.crt", "CERTIFICATE", caDER)

	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		require.NoError(t, err)
		return der, key
	}
	srvDER, srvKey := leaf("ui.hubble-relay.cilium.io", 2, x509.ExtKeyUsageServerAuth)
	p.serverCert = tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}
	cliDER, cliKey := leaf("egressd", 3, x509.ExtKeyUsageClientAuth)
	p.clientCertFile = writePEM(t, dir, "tls.crt", "CERTIFICATE", cliDER)
	keyDER, err := x509.MarshalECPrivateKey(cliKey)
	require.NoError(t, err)
	p.clientKeyFile = writePEM(t, dir, "tls.key", "EC PRIVATE KEY", keyDER)
	return p
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
	return path
}

// arrives is how long streamOnce waits for a flow that must arrive: long,
// since it returns as soon as the flow does, and a loaded machine with the
// race detector takes seconds over a TLS handshake. Where no flow may
// arrive, it waits a few seconds: the check can only get weaker on a slow
// machine, never fail.
const arrives = 30 * time.Second

// streamOnce connects with opts, waits for the stream, sends one flow and
// reports whether it arrived within that time, with the client's exit error.
func streamOnce(t *testing.T, srv *hubbletest.Server, opts collector.ClientOptions, within time.Duration) (bool, error) {
	t.Helper()
	sink := newChanSink()
	m := collector.NewMetrics(prometheus.NewRegistry())
	p, err := collector.NewPipeline(collector.DefaultOptions(), m, sink)
	require.NoError(t, err)
	opts.BackoffMin, opts.BackoffMax = 5*time.Millisecond, 10*time.Millisecond
	c, err := collector.NewClient(opts, slog.New(slog.NewTextHandler(testWriter{t}, nil)), m)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- c.Run(ctx, func() time.Time { return time.Time{} }, func(b []byte) error { return p.Handle("h", b) })
	}()
	if err := srv.WaitStreams(ctx, 1); err != nil {
		cancel()
		return false, <-done
	}
	srv.Add(hubbletest.Responses(podFlow(t0, "1.1.1.1", 443))...)
	for sink.count() == 0 {
		select {
		case <-sink.cond:
		case <-ctx.Done():
			cancel()
			return false, <-done
		}
	}
	cancel()
	return true, <-done
}

func TestClientMutualTLS(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	srv := hubbletest.NewServer(hubbletest.Options{TLSConfig: &tls.Config{
		Certificates: []tls.Certificate{pki.serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pki.pool,
		MinVersion:   tls.VersionTLS12,
	}})
	addr, err := srv.Start()
	require.NoError(t, err)
	t.Cleanup(srv.Stop)

	opts := collector.DefaultClientOptions()
	opts.Address = addr
	opts.TLSCAFile, opts.TLSCertFile, opts.TLSKeyFile = pki.caFile, pki.clientCertFile, pki.clientKeyFile
	opts.TLSServerName = "ui.hubble-relay.cilium.io"
	got, err := streamOnce(t, srv, opts, arrives)
	require.NoError(t, err)
	require.True(t, got, "a flow arrives over mTLS")
}

func TestClientTLSFailuresDoNotStream(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	srv := hubbletest.NewServer(hubbletest.Options{TLSConfig: &tls.Config{
		Certificates: []tls.Certificate{pki.serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pki.pool,
	}})
	addr, err := srv.Start()
	require.NoError(t, err)
	t.Cleanup(srv.Stop)

	noCert := collector.DefaultClientOptions()
	noCert.Address, noCert.TLSCAFile, noCert.TLSServerName = addr, pki.caFile, "ui.hubble-relay.cilium.io"
	wrongName := collector.DefaultClientOptions()
	wrongName.Address, wrongName.TLSCAFile = addr, pki.caFile
	wrongName.TLSCertFile, wrongName.TLSKeyFile, wrongName.TLSServerName = pki.clientCertFile, pki.clientKeyFile, "evil.example.com"
	plaintext := collector.DefaultClientOptions()
	plaintext.Address = addr
	for name, opts := range map[string]collector.ClientOptions{"no client certificate": noCert, "wrong server name": wrongName, "plaintext": plaintext} {
		got, err := streamOnce(t, srv, opts, 3*time.Second)
		require.NoError(t, err, name)
		require.False(t, got, "%s: no flow may arrive", name)
	}

	bad := collector.DefaultClientOptions()
	bad.Address, bad.TLSCAFile = addr, filepath.Join(pki.dir, "missing.crt")
	c, err := collector.NewClient(bad, slog.New(slog.NewTextHandler(testWriter{t}, nil)), collector.NewMetrics(prometheus.NewRegistry()))
	require.NoError(t, err)
	err = c.Run(context.Background(), func() time.Time { return time.Time{} }, func([]byte) error { return nil })
	require.ErrorContains(t, err, "--hubble-tls-ca")

	half := collector.DefaultClientOptions()
	half.Address, half.TLSCertFile = addr, pki.clientCertFile
	_, err = collector.NewClient(half, nil, nil)
	require.ErrorContains(t, err, "TLSCertFile and TLSKeyFile go together")
}

func TestClientUnixSocket(t *testing.T) {
	t.Parallel()
	srv := hubbletest.NewServer(hubbletest.Options{})
	sock := "unix://" + filepath.Join(t.TempDir(), "hubble.sock")
	addr, err := srv.StartAt(sock)
	require.NoError(t, err)
	t.Cleanup(srv.Stop)
	opts := collector.DefaultClientOptions()
	opts.Address = addr
	got, err := streamOnce(t, srv, opts, arrives)
	require.NoError(t, err)
	require.True(t, got)
}
