package main

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/stretchr/testify/require"
)

// staticBinary builds a small static Linux program, as make image builds
// egressd (CGO_ENABLED=0).
func staticBinary(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() { println(\"hello\") }\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module hello\n\ngo 1.26\n"), 0o644))
	bin := filepath.Join(dir, "hello")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

// files lists the image's single layer: name -> mode, owner and size.
func files(t *testing.T, img v1.Image) map[string][4]int64 {
	t.Helper()
	layers, err := img.Layers()
	require.NoError(t, err)
	require.Len(t, layers, 1)
	rc, err := layers[0].Uncompressed()
	require.NoError(t, err)
	defer rc.Close()
	out := map[string][4]int64{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		out[h.Name] = [4]int64{h.Mode, int64(h.Uid), int64(h.Gid), h.Size}
	}
}

// TestImage builds the image as make image does, reads the tarball back
// and inspects it: non-root, the binary as entrypoint, nothing but the
// binary, CA certificates and the user's entries, reproducible bytes.
func TestImage(t *testing.T) {
	t.Parallel()
	bin := staticBinary(t)
	binInfo, err := os.Stat(bin)
	require.NoError(t, err)
	ca := filepath.Join(t.TempDir(), "ca.crt")
	require.NoError(t, os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\n"), 0o644))
	out := filepath.Join(t.TempDir(), "egressd-image.tar")
	o := Options{Binary: bin, CA: ca, Arch: "arm64", Version: "v1.2.3", Commit: "abc123"}
	require.NoError(t, run(o, "registry.example.com/egressd/egressd:v1.2.3", out))

	img, err := tarball.ImageFromPath(out, nil)
	require.NoError(t, err)
	cf, err := img.ConfigFile()
	require.NoError(t, err)
	require.Equal(t, "linux", cf.OS)
	require.Equal(t, "arm64", cf.Architecture)
	require.Equal(t, "65532:65532", cf.Config.User, "the image runs as non-root")
	require.Equal(t, []string{"/egressd"}, cf.Config.Entrypoint)
	require.Equal(t, []string{"serve"}, cf.Config.Cmd)
	require.Contains(t, cf.Config.ExposedPorts, "9090/tcp")
	require.Equal(t, "v1.2.3", cf.Config.Labels["org.opencontainers.image.version"])
	require.Equal(t, "abc123", cf.Config.Labels["org.opencontainers.image.revision"])

	want := map[string][4]int64{
		"egressd":                           {0o755, 0, 0, binInfo.Size()},
		"etc/":                              {0o755, 0, 0, 0},
		"etc/group":                         {0o644, 0, 0, 27},
		"etc/passwd":                        {0o644, 0, 0, 94},
		"etc/ssl/":                          {0o755, 0, 0, 0},
		"etc/ssl/certs/":                    {0o755, 0, 0, 0},
		"etc/ssl/certs/ca-certificates.crt": {0o644, 0, 0, 28},
		"home/":                             {0o755, 0, 0, 0},
		"home/nonroot/":                     {0o700, 65532, 65532, 0},
		"tmp/":                              {0o1777, 0, 0, 0},
	}
	got := files(t, img)
	names := make([]string, 0, len(got))
	for n := range got {
		names = append(names, n)
	}
	sort.Strings(names)
	require.Empty(t, cmp.Diff(want, got), "(-want +got) layer %v: FROM scratch, no shell", names)

	// The same inputs give the same image.
	d1, err := img.Digest()
	require.NoError(t, err)
	again := filepath.Join(t.TempDir(), "again.tar")
	require.NoError(t, run(o, "registry.example.com/egressd/egressd:v1.2.3", again))
	img2, err := tarball.ImageFromPath(again, nil)
	require.NoError(t, err)
	d2, err := img2.Digest()
	require.NoError(t, err)
	require.Equal(t, d1, d2, "the image is reproducible")
}

func TestImageErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notELF := filepath.Join(dir, "script")
	require.NoError(t, os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755))
	out := filepath.Join(dir, "x.tar")
	for _, tt := range []struct {
		o    Options
		tag  string
		want string
	}{
		{Options{Binary: filepath.Join(dir, "missing")}, "egressd:x", "--binary: "},
		{Options{Binary: notELF}, "egressd:x", "not a Linux (ELF) executable"},
		{Options{Binary: os.Args[0], CA: filepath.Join(dir, "missing.crt")}, "egressd:x", "--ca: "},
		{Options{Binary: os.Args[0]}, "Not A Tag!", "--tag: "},
	} {
		err := run(tt.o, tt.tag, out)
		require.ErrorContains(t, err, tt.want)
	}
	require.ErrorContains(t, run(Options{}, "egressd:x", out), "--binary and --out are required")
}
