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

// FuzzUnmarshal: Unmarshal never panics, rejects with a located EINVALID
// error, and whatever it accepts marshals and parses back to the same value
// and the same bytes.
func FuzzUnmarshal(f *testing.F) {
	goldens, err := filepath.Glob(filepath.Join("testdata", "marshal", "*.json"))
	require.NoError(f, err)
	withPods, err := filepath.Glob(filepath.Join("testdata", "pods", "*.json"))
	require.NoError(f, err)
	withSuggestions, err := filepath.Glob(filepath.Join("testdata", "suggest", "*.json"))
	require.NoError(f, err)
	for _, path := range append(append(goldens, withPods...), withSuggestions...) {
		data, err := os.ReadFile(path)
		require.NoError(f, err)
		f.Add(data)
	}
	for _, s := range []string{
		``,
		`{}`,
		`{"apiVersion":"egressd.io/v1","kind":"EgressBaseline","namespace":"media","app":"x"}`,
		`{"apiVersion":"egressd.io/v1","kind":"EgressBaseline","namespace":"media","app":"x","unbounded":true,"note":"<&>",
		  "destinations":[{"name":"B.example.com.","ports":["443","0/any","443/TCP"],"note":"n"},{"name":"**.x.io","ports":["0/ANY"]}]}`,
		`{"apiVersion":"egressd.io/v1","kind":"EgressBaseline","namespace":"media","app":"x","destinations":[{"name":"fe80::1%eth0","ports":["1"]}]}`,
		`{"apiVersion":"egressd.io/v1","kind":"EgressBaseline","namespace":"media","app":"x","app":"y"}`,
		`{"apiVersion":"egressd.io/v1"} {}`,
		`{"apiVersion":"egressd.io/v1","kind":"EgressBaseline","namespace":"media","app":"x","pods":{"selector":{"a":"b","a/b":""},"unselectable":"u","dns":[{"kind":"external","address":"::ffff:1.2.3.4"},{"kind":"cluster"}]}}`,
		"{\"apiVersion\":\"egressd.io/v1\",\"kind\":\"EgressBaseline\",\"namespace\":\"media\",\"app\":\"x\",\"note\":\"\xff\u2028\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := baseline.Unmarshal(data, "fuzz.json")
		// The fast path for canonical files agrees with the strict decoder.
		strict, strictErr := baseline.UnmarshalStrict(data, "fuzz.json")
		if (err == nil) != (strictErr == nil) {
			t.Fatalf("Unmarshal error %v, strict decoder error %v", err, strictErr)
		}
		if err != nil {
			require.Equal(t, strictErr.Error(), err.Error())
			require.True(t, strings.HasPrefix(err.Error(), "fuzz.json:"), "error does not name the file: %v", err)
			require.Equal(t, egressd.EINVALID, egressd.ErrorCode(err), "%v", err)
			return
		}
		if diff := cmp.Diff(strict, b); diff != "" {
			t.Fatalf("fast path and strict decoder disagree (-strict +fast):\n%s", diff)
		}
		out, err := baseline.Marshal(b)
		require.NoError(t, err, "Unmarshal accepted what Marshal rejects")
		std, err := baseline.MarshalStd(b)
		require.NoError(t, err)
		require.Equal(t, string(std), string(out), "Marshal differs from encoding/json")
		b2, err := baseline.Unmarshal(out, "fuzz.json")
		require.NoError(t, err, "Unmarshal rejected what Marshal wrote:\n%s", out)
		if diff := cmp.Diff(b, b2); diff != "" {
			t.Fatalf("round trip mismatch (-want +got):\n%s", diff)
		}
		out2, err := baseline.Marshal(b2)
		require.NoError(t, err)
		require.Equal(t, string(out), string(out2))
	})
}

// FuzzMatchName: the label matcher agrees with the regular-expression
// reference (Cilium's way), and a Matcher agrees with MatchName.
func FuzzMatchName(f *testing.F) {
	for _, tt := range matchNameTests {
		f.Add(tt.pattern, tt.name)
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		got := baseline.MatchName(pattern, name)
		want := refMatchName(pattern, name)
		if got != want {
			t.Fatalf("MatchName(%q, %q) = %v, reference says %v", pattern, name, got, want)
		}
		if !egressd.ValidPattern(strings.TrimSuffix(pattern, ".")) {
			return
		}
		m := baseline.NewMatcher(egressd.Baseline{Namespace: "ns", App: "app", Destinations: []egressd.BaselineDestination{
			{Name: pattern, Ports: []egressd.Port{{Number: 443, Protocol: egressd.ProtoTCP}}},
		}})
		if m.Match(name, 443, egressd.ProtoTCP) != got {
			t.Fatalf("Matcher with %q: Match(%q) = %v, MatchName says %v", pattern, name, !got, got)
		}
	})
}

// FuzzPath: whatever the names, a path Path accepts is a file two levels
// inside dir.
func FuzzPath(f *testing.F) {
	for _, tt := range pathTests {
		f.Add(tt.namespace, tt.app)
	}
	f.Fuzz(func(t *testing.T, namespace, app string) {
		checkPathInside(t, "/srv/baselines", namespace, app)
		checkPathInside(t, "rel/dir", namespace, app)
	})
}

func checkPathInside(t *testing.T, dir, namespace, app string) {
	t.Helper()
	p, err := baseline.Path(dir, namespace, app)
	if err != nil {
		require.Equal(t, egressd.EINVALID, egressd.ErrorCode(err))
		return
	}
	rel, err := filepath.Rel(dir, p)
	require.NoError(t, err)
	require.Equal(t, namespace+string(filepath.Separator)+app+".json", rel)
	require.False(t, rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)), "%q escapes %q", p, dir)
	require.Equal(t, filepath.Clean(dir), filepath.Dir(filepath.Dir(p)))
	require.False(t, filepath.IsAbs(rel))
}
