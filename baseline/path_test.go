package baseline_test

import (
	"path/filepath"
	"testing"

	"github.com/egressd/egressd"
	"github.com/egressd/egressd/baseline"
	"github.com/stretchr/testify/require"
)

var pathTests = []struct {
	name      string
	namespace string
	app       string
	want      string // relative to dir; "" when rejected
}{
	{"plain", "media", "recyclarr", "media/recyclarr.json"},
	{"dots and case in app", "media", "Sonarr_v4.x", "media/Sonarr_v4.x.json"},
	{"app with double dot inside", "media", "a..b", "media/a..b.json"},
	{"host app", egressd.HostNamespace, "node-1.example.com", "host/node-1.example.com.json"},
	{"dot dot app", "media", "..", ""},
	{"dot dot namespace", "..", "x", ""},
	{"dot app", "media", ".", ""},
	{"hidden app", "media", ".git", ""},
	{"traversal in app", "media", "../../etc/passwd", ""},
	{"traversal in namespace", "../etc", "passwd", ""},
	{"slash in app", "media", "a/b", ""},
	{"backslash in app", "media", `a\b`, ""},
	{"absolute app", "media", "/etc/passwd", ""},
	{"absolute namespace", "/etc", "passwd", ""},
	{"nul in app", "media", "a\x00b", ""},
	{"nul in namespace", "me\x00dia", "x", ""},
	{"unicode app", "media", "rëcyclarr", ""},
	{"unicode slash lookalike", "media", "a\u2215b", ""},
	{"upper-case namespace", "Media", "x", ""},
	{"empty namespace", "", "x", ""},
	{"empty app", "media", "", ""},
	{"app too long", "media", string(make([]byte, 251)), ""},
	{"newline", "media", "a\nb", ""},
	{"trailing dash", "media", "a-", ""},
}

func TestPath(t *testing.T) {
	t.Parallel()
	for _, dir := range []string{"/srv/baselines", "rel/dir", ".", "/"} {
		for _, tt := range pathTests {
			t.Run(dir+" "+tt.name, func(t *testing.T) {
				t.Parallel()
				got, err := baseline.Path(dir, tt.namespace, tt.app)
				if tt.want == "" {
					require.Error(t, err)
					require.Equal(t, egressd.EINVALID, egressd.ErrorCode(err))
					require.Empty(t, got)
					return
				}
				require.NoError(t, err)
				require.Equal(t, filepath.Join(dir, filepath.FromSlash(tt.want)), got)
				checkPathInside(t, dir, tt.namespace, tt.app)
			})
		}
	}
}
