package httpapi_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoStorageImports keeps the API a consumer of the interfaces it
// declares: it reaches storage through the root package's read models, so
// neither egressd's postgres package nor pgx may be among its dependencies.
func TestNoStorageImports(t *testing.T) {
	t.Parallel()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list the package's dependencies: %v", err)
	}
	out, err := exec.CommandContext(t.Context(), goTool, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for dep := range strings.FieldsSeq(string(out)) {
		if dep == "github.com/egressd/egressd/postgres" || strings.HasPrefix(dep, "github.com/jackc/") {
			t.Errorf("httpapi depends on %s: declare what a handler needs as an interface over root-package types instead", dep)
		}
	}
}
