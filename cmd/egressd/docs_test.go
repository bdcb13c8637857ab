package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const repoRoot = "../.."

// docFiles are the user documentation: the README and docs/*.md.
func docFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	return append([]string{filepath.Join(repoRoot, "README.md")}, files...)
}

var (
	mdLink    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	mdHeading = regexp.MustCompile(`(?m)^#{1,6} (.+)$`)
	mdFence   = regexp.MustCompile("(?ms)^```[a-z]*\n(.*?)^```")
)

// anchors returns the GitHub anchors of a Markdown file's headings.
func anchors(md string) map[string]bool {
	out := map[string]bool{}
	for _, m := range mdHeading.FindAllStringSubmatch(mdFence.ReplaceAllString(md, ""), -1) {
		a := strings.Map(func(r rune) rune {
			switch {
			case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
				return r
			case r == ' ':
				return '-'
			}
			return -1
		}, strings.ToLower(m[1]))
		out[a] = true
	}
	return out
}

// TestDocLinksResolve: every relative link in the README and docs/ names a
// file or directory of the repository (and a heading of it, after #), and
// nothing points outside the repository.
func TestDocLinksResolve(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs(repoRoot)
	require.NoError(t, err)
	for _, f := range docFiles(t) {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		md := string(b)
		for _, bad := range []string{"../shared", "hubble-relay.kube-system:4245", "ghcr.io/egressd/egressd:v0.1.0"} {
			require.NotContains(t, md, bad, "%s cites something users do not have", f)
		}
		// A document named in capitals (README.md, BENCHMARKS.md) is one
		// of the repository's, linked or not.
		for _, name := range regexp.MustCompile(`\b[A-Z][A-Z_]*\.md\b`).FindAllString(md, -1) {
			found, err := filepath.Glob(filepath.Join(repoRoot, "*", name))
			require.NoError(t, err)
			if _, err := os.Stat(filepath.Join(repoRoot, name)); err != nil && len(found) == 0 {
				require.Failf(t, "cites a document users do not have", "%s: %s", f, name)
			}
		}
		for _, m := range mdLink.FindAllStringSubmatch(mdFence.ReplaceAllString(md, ""), -1) {
			link := m[1]
			if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(link, "#")
			target := f
			if path != "" {
				target = filepath.Join(filepath.Dir(f), path)
			}
			abs, err := filepath.Abs(target)
			require.NoError(t, err)
			require.True(t, strings.HasPrefix(abs, root+string(filepath.Separator)), "%s: link %s leaves the repository", f, link)
			_, err = os.Stat(target)
			require.NoError(t, err, "%s: link %s", f, link)
			if anchor != "" {
				tb, err := os.ReadFile(target)
				require.NoError(t, err, "%s: link %s", f, link)
				require.True(t, anchors(string(tb))[anchor], "%s: link %s: no heading for #%s", f, link, anchor)
			}
		}
	}
}

// shellWords splits a shell command line on blanks, keeping quoted words
// whole (without their quotes).
func shellWords(line string) []string {
	var words []string
	var cur strings.Builder
	quote, in := rune(0), false
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

// readmeCommands returns the egressd and make command lines of the README's
// shell blocks, continuation lines joined.
func readmeCommands(t *testing.T) (egressdCmds, makeTargets [][]string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	require.NoError(t, err)
	for _, m := range regexp.MustCompile("(?ms)^```sh\n(.*?)^```").FindAllStringSubmatch(string(b), -1) {
		block := strings.ReplaceAll(m[1], "\\\n", " ")
		for _, line := range strings.Split(block, "\n") {
			line, _, _ = strings.Cut(line, "#")
			for _, cmd := range strings.Split(line, "&&") {
				words := shellWords(cmd)
				for len(words) > 0 && regexp.MustCompile(`^[A-Z_]+=`).MatchString(words[0]) {
					words = words[1:] // VAR=value before the command
				}
				switch {
				case len(words) == 0:
				case words[0] == "egressd" || words[0] == "bin/egressd":
					egressdCmds = append(egressdCmds, words[1:])
				case words[0] == "make":
					makeTargets = append(makeTargets, words[1:])
				}
			}
		}
	}
	return egressdCmds, makeTargets
}

// TestReadmeCommandsExist: every egressd command the README shows exists
// and takes the flags written with it, and every make target exists; the
// walkthrough shows demo, serve and the API.
func TestReadmeCommandsExist(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	require.NoError(t, err)
	require.LessOrEqual(t, strings.Count(string(b), "\n"), 250, "the README is read to the end")

	cmds, targets := readmeCommands(t)
	seen := map[string]bool{}
	for _, args := range cmds {
		require.NotEmpty(t, args)
		seen[args[0]] = true
		// Parsing the flags as written, then --help: an unknown flag or a
		// bad value fails before the help is printed.
		r := run(t, nil, append(append([]string{}, args...), "--help")...)
		require.Equal(t, 0, r.code, "README: egressd %s: %s", strings.Join(args, " "), r.stderr)
	}
	for _, want := range []string{"demo", "serve"} {
		require.True(t, seen[want], "the walkthrough shows egressd %s", want)
	}
	mk, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
	require.NoError(t, err)
	for _, tg := range targets {
		require.NotEmpty(t, tg)
		require.Regexp(t, `(?m)^`+regexp.QuoteMeta(tg[0])+`:`, string(mk), "README: make %s", tg[0])
	}
	require.Contains(t, string(b), "/api/v1/apps/media/recyclarr/accepted", "the walkthrough accepts through the API")
}

// flagHelp is one flag as a command's --help lists it.
type flagHelp struct {
	name, def string // def: the help's default, "" when it shows none
}

var (
	helpFlagLine = regexp.MustCompile(`^  --([a-z0-9-]+)`)
	helpDefault  = regexp.MustCompile(`\(default ([^()]*)\)`)
)

// helpFlags returns the flags egressd ARGS --help lists, with the first
// default each one's usage shows.
func helpFlags(t *testing.T, args ...string) []flagHelp {
	t.Helper()
	r := run(t, nil, append(args, "--help")...)
	require.Equal(t, 0, r.code, r.stderr)
	var out []flagHelp
	for _, line := range strings.Split(r.stdout, "\n") {
		if m := helpFlagLine.FindStringSubmatch(line); m != nil {
			out = append(out, flagHelp{name: m[1]})
		} else if len(out) > 0 && out[len(out)-1].def == "" {
			if d := helpDefault.FindStringSubmatch(line); d != nil {
				out[len(out)-1].def = d[1]
			}
		}
	}
	require.NotEmpty(t, out, "egressd %s --help lists no flags", strings.Join(args, " "))
	return out
}

// docSections returns configuration.md's text by "## " heading.
func docSections(md string) map[string]string {
	out := map[string]string{}
	for _, s := range strings.Split("\n"+md, "\n## ")[1:] {
		title, body, _ := strings.Cut(s, "\n")
		out[title] = body
	}
	return out
}

// unmark drops the quotes and backticks that differ between --help and
// Markdown.
func unmark(s string) string { return strings.NewReplacer("`", "", `"`, "").Replace(s) }

// TestConfigurationDocumentsEveryFlag: configuration.md documents every
// flag of every command in a table of the command's section, with the
// default --help shows; every flag it names exists; its Environment table
// lists exactly the variables the commands read.
func TestConfigurationDocumentsEveryFlag(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs", "configuration.md"))
	require.NoError(t, err)
	md := string(b)
	sections := docSections(md)

	// rows returns the flag table rows of sections: flag -> default column.
	row := regexp.MustCompile("(?m)^ *\\| ((?:`--[a-z0-9-]+`(?:, )?)+) \\| ([^|]*) \\|")
	rows := func(titles ...string) map[string]string {
		out := map[string]string{}
		for _, title := range titles {
			body, ok := sections[title]
			require.True(t, ok, "configuration.md has no section %q", title)
			for _, m := range row.FindAllStringSubmatch(body, -1) {
				for _, f := range strings.Split(m[1], ", ") {
					out[strings.Trim(f, "`-")] = m[2]
				}
			}
		}
		return out
	}
	commands := []struct {
		args     []string
		sections []string // where its flags are documented
	}{
		{[]string{"serve"}, []string{"serve"}},
		{[]string{"migrate"}, []string{"Conventions"}},
		{[]string{"replay"}, []string{"replay", "serve"}},
		{[]string{"accept"}, []string{"accept"}},
		{[]string{"baseline", "export"}, []string{"baseline export and diff"}},
		{[]string{"baseline", "diff"}, []string{"baseline export and diff"}},
		{[]string{"baseline", "check"}, []string{"baseline check"}},
		{[]string{"baseline", "policy"}, []string{"baseline policy"}},
		{[]string{"demo"}, []string{"demo"}},
	}
	// Defaults --help cannot show as the docs say them.
	docDefault := map[string]string{
		"by":           "the user running the command",
		"database-url": "$DATABASE_URL",
	}
	exists := map[string]bool{}
	for _, c := range commands {
		doc := rows(append(c.sections, "Conventions")...)
		for _, f := range helpFlags(t, c.args...) {
			exists[f.name] = true
			where := fmt.Sprintf("egressd %s --%s", strings.Join(c.args, " "), f.name)
			col, ok := doc[f.name]
			require.True(t, ok, "configuration.md: %s has no row in the flag table of %v", where, c.sections)
			want := f.def
			if d, ok := docDefault[f.name]; ok {
				want = d
			}
			want, _, _ = strings.Cut(want, ";") // what follows is not the default
			require.Contains(t, unmark(col), unmark(want), "configuration.md: %s: the default --help shows", where)
		}
	}
	for _, m := range regexp.MustCompile(`--([a-z][a-z0-9-]*)`).FindAllStringSubmatch(md, -1) {
		switch m[1] {
		case "help", "version", "name": // egressd --version; "--name value" is the syntax
			continue
		case "tofqdns-min-ttl", "follow", "since": // Cilium's and hubble's flags
			continue
		case "only", "dry-run": // egressd-bench's, kubectl's
			continue
		}
		require.True(t, exists[m[1]], "configuration.md names --%s, which no command has", m[1])
	}

	// The variables the commands read, through CLI.Getenv.
	read := map[string]bool{}
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range regexp.MustCompile(`Getenv\("([A-Z_]+)"\)`).FindAllStringSubmatch(string(src), -1) {
			read[m[1]] = true
		}
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Z_]+)` \\|").FindAllStringSubmatch(sections["Environment"], -1) {
		documented[m[1]] = true
	}
	require.Equal(t, read, documented, "configuration.md's Environment table lists the variables the commands read")
}

// TestReadmeListsEveryDoc: the README's documentation table links every
// page of docs/.
func TestReadmeListsEveryDoc(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	require.NoError(t, err)
	files, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		doc := "docs/" + filepath.Base(f)
		require.Contains(t, string(b), "| ["+doc+"]("+doc+") |", "README.md's documentation table lists %s", doc)
	}
}
