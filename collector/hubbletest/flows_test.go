package hubbletest_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"github.com/egressd/egressd/collector/hubbletest"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestLoadJSONLines(t *testing.T) {
	t.Parallel()
	in := `{"flow":{"time":"2021-06-16T16:52:13.136834446Z","verdict":"FORWARDED","IP":{"source":"10.0.2.16","destination":"35.246.31.234","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":42044,"destination_port":443}},"destination":{"identity":2,"labels":["reserved:world"]},"traffic_direction":"EGRESS","future_field":{"x":1}},"node_name":"gke-1","time":"2021-06-16T16:52:13.136834446Z"}

{"lost_events":{"source":"PERF_EVENT_RING_BUFFER","num_events_lost":"3"},"node_name":"gke-1","time":"2021-06-16T16:52:14Z"}
`
	got, err := hubbletest.LoadJSONLines(strings.NewReader(in))
	require.NoError(t, err)
	want := []*observer.GetFlowsResponse{
		{
			NodeName: "gke-1",
			Time:     &timestamppb.Timestamp{Seconds: 1623862333, Nanos: 136834446},
			ResponseTypes: &observer.GetFlowsResponse_Flow{Flow: &flow.Flow{
				Time:             &timestamppb.Timestamp{Seconds: 1623862333, Nanos: 136834446},
				Verdict:          flow.Verdict_FORWARDED,
				IP:               &flow.IP{Source: "10.0.2.16", Destination: "35.246.31.234", IpVersion: flow.IPVersion_IPv4},
				L4:               &flow.Layer4{Protocol: &flow.Layer4_TCP{TCP: &flow.TCP{SourcePort: 42044, DestinationPort: 443}}},
				Destination:      &flow.Endpoint{Identity: 2, Labels: []string{"reserved:world"}},
				TrafficDirection: flow.TrafficDirection_EGRESS,
			}},
		},
		{
			NodeName: "gke-1",
			Time:     &timestamppb.Timestamp{Seconds: 1623862334},
			ResponseTypes: &observer.GetFlowsResponse_LostEvents{LostEvents: &flow.LostEvent{
				Source: flow.LostEventSource_PERF_EVENT_RING_BUFFER, NumEventsLost: 3,
			}},
		},
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("responses (-want +got):\n%s", diff)
	}
}

func TestLoadJSONLines_Errors(t *testing.T) {
	t.Parallel()
	good := `{"flow":{"verdict":"FORWARDED"}}`
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"bad JSON", good + "\n\n" + `{"flow":` + "\n", "line 3:"},
		{"wrong type", good + "\n" + `{"flow":{"verdict":42.5}}`, "line 2:"},
		{"not a response", `{"agent_event":{"type":"AGENT_STARTED"}}`, "line 1: no flow, lost_events or node_status"},
		{"a bare flow", `{"time":"2021-06-16T16:52:13Z","verdict":"FORWARDED"}`, "line 1: no flow"},
		{"too long", good + "\n" + `{"flow":{"Summary":"` + strings.Repeat("x", 17<<20) + `"}}`, "line 2: longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := hubbletest.LoadJSONLines(strings.NewReader(tt.in))
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func FuzzLoadJSONLines(f *testing.F) {
	f.Add([]byte(`{"flow":{"verdict":"FORWARDED","source":{"labels":["k8s:app=a"]}},"time":"2021-06-16T16:52:13Z"}`))
	f.Add([]byte(`{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"1"}}` + "\n\n{}"))
	f.Add([]byte(`{"node_status":{"state_change":"NODE_CONNECTED","node_names":["a"]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		resps, err := hubbletest.LoadJSONLines(bytes.NewReader(data))
		if err != nil {
			require.Contains(t, err.Error(), "line ")
			return
		}
		for _, r := range resps {
			require.NotNil(t, r.GetResponseTypes())
		}
	})
}

func TestNewFlow(t *testing.T) {
	t.Parallel()
	got := hubbletest.NewFlow(hubbletest.FlowSpec{
		Time: at(0),
		Node: "kind-worker",
		Src:  hubbletest.PodEndpoint("media", "recyclarr-0", "10.0.1.5", "k8s:app=recyclarr"),
		Dst:  hubbletest.WorldEndpoint("140.82.112.3", 443, "api.github.com"),
	})
	want := &flow.Flow{
		Time:     timestamppb.New(at(0)),
		NodeName: "kind-worker",
		Verdict:  flow.Verdict_FORWARDED,
		IP:       &flow.IP{Source: "10.0.1.5", Destination: "140.82.112.3", IpVersion: flow.IPVersion_IPv4},
		L4:       &flow.Layer4{Protocol: &flow.Layer4_TCP{TCP: &flow.TCP{DestinationPort: 443}}},
		Source: &flow.Endpoint{Namespace: "media", PodName: "recyclarr-0",
			Labels: []string{"k8s:app=recyclarr", "k8s:io.kubernetes.pod.namespace=media"}},
		Destination:      &flow.Endpoint{Identity: hubbletest.IdentityWorld, Labels: []string{"reserved:world"}},
		DestinationNames: []string{"api.github.com"},
		Type:             flow.FlowType_L3_L4,
		EventType:        &flow.CiliumEventType{Type: hubbletest.EventTypeTrace},
		TrafficDirection: flow.TrafficDirection_EGRESS,
		IsReply:          wrapperspb.Bool(false),
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("flow (-want +got):\n%s", diff)
	}
	resp := hubbletest.Response(got)
	require.Equal(t, "kind-worker", resp.GetNodeName())
	require.Equal(t, at(0), resp.GetTime().AsTime())
}

// samplesDir holds real recorded Hubble flows (see its SOURCES.md). CI has
// the folder beside the checkout; it is not part of the repository.
const samplesDir = "../../../shared/hubble-samples/cilium-hubble-otel"

// TestSamples serves the real recorded flows and checks the server's
// filters against counts computed by scanning the JSON independently. It
// runs where shared/hubble-samples sits beside the checkout, as in CI, and
// skips in a clone without it: the samples are not part of the repository.
func TestSamples(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join(samplesDir, "*.json"))
	require.NoError(t, err)
	if len(files) == 0 {
		t.Skipf("real Hubble samples not found at %s (they live in shared/hubble-samples beside the checkout); skipping the filter check on recorded flows", samplesDir)
	}

	srv, c := startServer(t, hubbletest.Options{})
	var want struct{ lines, egressWorld, dns, kubeSystemSrc, replies int }
	for _, file := range files {
		b, err := os.ReadFile(file)
		require.NoError(t, err)
		resps, err := hubbletest.LoadJSONLines(bytes.NewReader(b))
		require.NoError(t, err, file)
		srv.Add(resps...)

		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var line struct {
				Flow struct {
					Verdict          string `json:"verdict"`
					TrafficDirection string `json:"traffic_direction"`
					IsReply          *bool  `json:"is_reply"`
					Reply            bool   `json:"reply"`
					Source           struct {
						Namespace string `json:"namespace"`
						PodName   string `json:"pod_name"`
					} `json:"source"`
					Destination struct {
						Labels []string `json:"labels"`
					} `json:"destination"`
					L7 struct {
						DNS json.RawMessage `json:"dns"`
					} `json:"l7"`
				} `json:"flow"`
			}
			require.NoError(t, json.Unmarshal(sc.Bytes(), &line), file)
			want.lines++
			fl := line.Flow
			if fl.TrafficDirection == "EGRESS" && slices.Contains(fl.Destination.Labels, "reserved:world") {
				want.egressWorld++
			}
			if fl.L7.DNS != nil {
				want.dns++
			}
			if fl.Source.Namespace == "kube-system" && fl.Source.PodName != "" {
				want.kubeSystemSrc++
			}
			if (fl.IsReply != nil && *fl.IsReply) || (fl.IsReply == nil && fl.Verdict != "DROPPED" && fl.Reply) {
				want.replies++
			}
		}
		require.NoError(t, sc.Err())
	}
	require.Equal(t, want.lines, srv.Len())
	t.Logf("%d flows: %d EGRESS to reserved:world, %d DNS, %d from kube-system pods, %d replies",
		want.lines, want.egressWorld, want.dns, want.kubeSystemSrc, want.replies)
	// Guard against a scan that silently counts nothing.
	require.Positive(t, want.egressWorld)
	require.Positive(t, want.dns)
	require.Positive(t, want.kubeSystemSrc)
	require.Positive(t, want.replies)

	count := func(ff ...*flow.FlowFilter) int {
		return len(mustCollect(t, c, &observer.GetFlowsRequest{Whitelist: ff}))
	}
	require.Equal(t, want.lines, count())
	require.Equal(t, want.egressWorld, count(&flow.FlowFilter{
		TrafficDirection: []flow.TrafficDirection{flow.TrafficDirection_EGRESS},
		DestinationLabel: []string{"reserved:world"},
	}), "EGRESS to reserved:world")
	require.Equal(t, want.dns, count(&flow.FlowFilter{Protocol: []string{"dns"}}), "dns")
	require.Equal(t, want.kubeSystemSrc, count(&flow.FlowFilter{SourcePod: []string{"kube-system/"}}), "kube-system sources")
	require.Equal(t, want.replies, count(&flow.FlowFilter{Reply: []bool{true}}), "replies")
	require.Equal(t, want.lines-want.egressWorld, len(mustCollect(t, c, &observer.GetFlowsRequest{Blacklist: []*flow.FlowFilter{{
		TrafficDirection: []flow.TrafficDirection{flow.TrafficDirection_EGRESS},
		DestinationLabel: []string{"reserved:world"},
	}}})), "blacklisted EGRESS to reserved:world")
}
