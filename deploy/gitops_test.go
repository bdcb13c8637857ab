package deploy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/egressd/egressd/postgres/pgtest"
)

// TestGitOpsScript runs gitops/egress-baselines.sh as the CronJob does,
// with the real egressd binary, a real PostgreSQL holding a replayed week of
// home-lab traffic, and a real Git repository as the remote.
func TestGitOpsScript(t *testing.T) {
	t.Parallel()
	requireTool(t, "git", "git")
	script, err := filepath.Abs("gitops/egress-baselines.sh")
	require.NoError(t, err)
	bin := egressdBinary(t)
	dsn := string(pgtest.URL(t))
	// The bundled week starts 2026-11-01: at its end, every app has a
	// baseline.
	const at = "2026-11-08T00:00:00Z"
	run(t, 0, "", nil, bin, "replay", "--database-url", dsn, "--log-level", "warn",
		"../collector/flowgen/testdata/homelab-week.jsonl.gz")

	tmp := t.TempDir()
	home := filepath.Join(tmp, "home") // no operator's ~/.gitconfig
	require.NoError(t, os.Mkdir(home, 0o755))
	gitEnv := []string{"HOME=" + home, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=test", "GIT_AUTHOR_EMAIL=test@example.org",
		"GIT_COMMITTER_NAME=test", "GIT_COMMITTER_EMAIL=test@example.org"}
	remote := filepath.Join(tmp, "gitops.git")
	run(t, 0, "", gitEnv, "git", "init", "--quiet", "--bare", "--initial-branch=main", remote)
	seed := filepath.Join(tmp, "seed")
	run(t, 0, "", gitEnv, "git", "clone", "--quiet", remote, seed)
	require.NoError(t, os.WriteFile(filepath.Join(seed, "README.md"), []byte("GitOps repository\n"), 0o644))
	run(t, 0, seed, gitEnv, "git", "add", "README.md")
	run(t, 0, seed, gitEnv, "git", "commit", "--quiet", "-m", "init")
	run(t, 0, seed, gitEnv, "git", "push", "--quiet", "origin", "HEAD:main")

	const dir = "clusters/homelab/egress-baselines"
	ciEnv := append(gitEnv[:len(gitEnv):len(gitEnv)], "DATABASE_URL="+dsn, "EGRESSD="+bin, "BASELINE_DIR="+dir, "BASELINE_AT="+at)
	env := append(ciEnv[:len(ciEnv):len(ciEnv)], "GIT_REPO=file://"+remote)
	ref := func(branch string) string {
		return strings.TrimSpace(run(t, 0, "", gitEnv, "git", "--git-dir", remote, "rev-parse", "refs/heads/"+branch))
	}

	// check: main has no baselines yet, so the live ones drifted.
	out := run(t, 1, tmp, env, script, "check")
	require.Contains(t, out, "media/recyclarr")
	require.Contains(t, out, "egress-baselines: drift")

	// sync: the export is committed on top of main and pushed for review.
	out = run(t, 0, tmp, env, script)
	require.Contains(t, out, "pushed")
	pushed := ref("egress-baselines")
	parent := strings.TrimSpace(run(t, 0, "", gitEnv, "git", "--git-dir", remote, "rev-parse", pushed+"^"))
	require.Equal(t, ref("main"), parent, "the review branch is main plus one commit")

	// The pushed files are what `egressd baseline export` writes.
	want := t.TempDir()
	run(t, 0, "", nil, bin, "baseline", "export", "--database-url", dsn, "--dir", want, "--at", at)
	var files []string
	require.NoError(t, filepath.WalkDir(want, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(want, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return err
	}))
	require.Contains(t, files, "media/recyclarr.json")
	tree := run(t, 0, "", gitEnv, "git", "--git-dir", remote, "ls-tree", "-r", "--name-only", pushed, "--", dir)
	require.ElementsMatch(t, files, strings.Fields(strings.ReplaceAll(tree, dir+"/", "")))
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(want, f))
		require.NoError(t, err)
		got := run(t, 0, "", gitEnv, "git", "--git-dir", remote, "show", pushed+":"+dir+"/"+f)
		require.Equal(t, string(b), got, f)
	}

	// A second run on the same day leaves the open review branch alone.
	out = run(t, 0, tmp, env, script, "sync")
	require.Contains(t, out, "already holds this export")
	require.Equal(t, pushed, ref("egress-baselines"))

	// Against the review branch, nothing drifted.
	out = run(t, 0, tmp, append(env, "GIT_BASE_BRANCH=egress-baselines"), script, "check")
	require.Contains(t, out, "no drift")

	// Committing straight to main, then main has no drift either.
	run(t, 0, tmp, append(env, "GIT_PUSH_BRANCH=main"), script)
	run(t, 0, tmp, env, script, "check")

	// In a CI job's checkout (no GIT_REPO), check works on the current
	// directory.
	checkout := filepath.Join(tmp, "checkout")
	run(t, 0, "", gitEnv, "git", "clone", "--quiet", remote, checkout)
	out = run(t, 0, checkout, ciEnv, script, "check")
	require.Contains(t, out, "no drift")

	// The pull request check: the committed export allows everything the
	// window saw; a file narrowed in a pull request fails, naming the app
	// and the destination, in the log and in the report to post.
	review := filepath.Join(tmp, "review.md")
	reviewEnv := append(ciEnv[:len(ciEnv):len(ciEnv)], "REVIEW_OUTPUT="+review)
	out = run(t, 0, checkout, reviewEnv, script, "review")
	require.Contains(t, out, "allows everything the window saw")
	report, err := os.ReadFile(review)
	require.NoError(t, err)
	require.Contains(t, string(report), "these baselines allow everything")
	file := filepath.Join(checkout, dir, "media", "recyclarr.json")
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(file, []byte(strings.Replace(string(b), `"api.github.com"`, `"api.gitlab.com"`, 1)), 0o644))
	out = run(t, 1, checkout, reviewEnv, script, "review")
	require.Contains(t, out, "media/recyclarr: 1 destinations would be novel")
	report, err = os.ReadFile(review)
	require.NoError(t, err)
	require.Contains(t, string(report), "would have raised alerts and policy drops")
	require.Regexp(t, "```\n"+`media/recyclarr: 1 destinations would be novel, and dropped by its policy:\n  DESTINATION .*\n  api\.github\.com +443/TCP`, string(report))

	// A failing egressd is an error (2), not drift.
	run(t, 2, tmp, append(env, "DATABASE_URL=postgres://nobody@127.0.0.1:1/none"), script, "check")
}
