package collector_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/cilium/cilium/api/v1/observer"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/egressd/egressd/collector"
)

func jsonLine(t testing.TB, m proto.Message) string {
	t.Helper()
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	require.NoError(t, err)
	return string(b)
}

func replayString(t *testing.T, input []byte) ([]*observer.GetFlowsResponse, collector.ReplayStats) {
	t.Helper()
	var got []*observer.GetFlowsResponse
	st, err := collector.NewReplayer().Replay(context.Background(), "capture.jsonl", bytes.NewReader(input), func(msg []byte) error {
		var r observer.GetFlowsResponse
		require.NoError(t, proto.Unmarshal(msg, &r))
		got = append(got, &r)
		return nil
	})
	require.NoError(t, err)
	return got, st
}

// collectorDiff returns how the collector's decoder reads replayed, a
// message replay handed on, otherwise than whole, the whole response it
// was read from (-whole +replayed); "" when alike.
func collectorDiff(t testing.TB, d *collector.Decoder, whole *observer.GetFlowsResponse, replayed []byte) string {
	t.Helper()
	wb, err := proto.Marshal(whole)
	require.NoError(t, err)
	want, err := d.Decode(wb)
	require.NoError(t, err)
	got, err := d.Decode(replayed)
	require.NoError(t, err)
	// Equal values make no diff; cmp.Diff, slow under the race detector,
	// only runs to tell how they differ.
	if reflect.DeepEqual(want, got) {
		return ""
	}
	return cmp.Diff(want, got)
}

// requireSameForCollector fails unless the collector reads the same from
// got, a replayed message, as from want, the whole response the line was
// written from: replay keeps only what the collector reads.
func requireSameForCollector(t *testing.T, want, got *observer.GetFlowsResponse, msgAndArgs ...any) {
	t.Helper()
	gb, err := proto.Marshal(got)
	require.NoError(t, err)
	require.Empty(t, collectorDiff(t, collector.NewTestDecoder(testLabelKeys), want, gb), msgAndArgs...)
}

func TestReplayFormats(t *testing.T) {
	t.Parallel()
	rs := syntheticResponses()
	var lines []string
	for _, r := range rs {
		lines = append(lines, jsonLine(t, r))
	}
	// A legacy line: the bare flow.
	legacy := podFlow(t0, "9.9.9.9", 443)
	lines = append(lines, "", jsonLine(t, legacy))
	input := strings.Join(lines, "\n") + "\n"

	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(input))
	require.NoError(t, zw.Close())

	for name, in := range map[string][]byte{"plain": []byte(input), "gzip": gz.Bytes(), "crlf no final newline": []byte(strings.ReplaceAll(strings.TrimSuffix(input, "\n"), "\n", "\r\n"))} {
		t.Run(name, func(t *testing.T) {
			got, st := replayString(t, in)
			require.Equal(t, 0, st.BadLines, "%v", st.FirstErrors)
			require.Equal(t, len(rs)+1, st.Messages)
			require.Len(t, got, len(rs)+1)
			for i, r := range rs {
				requireSameForCollector(t, r, got[i], "line %d", i+1)
			}
			last := got[len(got)-1]
			requireSameForCollector(t, &observer.GetFlowsResponse{
				NodeName: legacy.GetNodeName(), Time: legacy.GetTime(),
				ResponseTypes: &observer.GetFlowsResponse_Flow{Flow: legacy},
			}, last, "the legacy line")
		})
	}
}

func TestReplayBadLinesAreReportedAndSkipped(t *testing.T) {
	t.Parallel()
	good := jsonLine(t, syntheticResponses()[0])
	input := strings.Join([]string{
		good,
		`{"flow": {"time": "yesterday"}}`,
		`not json at all`,
		`{"unrelated": true}`,
		good,
		`{"flow":` + strings.Repeat(" ", collector.MaxLineBytes) + `}`,
		good,
	}, "\n")
	got, st := replayString(t, []byte(input))
	require.Len(t, got, 3)
	require.Equal(t, 7, st.Lines)
	require.Equal(t, 4, st.BadLines)
	var lines []int
	for _, e := range st.FirstErrors {
		var le *collector.LineError
		require.True(t, errors.As(e, &le))
		require.Equal(t, "capture.jsonl", le.File)
		lines = append(lines, le.Line)
		require.Contains(t, e.Error(), "capture.jsonl:")
	}
	require.Equal(t, []int{2, 3, 4, 6}, lines)
	require.Contains(t, st.FirstErrors[3].Error(), "longer than")
}

func FuzzReplayLine(f *testing.F) {
	for _, r := range syntheticResponses() {
		f.Add([]byte(jsonLine(f, r)))
	}
	f.Add([]byte(jsonLine(f, podFlow(t0, "1.1.1.1", 443))))
	f.Add([]byte("{}\n{\"flow\":null}\n\x1f\x8b"))
	f.Fuzz(func(t *testing.T, in []byte) {
		n := 0
		st, err := collector.NewReplayer().Replay(context.Background(), "fuzz", bytes.NewReader(in), func(msg []byte) error {
			var r observer.GetFlowsResponse
			if err := proto.Unmarshal(msg, &r); err != nil {
				t.Fatalf("replay produced an undecodable message: %v", err)
			}
			n++
			return nil
		})
		if err != nil {
			return // a broken gzip stream, reported as such
		}
		require.Equal(t, n, st.Messages)
		require.LessOrEqual(t, st.Messages+st.BadLines, st.Lines)
		for _, e := range st.FirstErrors {
			require.True(t, strings.HasPrefix(e.Error(), "fuzz:"), e.Error())
		}
	})
}
