package collector_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/collector"
)

// TestReplayErrorsNameFileAndLine: whatever goes wrong in a replay input,
// the message says which file, and which line when there is one.
func TestReplayErrorsNameFileAndLine(t *testing.T) {
	t.Parallel()
	good := jsonLine(t, syntheticResponses()[0])
	dir := t.TempDir()
	ctx := context.Background()
	nop := func([]byte) error { return nil }

	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(dir, "missing.jsonl")
		_, err := collector.NewReplayer().ReplayFile(ctx, path, nop)
		require.ErrorContains(t, err, path)
	})
	t.Run("truncated gzip", func(t *testing.T) {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		for range 200 {
			_, err := zw.Write([]byte(good + "\n"))
			require.NoError(t, err)
		}
		require.NoError(t, zw.Close())
		path := filepath.Join(dir, "cut.jsonl.gz")
		require.NoError(t, os.WriteFile(path, buf.Bytes()[:buf.Len()-12], 0o644))
		st, err := collector.NewReplayer().ReplayFile(ctx, path, nop)
		require.Error(t, err)
		require.True(t, strings.HasPrefix(err.Error(), path+": "), err.Error())
		require.Contains(t, err.Error(), "line")
		require.Positive(t, st.Lines)
	})
	t.Run("not gzip after the magic", func(t *testing.T) {
		path := filepath.Join(dir, "fake.gz")
		require.NoError(t, os.WriteFile(path, []byte{0x1f, 0x8b, 'x', 'y'}, 0o644))
		_, err := collector.NewReplayer().ReplayFile(ctx, path, nop)
		require.Error(t, err)
		require.True(t, strings.HasPrefix(err.Error(), path+": gzip"), err.Error())
	})
	t.Run("handler error", func(t *testing.T) {
		path := filepath.Join(dir, "h.jsonl")
		require.NoError(t, os.WriteFile(path, []byte(good+"\n\n"+good+"\n"), 0o644))
		n := 0
		st, err := collector.NewReplayer().ReplayFile(ctx, path, func([]byte) error {
			if n++; n == 2 {
				return errors.New("undecodable")
			}
			return nil
		})
		require.NoError(t, err)
		require.Len(t, st.FirstErrors, 1)
		require.Equal(t, path+":3: undecodable", st.FirstErrors[0].Error())
	})
	t.Run("hostile line", func(t *testing.T) {
		path := filepath.Join(dir, "x.jsonl")
		require.NoError(t, os.WriteFile(path, []byte(good+"\n{\"flow\":{\"source\":{\"namespace\":7}}}\n\x00\xff\n"), 0o644))
		st, err := collector.NewReplayer().ReplayFile(ctx, path, nop)
		require.NoError(t, err)
		require.Len(t, st.FirstErrors, 2)
		require.True(t, strings.HasPrefix(st.FirstErrors[0].Error(), path+":2: "), st.FirstErrors[0].Error())
		require.Contains(t, st.FirstErrors[0].Error(), "namespace", "the field is named")
		require.True(t, strings.HasPrefix(st.FirstErrors[1].Error(), path+":3: "), st.FirstErrors[1].Error())
	})
}
