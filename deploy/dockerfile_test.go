package deploy_test

import (
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDockerfile checks the image's build without a Docker engine: the
// stages, user and entrypoint, that the Go version matches go.mod, and that
// -X main.version reaches the binary's `egressd version`.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("Dockerfile")
	require.NoError(t, err)
	df := string(b)
	var from []string
	for _, m := range regexp.MustCompile(`(?m)^FROM\s+(?:--platform=\S+\s+)?(\S+)`).FindAllStringSubmatch(df, -1) {
		from = append(from, m[1])
	}
	require.Equal(t, []string{"golang:${GO_VERSION}", "gcr.io/distroless/static-debian12:nonroot"}, from)

	gomod, err := os.ReadFile("../go.mod")
	require.NoError(t, err)
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(string(gomod))
	require.NotNil(t, goVersion)
	require.Contains(t, df, "ARG GO_VERSION="+goVersion[1]+"\n", "the builder's Go is go.mod's")

	for _, want := range []string{
		"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}"`, "./cmd/egressd",
		"\nUSER 65532:65532\n", "\nEXPOSE 9090\n", "\nENTRYPOINT [\"/egressd\"]\n", "\nCMD [\"serve\"]\n",
	} {
		require.Contains(t, df, want)
	}
	// The last stage is the image: distroless, the user, then the command.
	last := df[strings.LastIndex(df, "\nFROM "):]
	require.Contains(t, last, "COPY --from=build /out/egressd /egressd")
	require.Contains(t, last, "USER 65532")

	bin := egressdBinary(t) // built with -X main.version=deploy-test
	require.Regexp(t, `^egressd deploy-test \(commit \S+, go1\.\S+, \S+/\S+\)\n$`, run(t, 0, "", nil, bin, "version"))
}

// TestDockerignore checks that ../.dockerignore keeps what `go build
// ./cmd/egressd` reads in the image build: go.mod, go.sum and the Go and
// embedded files of every package of this module that egressd imports.
func TestDockerignore(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../.dockerignore")
	require.NoError(t, err)
	var patterns []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		// ignored() implements only these forms of Docker's syntax.
		require.False(t, strings.HasPrefix(l, "!"), "exception %q: teach ignored() about it", l)
		require.False(t, strings.Contains(strings.TrimPrefix(l, "**/"), "**"), "pattern %q: teach ignored() about it", l)
		patterns = append(patterns, l)
	}

	out := run(t, 0, "..", nil, "go", "list", "-deps", "-f",
		`{{if .Module}}{{if eq .Module.Path "github.com/egressd/egressd"}}{{.Dir}}{{range .GoFiles}} {{.}}{{end}}{{range .EmbedFiles}} {{.}}{{end}}{{end}}{{end}}`,
		"./cmd/egressd")
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	needed := []string{"go.mod", "go.sum"}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		dir, err := filepath.Rel(root, f[0])
		require.NoError(t, err)
		for _, name := range f[1:] {
			needed = append(needed, path.Join(filepath.ToSlash(dir), name))
		}
	}
	require.Contains(t, needed, "cmd/egressd/main.go")
	sql := false
	for _, f := range needed {
		sql = sql || strings.HasPrefix(f, "migrations/") && strings.HasSuffix(f, ".sql")
	}
	require.True(t, sql, "the embedded migrations are among the files egressd needs: %v", needed)
	for _, f := range needed {
		require.False(t, ignored(patterns, f), ".dockerignore excludes %s, which the image build needs", f)
	}
	for _, f := range []string{".git/config", "bin/egressd", "deploy/Dockerfile", "collector/flowgen/testdata/homelab-week.jsonl.gz", "collector/decode_test.go"} {
		require.True(t, ignored(patterns, f), ".dockerignore keeps %s out of the build context", f)
	}
}

// ignored reports whether Docker leaves file (slash-separated, relative to
// the context) out of the build context: a pattern matches the file or one
// of its parent directories; a leading **/ matches at any depth.
func ignored(patterns []string, file string) bool {
	parts := strings.Split(file, "/")
	for _, p := range patterns {
		anyDepth := strings.HasPrefix(p, "**/")
		p = strings.TrimPrefix(p, "**/")
		for end := 1; end <= len(parts); end++ {
			starts := []int{0}
			if anyDepth {
				starts = starts[:0]
				for s := 0; s < end; s++ {
					starts = append(starts, s)
				}
			}
			for _, s := range starts {
				if ok, _ := path.Match(p, strings.Join(parts[s:end], "/")); ok {
					return true
				}
			}
		}
	}
	return false
}
