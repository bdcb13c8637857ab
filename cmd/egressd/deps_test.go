package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestServerLinksNoTestCode: the egressd binary links no test code: not
// the testing package, not the test fixtures (amtest, pgtest, promtest),
// not client_golang's testutil. The demo's simulator (hubbletest, flowgen)
// and the throwaway PostgreSQL starter (pgserver) are product code and
// may be linked; the benchmark harness is cmd/egressd-bench.
func TestServerLinksNoTestCode(t *testing.T) {
	t.Parallel()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").CombinedOutput()
	require.NoError(t, err, "go list -deps: %s", out)
	deps := strings.Fields(string(out))
	require.Contains(t, deps, "github.com/egressd/egressd/cmd/egressd", "go list listed something else")
	for _, p := range deps {
		switch {
		case p == "testing", strings.HasPrefix(p, "testing/"),
			p == "net/http/httptest",
			strings.HasSuffix(p, "/amtest"), strings.HasSuffix(p, "/pgtest"), strings.HasSuffix(p, "/promtest"),
			strings.Contains(p, "/prometheus/testutil"),
			strings.HasPrefix(p, "github.com/stretchr/testify"):
			t.Errorf("the egressd binary links test code: %s (go list -deps ./cmd/egressd)", p)
		}
	}
}
