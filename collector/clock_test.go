package collector_test

import (
	"bytes"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/egressd/egressd/collector"
)

// clockPipeline returns a pipeline whose receiving clock reads *now, and
// its log.
func clockPipeline(t testing.TB, sink collector.Sink, now *time.Time) (*collector.Pipeline, *collector.Metrics, *bytes.Buffer) {
	t.Helper()
	var log bytes.Buffer
	m := collector.NewMetrics(prometheus.NewRegistry())
	opts := collector.DefaultOptions()
	opts.Now = func() time.Time { return *now }
	opts.Log = slog.New(slog.NewTextHandler(&log, nil))
	p, err := collector.NewPipeline(opts, m, sink)
	require.NoError(t, err)
	return p, m, &log
}

// flowWithTime is podFlow stamped with a raw timestamp, which may be one
// that time.Time cannot hold.
func flowWithTime(sec int64, nanos int32) []byte {
	f := podFlow(t0, "140.82.112.6", 443)
	f.Time = &timestamppb.Timestamp{Seconds: sec, Nanos: nanos}
	f.Uuid = ""
	b, _ := proto.Marshal(resp(f))
	return b
}

func TestClockRejectsUnbelievableTimes(t *testing.T) {
	t.Parallel()
	now := t0
	sink := &captureSink{}
	p, m, log := clockPipeline(t, sink, &now)
	rejected := []struct {
		name string
		sec  int64
	}{
		{"2100-01-01", time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).Unix()},
		// Past the old sec > 1<<40 guard's reach, and beyond int64 ns:
		// it used to be stored as 1816-03-29.
		{"year 9999", time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC).Unix()},
		{"2262, the last year of int64 ns", math.MaxInt64 / 1_000_000_000},
		{"max int64 seconds", math.MaxInt64},
		{"1999", time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC).Unix()},
		{"epoch", 0},
		{"negative", -1},
		{"6 minutes ahead", t0.Add(6 * time.Minute).Unix()},
	}
	for _, r := range rejected {
		require.NoError(t, p.Handle("hubble", flowWithTime(r.sec, 0)), r.name)
	}
	require.Empty(t, sink.obs, "no rejected flow is an observation")
	require.Empty(t, sink.cursors, "no rejected flow moves a cursor")
	require.Equal(t, float64(len(rejected)), testutil.ToFloat64(m.Rejected.WithLabelValues("clock")))
	require.Equal(t, time.Time{}, p.Resume("hubble"))

	// Within the skew, and the last moment of the bound, are accepted.
	require.NoError(t, p.Handle("hubble", flowWithTime(t0.Add(4*time.Minute).Unix(), 0)))
	require.NoError(t, p.Handle("hubble", flowWithTime(t0.Add(5*time.Minute).Unix(), 0)))
	require.Len(t, sink.obs, 2)
	require.Equal(t, t0.Add(5*time.Minute), sink.cursors["hubble"])

	// One line for the burst, with the node; the rest are counted.
	require.Equal(t, 1, strings.Count(log.String(), "flow_rejected_clock"), log.String())
	require.Contains(t, log.String(), "node=k8s-node-1")

	// The clock moves on: what was ahead is now in time, and the next
	// rejection is logged with the count of those not logged.
	now = t0.Add(time.Hour)
	require.NoError(t, p.Handle("hubble", flowWithTime(t0.Add(6*time.Minute).Unix(), 0)))
	require.Len(t, sink.obs, 3)
	require.NoError(t, p.Handle("hubble", flowWithTime(time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).Unix(), 0)))
	require.Equal(t, 2, strings.Count(log.String(), "flow_rejected_clock"), log.String())
	require.Contains(t, log.String(), "rejected_since_last_line="+strconv.Itoa(len(rejected)-1))
}

// FuzzFlowTime feeds arbitrary timestamps: a flow is either rejected (and
// moves nothing) or delivered with exactly its own time, between 2000 and
// the receiving clock plus the skew; nanosecond arithmetic never wraps.
func FuzzFlowTime(f *testing.F) {
	f.Add(t0.Unix(), int32(0))
	f.Add(time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC).Unix(), int32(999_999_999))
	f.Add(int64(math.MaxInt64), int32(0))
	f.Add(int64(math.MinInt64), int32(-1))
	f.Add(int64(946_684_800), int32(0))
	f.Add(int64(9_223_372_035), int32(999_999_999))
	f.Fuzz(func(t *testing.T, sec int64, nanos int32) {
		now := time.Date(2262, 4, 11, 23, 0, 0, 0, time.UTC) // near the int64 ns limit
		if sec%2 == 0 {
			now = t0
		}
		sink := &captureSink{}
		p, m, _ := clockPipeline(t, sink, &now)
		require.NoError(t, p.Handle("hubble", flowWithTime(sec, nanos)))
		rejected := testutil.ToFloat64(m.Rejected.WithLabelValues("clock"))
		noTime := testutil.ToFloat64(m.Unattributed.WithLabelValues("no_time"))
		if len(sink.obs) == 0 {
			require.Equal(t, 1.0, rejected+noTime, "a flow not delivered is counted once")
			require.Empty(t, sink.cursors)
			return
		}
		got := sink.obs[0].Time
		require.Equal(t, time.Unix(sec, int64(nanos)).UTC(), got)
		require.Equal(t, sec, got.Unix())
		require.Equal(t, int(nanos), got.Nanosecond())
		require.False(t, got.Before(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)), got)
		require.False(t, got.After(now.Add(5*time.Minute)), got)
		require.Equal(t, got, sink.cursors["hubble"])
		require.Equal(t, got.UnixNano()/1e9, sec, "ns round-trip")
	})
}

// TestClockFlowFromTheFutureInAResponseOnly checks the response's own
// time, used when the flow has none, is validated the same way.
func TestClockFlowFromTheFutureInAResponseOnly(t *testing.T) {
	t.Parallel()
	now := t0
	sink := &captureSink{}
	p, m, _ := clockPipeline(t, sink, &now)
	f := podFlow(t0, "140.82.112.6", 443)
	f.Time = nil
	r := resp(f)
	r.Time = timestamppb.New(time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC))
	b, err := proto.Marshal(r)
	require.NoError(t, err)
	require.NoError(t, p.Handle("hubble", b))
	require.Empty(t, sink.obs)
	require.Equal(t, 1.0, testutil.ToFloat64(m.Rejected.WithLabelValues("clock")))
}
