package flowgen_test

import (
	"bytes"
	"compress/gzip"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite testdata/homelab-week.jsonl.gz from the HomeLab scenario")

const capturePath = "testdata/homelab-week.jsonl.gz"

// maxCaptureSize keeps the committed capture small.
const maxCaptureSize = 3 << 20

// TestCaptureUpToDate regenerates the HomeLab week and compares it with the
// committed capture. `go test ./collector/flowgen -update` rewrites it.
//
// The comparison is on the decompressed JSON lines: the gzip container is
// written deterministically (no name, no modification time), but its
// compressed bytes depend on the Go release's compress/flate.
func TestCaptureUpToDate(t *testing.T) {
	want := weekLines(t)
	if *update {
		var buf bytes.Buffer
		zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		require.NoError(t, err)
		_, err = zw.Write(want)
		require.NoError(t, err)
		require.NoError(t, zw.Close())
		require.NoError(t, os.MkdirAll(filepath.Dir(capturePath), 0o755))
		require.NoError(t, os.WriteFile(capturePath, buf.Bytes(), 0o644))
		t.Logf("wrote %s: %d bytes, %d bytes uncompressed", capturePath, buf.Len(), len(want))
	}

	f, err := os.Open(capturePath)
	require.NoError(t, err, "run: go test ./collector/flowgen -update")
	defer f.Close()
	st, err := f.Stat()
	require.NoError(t, err)
	require.Less(t, st.Size(), int64(maxCaptureSize), "the capture must stay small")
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	require.Empty(t, zr.Name, "gzip header must not carry a file name")
	require.True(t, zr.ModTime.IsZero() || zr.ModTime.Equal(time.Unix(0, 0)), "gzip header must not carry a time")
	got, err := io.ReadAll(zr)
	require.NoError(t, err)
	require.NoError(t, zr.Close())

	if !bytes.Equal(want, got) {
		wl, gl := bytes.Split(want, []byte("\n")), bytes.Split(got, []byte("\n"))
		for i := range min(len(wl), len(gl)) {
			if !bytes.Equal(wl[i], gl[i]) {
				t.Fatalf("%s is stale from line %d (run: go test ./collector/flowgen -update)\nwant: %.300s\n got: %.300s", capturePath, i+1, wl[i], gl[i])
			}
		}
		t.Fatalf("%s is stale: %d lines, want %d (run: go test ./collector/flowgen -update)", capturePath, len(gl), len(wl))
	}
}
