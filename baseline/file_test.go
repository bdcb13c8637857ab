package baseline_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/baseline"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
)

func TestMarshalGolden(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   egressd.Baseline
		want egressd.Baseline // what Unmarshal returns; in when zero
	}{
		{
			name: "recyclarr",
			in: egressd.Baseline{Namespace: "media", App: "recyclarr", Destinations: []egressd.BaselineDestination{
				dest(t, "api.github.com", "443/TCP"),
				dest(t, "*.githubusercontent.com", "443/TCP"),
			}},
			want: egressd.Baseline{Namespace: "media", App: "recyclarr", Destinations: []egressd.BaselineDestination{
				dest(t, "*.githubusercontent.com", "443/TCP"),
				dest(t, "api.github.com", "443/TCP"),
			}},
		},
		{
			name: "empty",
			in:   egressd.Baseline{Namespace: "kube-system", App: "coredns"},
		},
		{
			name: "hand-edited",
			in: egressd.Baseline{Namespace: "ci", App: "Runner_v2.x", Unbounded: true, Note: "CI runners fetch from anywhere <see #ops> & \"friends\"; ünïcödé ✓",
				Destinations: []egressd.BaselineDestination{
					noted(t, "registry mirror", "mirror.gcr.io", "443/TCP"),
					dest(t, "**.docker.io", "443/TCP", "80/TCP"),
					dest(t, "10.0.0.1", "53/UDP", "53/TCP"),
					dest(t, "2001:db8::1", "0/ANY"),
					dest(t, "*", "443/TCP"),
				}},
			want: egressd.Baseline{Namespace: "ci", App: "Runner_v2.x", Unbounded: true, Note: "CI runners fetch from anywhere <see #ops> & \"friends\"; ünïcödé ✓",
				Destinations: []egressd.BaselineDestination{
					dest(t, "*", "443/TCP"),
					dest(t, "**.docker.io", "80/TCP", "443/TCP"),
					dest(t, "10.0.0.1", "53/TCP", "53/UDP"),
					dest(t, "2001:db8::1", "0/ANY"),
					noted(t, "registry mirror", "mirror.gcr.io", "443/TCP"),
				}},
		},
		{
			name: "normalised",
			in: egressd.Baseline{Namespace: "web", App: "shop", Destinations: []egressd.BaselineDestination{
				dest(t, "API.Stripe.com.", "443/tcp", "80/TCP", "443/TCP", "0/any", "443/UDP"),
				dest(t, "2001:DB8:0:0::1", "443/TCP"),
			}},
			want: egressd.Baseline{Namespace: "web", App: "shop", Destinations: []egressd.BaselineDestination{
				dest(t, "2001:db8::1", "443/TCP"),
				dest(t, "api.stripe.com", "0/ANY", "80/TCP", "443/TCP", "443/UDP"),
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := mustMarshal(t, tt.in)
			golden(t, filepath.Join("marshal", tt.name+".json"), got)

			// Decode the golden file back.
			data, err := os.ReadFile(filepath.Join("testdata", "marshal", tt.name+".json"))
			require.NoError(t, err)
			back, err := baseline.Unmarshal(data, tt.name+".json")
			require.NoError(t, err)
			want := tt.want
			if want.Namespace == "" {
				want = tt.in
			}
			if diff := cmp.Diff(want, back); diff != "" {
				t.Errorf("Unmarshal(golden) mismatch (-want +got):\n%s", diff)
			}
			// And once more: a loaded baseline marshals to the same bytes.
			again := mustMarshal(t, back)
			require.Equal(t, string(data), string(again))
		})
	}
}

func TestMarshalFormat(t *testing.T) {
	t.Parallel()
	got := string(mustMarshal(t, egressd.Baseline{Namespace: "media", App: "recyclarr", Destinations: []egressd.BaselineDestination{
		dest(t, "api.github.com", "443/TCP"),
	}}))
	want := `{
  "apiVersion": "egressd.io/v1",
  "kind": "EgressBaseline",
  "namespace": "media",
  "app": "recyclarr",
  "unbounded": false,
  "destinations": [
    {
      "name": "api.github.com",
      "ports": [
        "443/TCP"
      ]
    }
  ]
}
`
	require.Equal(t, want, got)
	empty := string(mustMarshal(t, egressd.Baseline{Namespace: "media", App: "idle"}))
	require.Contains(t, empty, "\n  \"unbounded\": false,\n  \"destinations\": []\n}\n")
}

func TestMarshalErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   egressd.Baseline
		want string
	}{
		{"bad namespace", egressd.Baseline{Namespace: "../etc", App: "x"}, `invalid namespace "../etc"`},
		{"bad app", egressd.Baseline{Namespace: "media", App: "a/b"}, `invalid app name "a/b"`},
		{"bad name", egressd.Baseline{Namespace: "media", App: "x", Destinations: []egressd.BaselineDestination{dest(t, "exa mple.com", "443/TCP")}}, `invalid destination name "exa mple.com"`},
		{"no ports", egressd.Baseline{Namespace: "media", App: "x", Destinations: []egressd.BaselineDestination{{Name: "example.com"}}}, `destination "example.com" has no ports`},
		{"bad protocol", egressd.Baseline{Namespace: "media", App: "x", Destinations: []egressd.BaselineDestination{{Name: "example.com", Ports: []egressd.Port{{Number: 1, Protocol: "QUIC"}}}}}, `invalid protocol "QUIC"`},
		{"duplicate after case folding", egressd.Baseline{Namespace: "media", App: "x", Destinations: []egressd.BaselineDestination{dest(t, "Example.com", "443/TCP"), dest(t, "example.com.", "80/TCP")}}, `duplicate destination "example.com"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := baseline.Marshal(tt.in)
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.want)
			require.Equal(t, egressd.EINVALID, egressd.ErrorCode(err))
		})
	}
}

func TestUnmarshalErrors(t *testing.T) {
	t.Parallel()
	// head is a valid file start, so that positions below are easy to
	// count: line 6 is the first line after it.
	const head = `{
  "apiVersion": "egressd.io/v1",
  "kind": "EgressBaseline",
  "namespace": "media",
  "app": "recyclarr",
`
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"empty file", ``, `media/recyclarr.json:1:1: invalid JSON: unexpected end of file`},
		{"not an object", `[]`, `media/recyclarr.json:1:1: baseline: want a JSON object, got an array`},
		{"syntax error", head + `  "unbounded": fals
}`, `media/recyclarr.json:6:20: invalid JSON: invalid character '\n' in literal false (expecting 'e')`},
		{"truncated", head + `  "destinations": [`, `media/recyclarr.json:6:20: invalid JSON: unexpected end of file`},
		{"trailing comma", head + `  "unbounded": false,
}`, `media/recyclarr.json:7:1: invalid JSON: invalid character '}' looking for beginning of object key string`},
		{"second value", head + `  "unbounded": false
} {}`, `media/recyclarr.json:7:3: unexpected data after the baseline object: a file holds exactly one baseline`},
		{"trailing garbage", head + `  "unbounded": false
}
,`, `media/recyclarr.json:8:1: unexpected data after the baseline object: a file holds exactly one baseline`},
		{"unknown field", head + `  "unbounded": false,
  "destination": []
}`, `media/recyclarr.json:7:3: unknown field "destination" in baseline: want apiVersion, kind, namespace, app, unbounded, note, pods, destinations`},
		{"repeated field", head + `  "app": "sonarr"
}`, `media/recyclarr.json:6:3: baseline: field "app" appears twice`},
		{"wrong type", head + `  "unbounded": "yes"
}`, `media/recyclarr.json:6:16: unbounded: want true or false, got a string`},
		{"null destinations", head + `  "destinations": null
}`, `media/recyclarr.json:6:19: destinations: want a JSON array, got null`},
		{"missing apiVersion", `{"kind": "EgressBaseline", "namespace": "media", "app": "x"}`, `media/recyclarr.json:1:1: missing field "apiVersion": want "egressd.io/v1"`},
		{"wrong apiVersion", `{
  "apiVersion": "egressd.io/v2",
  "kind": "EgressBaseline", "namespace": "media", "app": "x"}`, `media/recyclarr.json:2:17: apiVersion "egressd.io/v2" is not supported: want "egressd.io/v1"`},
		{"wrong kind", `{"apiVersion": "egressd.io/v1", "kind": "CiliumNetworkPolicy", "namespace": "media", "app": "x"}`, `media/recyclarr.json:1:41: kind "CiliumNetworkPolicy" is not supported: want "EgressBaseline"`},
		{"missing app", `{"apiVersion": "egressd.io/v1", "kind": "EgressBaseline", "namespace": "media"}`, `media/recyclarr.json:1:1: missing field "app"`},
		{"invalid namespace", `{"apiVersion": "egressd.io/v1", "kind": "EgressBaseline",
 "namespace": "../../etc", "app": "x"}`, `media/recyclarr.json:2:15: invalid namespace "../../etc"`},
		{"invalid app", `{"apiVersion": "egressd.io/v1", "kind": "EgressBaseline", "namespace": "media",
"app": "-x"}`, `media/recyclarr.json:2:8: invalid app name "-x" in namespace media`},
		{"invalid name", head + `  "destinations": [
    {"name": "api.github.com", "ports": ["443/TCP"]},
    {"name": "bad_name!", "ports": ["443/TCP"]}
  ]
}`, `media/recyclarr.json:8:14: invalid destination name "bad_name!": want a DNS name (api.example.com), an IP address, or a Cilium matchPattern (*.example.com, **.example.com)`},
		{"empty label in pattern", head + `  "destinations": [{"name": "a.**x.**.com.*.", "ports": ["443/TCP"]}, {"name": "*..example.com", "ports": ["1"]}]
}`, `media/recyclarr.json:6:80: invalid destination name "*..example.com"`},
		{"ip with zone", head + `  "destinations": [{"name": "fe80::1%eth0", "ports": ["443/TCP"]}]
}`, `media/recyclarr.json:6:29: invalid destination name "fe80::1%eth0"`},
		{"duplicate name", head + `  "destinations": [
    {"name": "api.github.com", "ports": ["443/TCP"]},
    {"name": "API.github.com.", "ports": ["80/TCP"]}
  ]
}`, `media/recyclarr.json:8:14: destination "api.github.com" is listed twice (also at 7:14): list each name once with all its ports`},
		{"bad port", head + `  "destinations": [
    {"name": "api.github.com", "ports": ["443/TCP", "https"]}
  ]
}`, `media/recyclarr.json:7:53: invalid port "https": want NUMBER/PROTOCOL such as 443/TCP, with a number from 0 to 65535`},
		{"port out of range", head + `  "destinations": [{"name": "a.com", "ports": ["65536/TCP"]}]
}`, `media/recyclarr.json:6:48: invalid port "65536/TCP"`},
		{"bad protocol", head + `  "destinations": [{"name": "a.com", "ports": ["443/QUIC"]}]
}`, `media/recyclarr.json:6:48: invalid protocol in port "443/QUIC"`},
		{"port as number", head + `  "destinations": [{"name": "a.com", "ports": [443]}]
}`, `media/recyclarr.json:6:48: destinations[0].ports[0]: want a string, got a number`},
		{"no ports", head + `  "destinations": [
    {"name": "a.com", "ports": []}
  ]
}`, `media/recyclarr.json:7:5: destinations[0] (a.com): no ports: list the ports the app uses, such as "443/TCP", or "0/ANY" for any port`},
		{"missing name", head + `  "destinations": [{"ports": ["443/TCP"]}]
}`, `media/recyclarr.json:6:20: destinations[0]: missing field "name"`},
		{"unknown destination field", head + `  "destinations": [{"name": "a.com", "port": "443/TCP"}]
}`, `media/recyclarr.json:6:38: unknown field "port" in destinations[0]: want name, ports, note`},
		{"deep nesting", head + `  "note": ` + strings.Repeat("[", 100000) + `
}`, `media/recyclarr.json:6:10010: invalid JSON: invalid character '[' exceeded max depth`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := baseline.Unmarshal([]byte(tt.in), "media/recyclarr.json")
			require.Error(t, err)
			require.True(t, strings.HasPrefix(err.Error(), tt.want), "error\n  %s\nwant prefix\n  %s", err, tt.want)
			require.Equal(t, egressd.EINVALID, egressd.ErrorCode(err))
		})
	}
}

func TestUnmarshalAccepts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want egressd.Baseline
	}{
		{
			name: "minimal",
			in:   `{"apiVersion":"egressd.io/v1","kind":"EgressBaseline","namespace":"media","app":"x"}`,
			want: egressd.Baseline{Namespace: "media", App: "x"},
		},
		{
			name: "hand written",
			in: `{
  "kind": "EgressBaseline", "apiVersion": "egressd.io/v1",
  "app": "x", "namespace": "media", "note": "mine", "unbounded": true,
  "destinations": [
    {"ports": ["443", "0443/tcp", "53/udp"], "name": "B.Example.COM."},
    {"name": "*.Example.com", "ports": ["443/TCP"], "note": "CDN"}
  ]
}

`,
			want: egressd.Baseline{Namespace: "media", App: "x", Note: "mine", Unbounded: true, Destinations: []egressd.BaselineDestination{
				noted(t, "CDN", "*.example.com", "443/TCP"),
				dest(t, "b.example.com", "53/UDP", "443/TCP"),
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := baseline.Unmarshal([]byte(tt.in), "x.json")
			require.NoError(t, err)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Unmarshal mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestMarshalMatchesEncodingJSON holds the hand-written encoder to
// encoding/json's output, escaping included.
func TestMarshalMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	notes := []string{
		"",
		"plain",
		`quotes " and \ backslash`,
		"<html> & ampersand",
		"tab\tnewline\ncarriage\rbell\a backspace\b formfeed\f nul\x00 del\x7f",
		"invalid utf-8 \xff\xfe",
		"line separators \u2028 \u2029",
		"ünïcödé ✓ 🙂",
	}
	for _, note := range notes {
		b := egressd.Baseline{Namespace: "media", App: "x", Note: note, Unbounded: note == "plain", Destinations: []egressd.BaselineDestination{
			noted(t, note, "a.example.com", "443/TCP", "0/ANY"),
			dest(t, "b.example.com", "53/UDP"),
		}}
		got := mustMarshal(t, b)
		want, err := baseline.MarshalStd(b)
		require.NoError(t, err)
		require.Equal(t, string(want), string(got), "note %q", note)
		back, err := baseline.Unmarshal(got, "x.json")
		require.NoError(t, err)
		require.Equal(t, string(got), string(mustMarshal(t, back)))
	}
}
