package collector_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	relaypb "github.com/cilium/cilium/api/v1/relay"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/egressd/egressd/collector"
	"github.com/egressd/egressd/collector/flowgen"
	"github.com/egressd/egressd/collector/hubbletest"
)

// agreeWithProtojson checks one replay line both ways: when the fast JSON
// path takes it, protojson accepts it too and the two give the same bytes;
// and what protojson accepts keeps every field the collector reads (the
// decoder reads the same from the message replay hands on as from the
// whole message). It reports whether the fast path took the line.
func agreeWithProtojson(t testing.TB, d *collector.Decoder, line []byte) bool {
	t.Helper()
	fast, ok := collector.FastJSONLine(line)
	// One protojson read gives both what replay keeps and the whole
	// response.
	slow, whole, err := collector.ProtojsonLineAndResponse(line)
	if ok {
		require.NoError(t, err, "the fast path took a line protojson rejects: %s", line)
		require.Equal(t, slow, fast, "the fast path and protojson disagree on %s", line)
	}
	if err != nil {
		return ok
	}
	if diff := collectorDiff(t, d, whole, slow); diff != "" {
		t.Fatalf("replay's message loses what the collector reads of %s (-whole +replayed):\n%s", line, diff)
	}
	return ok
}

// generatedLines returns a day of flowgen's home lab, lost events and node
// status included, as `hubble observe -o jsonpb` and as legacy lines, and
// hubbletest's and the collector tests' flows marshalled by protojson with
// proto and with JSON field names.
func generatedLines(t testing.TB) [][]byte {
	t.Helper()
	s := flowgen.HomeLab(t0, 24*time.Hour)
	s.LostEvents = 3
	resps, err := s.Generate()
	require.NoError(t, err)
	resps = append(resps, hubbletestResponses()...)
	resps = append(resps, syntheticResponses()...)
	var buf bytes.Buffer
	require.NoError(t, flowgen.WriteJSONLines(&buf, resps))
	require.NoError(t, flowgen.WriteLegacyLines(&buf, resps))
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	for _, r := range append(hubbletestResponses(), syntheticResponses()...) {
		for _, names := range []bool{true, false} {
			b, err := protojson.MarshalOptions{UseProtoNames: names}.Marshal(r)
			require.NoError(t, err)
			lines = append(lines, b)
		}
	}
	return lines
}

func hubbletestResponses() []*observer.GetFlowsResponse {
	at := t0.Add(time.Minute)
	pod := hubbletest.PodEndpoint("shop", "cart-7d9f8b6c4-x2k9q", "fd00:10:244::12", "k8s:app=cart")
	pod.Workload, pod.ClusterName, pod.Identity = "cart", "prod", 41437
	dns := hubbletest.NewFlow(hubbletest.FlowSpec{
		Time: at, Node: "prod/node-1", UUID: "6f1c0c1e-6d1e-4a4b-9b0e-1c2d3e4f5a6b", Protocol: "UDP",
		Src: hubbletest.Endpoint{IP: "fd00:10:96::a", Port: 53, Namespace: "kube-system", Pod: "coredns-1", Identity: 102},
		Dst: pod, Reply: true, L7Type: flowpb.L7FlowType_RESPONSE,
		DNS: &flowpb.DNS{Query: "api.stripe.com.", Ips: []string{"2600:9000::1", "54.187.174.169"}, Ttl: 30, Rcode: 0, Qtypes: []string{"AAAA"}},
	})
	conn := hubbletest.NewFlow(hubbletest.FlowSpec{
		Time: at.Add(time.Millisecond), Node: "prod/node-1", Src: pod,
		Dst: hubbletest.WorldEndpoint("2600:9000::1", 443, "api.stripe.com"), Verdict: flowpb.Verdict_DROPPED,
	})
	icmp := hubbletest.NewFlow(hubbletest.FlowSpec{
		Time: at.Add(2 * time.Millisecond), Node: "prod/node-2", Protocol: "ICMPv6", Src: pod,
		Dst: hubbletest.WorldEndpoint("2001:db8::1", 0),
	})
	return append(hubbletest.Responses(dns, conn, icmp),
		hubbletest.LostEventsResponse(flowpb.LostEventSource_PERF_EVENT_RING_BUFFER, 1<<40, "prod/node-1", at),
		hubbletest.NodeStatusResponse(relaypb.NodeState_NODE_ERROR, "connection refused", at, "prod/node-3"))
}

// edgeLines are lines the fast path must read exactly as protojson does,
// or leave to it; fast says which it is expected to do.
var edgeLines = []struct {
	name string
	fast bool
	line string
}{
	{"empty object", false, `{}`},
	{"flow null", false, `{"flow":null}`},
	{"empty flow", true, `{"flow":{}}`},
	{"fields missing", true, `{"flow":{"time":"2026-11-01T00:00:01Z"}}`},
	{"nulls", true, `{"flow":{"time":null,"IP":null,"source":{"labels":null,"pod_name":null,"workloads":null},"l4":{"TCP":null,"UDP":{"destination_port":null}},"is_reply":null,"l7":null},"node_name":null}`},
	{"unicode escapes", true, `{"flow":{"source":{"namespace":"t\u00e9am","pod_name":"caf\u00e9-1","labels":["k8s:app=\u0063art","k8s:x=\"q\"\\\/\b\f\n\r\t"]},"node_name":"n\u00f6de"}}`},
	{"escaped keys", true, `{"fl\u006fw":{"node_n\u0061me":"n"}}`},
	{"surrogate pair", false, `{"flow":{"node_name":"\ud83d\ude00"}}`},
	{"lone surrogate", false, `{"flow":{"node_name":"\ud83d"}}`},
	{"escaped backslash before ud8", false, `{"flow":{"node_name":"\\ud83d"}}`},
	{"raw unicode", true, `{"flow":{"destination_names":["bücher.example.","例え.jp"]}}`},
	{"numbers as strings", true, `{"flow":{"source":{"identity":"41437"},"l4":{"TCP":{"destination_port":"443","source_port":"51234"}},"event_type":{"type":"4"}}}`},
	{"int64 as strings", true, `{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"18446744073709551615","cpu":"3"}}`},
	{"int64 as numbers", true, `{"lost_events":{"source":2,"num_events_lost":12,"cpu":-1}}`},
	{"uint64 too large", false, `{"lost_events":{"num_events_lost":"18446744073709551616"}}`},
	{"uint32 too large", false, `{"flow":{"source":{"identity":4294967296}}}`},
	{"uint32 negative", false, `{"flow":{"source":{"identity":-1}}}`},
	{"int32 too small", false, `{"flow":{"event_type":{"type":-2147483649}}}`},
	{"int32 smallest", true, `{"flow":{"event_type":{"type":-2147483648}}}`},
	{"number with fraction", false, `{"flow":{"source":{"identity":1.0}}}`},
	{"number with exponent", false, `{"flow":{"source":{"identity":1e3}}}`},
	{"number string with space", false, `{"flow":{"source":{"identity":" 1"}}}`},
	{"number string empty", false, `{"flow":{"source":{"identity":""}}}`},
	{"enums by name", true, `{"flow":{"verdict":"DROPPED","Type":"L7","traffic_direction":"EGRESS","l7":{"type":"RESPONSE"}}}`},
	{"enums by number", true, `{"flow":{"verdict":2,"Type":2,"traffic_direction":1,"l7":{"type":2}}}`},
	{"enum unknown name", true, `{"flow":{"verdict":"MAYBE","traffic_direction":"SIDEWAYS"}}`},
	{"enum number as string", true, `{"flow":{"verdict":"2"}}`},
	{"enum out of range", true, `{"flow":{"verdict":99}}`},
	{"enum negative", true, `{"flow":{"verdict":-3}}`},
	{"enum too large", false, `{"flow":{"verdict":2147483648}}`},
	{"enum bool", false, `{"flow":{"verdict":true}}`},
	{"json names", true, `{"flow":{"nodeName":"n","destinationNames":["a.example."],"trafficDirection":"EGRESS","isReply":false,"eventType":{"type":4},"source":{"podName":"p","clusterName":"c"},"l4":{"UDP":{"destinationPort":53,"sourcePort":1}}},"nodeName":"m"}`},
	{"duplicate field", false, `{"flow":{"node_name":"a","node_name":"b"}}`},
	{"duplicate by both names", false, `{"flow":{"node_name":"a","nodeName":"b"}}`},
	{"duplicate null", false, `{"flow":{"node_name":null,"node_name":"b"}}`},
	{"duplicate unknown", true, `{"flow":{"x":1,"x":2}}`},
	{"oneof twice", false, `{"flow":{},"node_status":{}}`},
	{"oneof with null", true, `{"flow":null,"node_status":{}}`},
	{"l4 oneof twice", false, `{"flow":{"l4":{"TCP":{},"UDP":{}}}}`},
	{"l7 oneof twice", false, `{"flow":{"l7":{"dns":{},"http":{}}}}`},
	{"IPv6", true, `{"flow":{"time":"2026-11-01T00:00:01.000000001Z","IP":{"source":"fd00::1","destination":"2606:4700::6810:85e5","ipVersion":"IPv6"},"l4":{"ICMPv6":{"type":128}}}}`},
	{"DNS answer", true, `{"flow":{"time":"2026-11-01T00:00:01Z","l7":{"type":"RESPONSE","dns":{"query":"a.example.","ips":["1.2.3.4","::1"],"ttl":30,"rcode":3,"cnames":["b.example."],"qtypes":["A"]}}}}`},
	{"DNS empty", true, `{"flow":{"l7":{"dns":{}}}}`},
	{"HTTP", true, `{"flow":{"l7":{"type":"REQUEST","http":{"code":200,"method":"GET","headers":[{"key":"a","value":"b"}]}}}}`},
	{"lost events", true, `{"lost_events":{"source":"PERF_EVENT_RING_BUFFER","num_events_lost":"5"},"node_name":"n","time":"2026-11-01T00:00:01Z"}`},
	{"lost events cpu object", false, `{"lost_events":{"cpu":{"value":1}}}`},
	{"lost events cpu", true, `{"lost_events":{"source":"PERF_EVENT_RING_BUFFER","num_events_lost":"5","cpu":1,"first":"2026-11-01T00:00:00Z","last":"2026-11-01T00:00:01Z"},"node_name":"n"}`},
	{"node status", true, `{"node_status":{"state_change":"NODE_CONNECTED","node_names":["a","b"],"message":"m"},"time":"2026-11-01T00:00:01Z"}`},
	{"unknown fields", true, `{"flow":{"future":{"a":[1,2,{"b":null}],"c":"\u00e9"},"time":"2026-11-01T00:00:01Z","uuid":"u"},"extra":[true,false,null,-1.5e-3],"node_name":"n"}`},
	{"extension key", false, `{"flow":{"[flow.foo]":1}}`},
	{"any extensions", false, `{"flow":{"extensions":{"@type":"type.googleapis.com/flow.Flow"}}}`},
	{"any null", true, `{"flow":{"extensions":null}}`},
	{"empty list entries", true, `{"flow":{"source":{"labels":["",""]},"destination_names":[""],"l7":{"dns":{"ips":["",""]}}}}`},
	{"empty strings", true, `{"flow":{"uuid":"","node_name":"","source":{"namespace":"","workloads":[{"name":"","kind":""}]}},"node_name":""}`},
	{"workloads", true, `{"flow":{"source":{"workloads":[{"name":"a","kind":"Deployment"},{"name":"b"}]},"destination":{"workloads":[{},{"name":"c"}]}}}`},
	{"workload not an object", false, `{"flow":{"source":{"workloads":[null]}}}`},
	{"labels not a list", false, `{"flow":{"source":{"labels":"k8s:app=a"}}}`},
	{"label not a string", false, `{"flow":{"source":{"labels":[1]}}}`},
	{"string for message", false, `{"flow":{"source":"x"}}`},
	{"number for string", false, `{"flow":{"node_name":1}}`},
	{"bool as string", false, `{"flow":{"reply":"true"}}`},
	{"is_reply object", false, `{"flow":{"is_reply":{"value":true}}}`},
	{"tunnel", true, `{"flow":{"tunnel":{"protocol":"VXLAN","IP":{"source":"9.9.9.9","destination":"8.8.8.8"},"l4":{"UDP":{"destination_port":8472}}},"IP":{"source":"1.1.1.1"}}}`},
	{"time with offset", false, `{"flow":{"time":"2026-11-01T01:00:01+01:00"}}`},
	{"time lower case", false, `{"flow":{"time":"2026-11-01t00:00:01z"}}`},
	{"time ten digits", false, `{"flow":{"time":"2026-11-01T00:00:01.1234567890Z"}}`},
	{"time no fraction digits", false, `{"flow":{"time":"2026-11-01T00:00:01.Z"}}`},
	{"time February 29", true, `{"flow":{"time":"2024-02-29T23:59:59.9Z"}}`},
	{"time February 29 of 2023", false, `{"flow":{"time":"2023-02-29T00:00:00Z"}}`},
	{"time leap second", false, `{"flow":{"time":"2016-12-31T23:59:60Z"}}`},
	{"time first year", true, `{"flow":{"time":"0001-01-01T00:00:00Z"}}`},
	{"time year zero", false, `{"flow":{"time":"0000-01-01T00:00:00Z"}}`},
	{"time far", true, `{"flow":{"time":"9999-12-31T23:59:59.999999999Z"}}`},
	{"time number", false, `{"flow":{"time":1700000000}}`},
	{"legacy flow", true, `{"time":"2026-11-01T00:00:01Z","IP":{"source":"1.1.1.1"},"node_name":"n","uuid":"u"}`},
	{"legacy flow without time", true, `{"source":{"pod_name":"p"},"node_name":"n"}`},
	{"legacy lost event", false, `{"source":"PERF_EVENT_RING_BUFFER","num_events_lost":"5"}`},
	{"legacy nothing", false, `{"uuid":"u"}`},
	{"trailing garbage", false, `{"flow":{}} x`},
	{"two objects", false, `{"flow":{}}{"flow":{}}`},
	{"invalid UTF-8", false, "{\"flow\":{\"node_name\":\"\xff\"}}"},
	{"control character", false, "{\"flow\":{\"node_name\":\"a\tb\"}}"},
	{"bad escape", false, `{"flow":{"node_name":"\x"}}`},
	{"short unicode escape", false, `{"flow":{"node_name":"\u12"}}`},
	{"number 1e", false, `{"flow":{"future":1e}}`},
	{"leading zero", false, `{"flow":{"future":01}}`},
	{"deep unknown", false, `{"flow":{"future":` + strings.Repeat("[", 400) + strings.Repeat("]", 400) + `}}`},
	{"single quotes", false, `{'flow':{}}`},
	{"trailing comma", false, `{"flow":{},}`},
	{"spaces", true, `{ "flow" : { "node_name" : "n" } , "time" : "2026-11-01T00:00:01Z" }`},
	{"tabs between tokens", false, "{\"flow\":\t{\"node_name\" :\r\"n\"}}"},
}

// TestFastJSONAgreesWithProtojson is the fast path's differential test:
// every line of the recorded samples and of generated shapes, and each
// edge case, read both ways. Every generated and recorded line must take
// the fast path, or the comparison proves little.
func TestFastJSONAgreesWithProtojson(t *testing.T) {
	t.Parallel()
	t.Run("generated", func(t *testing.T) {
		t.Parallel()
		d := collector.NewTestDecoder(testLabelKeys)
		bareLost := 0
		for i, line := range generatedLines(t) {
			if agreeWithProtojson(t, d, line) {
				continue
			}
			// A bare LostEvent (legacy lines) is left to protojson,
			// which reads it only after failing to read a bare Flow.
			r, err := collector.ProtojsonResponse(line)
			require.NoError(t, err)
			require.NotNil(t, r.GetLostEvents(), "line %d left to protojson: %s", i+1, line)
			require.False(t, bytes.HasPrefix(line, []byte(`{"lost_events"`)), "line %d left to protojson: %s", i+1, line)
			bareLost++
		}
		require.Equal(t, 5, bareLost, "the day's three lost events, hubbletest's and syntheticResponses', as legacy lines")
	})
	t.Run("week capture", func(t *testing.T) {
		t.Parallel()
		f, err := os.Open("flowgen/testdata/homelab-week.jsonl.gz")
		require.NoError(t, err)
		defer f.Close()
		zr, err := gzip.NewReader(f)
		require.NoError(t, err)
		sc := bufio.NewScanner(zr)
		sc.Buffer(nil, collector.MaxLineBytes)
		d := collector.NewTestDecoder(testLabelKeys)
		n := 0
		for ; sc.Scan(); n++ {
			require.True(t, agreeWithProtojson(t, d, sc.Bytes()), "line %d left to protojson", n+1)
		}
		require.NoError(t, sc.Err())
		require.Greater(t, n, 30_000)
	})
	t.Run("samples", func(t *testing.T) {
		t.Parallel()
		d := collector.NewTestDecoder(testLabelKeys)
		for _, l := range loadSampleLines(t) {
			require.True(t, agreeWithProtojson(t, d, l.line), "%s left to protojson", l.at)
		}
	})
	t.Run("edge cases", func(t *testing.T) {
		t.Parallel()
		d := collector.NewTestDecoder(testLabelKeys)
		for _, tc := range edgeLines {
			require.Equal(t, tc.fast, agreeWithProtojson(t, d, []byte(tc.line)), "%s: fast path taken", tc.name)
		}
	})
}

// TestReplayCountsProtojsonLines: the replay's statistics tell how many
// lines the fast path left to protojson, bad lines included.
func TestReplayCountsProtojsonLines(t *testing.T) {
	t.Parallel()
	good := jsonLine(t, syntheticResponses()[0])
	in := strings.Join([]string{good, `{"flow":{"node_name":"\ud83d\ude00"}}`, `{"flow":5}`, good, ""}, "\n")
	_, st := replayString(t, []byte(in))
	require.Equal(t, 4, st.Lines)
	require.Equal(t, 3, st.Messages)
	require.Equal(t, 1, st.BadLines)
	require.Equal(t, 2, st.Protojson)
}

// FuzzFastJSONAgreesWithProtojson holds the fast path to protojson on
// any line, seeded with the edge cases and generated and recorded lines.
func FuzzFastJSONAgreesWithProtojson(f *testing.F) {
	for _, tc := range edgeLines {
		f.Add([]byte(tc.line))
	}
	lines := generatedLines(f)
	for i := 0; i < len(lines); i += 97 {
		f.Add(lines[i])
	}
	files, _ := filepath.Glob(filepath.Join(samplesDir, "basic-sample-5-*.json"))
	for _, name := range files {
		data, err := os.ReadFile(name)
		require.NoError(f, err)
		for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
			f.Add(line)
		}
	}
	d := collector.NewTestDecoder(testLabelKeys)
	f.Fuzz(func(t *testing.T, line []byte) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] != '{' {
			return // the Replayer never hands such a line to either path
		}
		agreeWithProtojson(t, d, line)
	})
}

// TestFastJSONKeepsTheChecks: lines the fast path reads meet the same
// checks after it as protojson's did: unbelievable times are rejected at
// the pipeline's door, and a line over the cap is reported, not read.
func TestFastJSONKeepsTheChecks(t *testing.T) {
	t.Parallel()
	now := t0
	sink := &captureSink{}
	p, m, _ := clockPipeline(t, sink, &now)
	var in bytes.Buffer
	for _, stamp := range []string{"2100-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "1999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", t0.Add(6 * time.Minute).Format(time.RFC3339Nano)} {
		line := strings.Replace(jsonLine(t, resp(podFlow(t0, "140.82.112.6", 443))), t0.Format(time.RFC3339Nano), stamp, -1)
		_, fast := collector.FastJSONLine([]byte(line))
		require.True(t, fast, "the fast path reads %s", line)
		in.WriteString(line + "\n")
	}
	in.WriteString(`{"flow":{"node_name":"` + strings.Repeat("n", collector.MaxLineBytes) + `"}}` + "\n")
	st, err := collector.NewReplayer().Replay(context.Background(), "hostile", &in, func(msg []byte) error { return p.Handle("hubble", msg) })
	require.NoError(t, err)
	require.Equal(t, 6, st.Lines)
	require.Equal(t, 1, st.BadLines)
	require.Contains(t, st.FirstErrors[0].Error(), "longer than")
	require.Equal(t, 5.0, testutil.ToFloat64(m.Rejected.WithLabelValues("clock")))
	require.Empty(t, sink.obs)
	require.Empty(t, sink.cursors)
}
