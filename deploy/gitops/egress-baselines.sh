#!/bin/sh
# egress-baselines: the GitOps job of egressd. It compares the live egress
# baselines in egressd's database with the files committed in a Git
# repository and, when they drifted, exports the new files, commits them and
# pushes the commit for review.
#
#   egress-baselines.sh [sync]   diff; on drift export, commit, push
#   egress-baselines.sh check    diff only: exit 0 no drift, 1 drift, 2 error
#   egress-baselines.sh review   the pull request check of a baseline change:
#                                egressd baseline check on the checkout; exit
#                                0 when the files allow everything the window
#                                saw, 1 when something would be novel or
#                                dropped (listed per app), 2 on error; with
#                                REVIEW_OUTPUT, the report is also written
#                                there as Markdown, to post for the reviewer
#
# What it runs (deploy/README.md, "GitOps workflow"):
#
#   egressd baseline diff   --dir "$BASELINE_DIR" --at "$BASELINE_AT" --window "$BASELINE_WINDOW"
#   egressd baseline export --dir "$BASELINE_DIR" --at "$BASELINE_AT" --window "$BASELINE_WINDOW"
#   egressd baseline check  --dir "$BASELINE_DIR" --at "$BASELINE_AT" --window "$BASELINE_WINDOW" (review)
#   git commit; git push
#
# Environment:
#   DATABASE_URL      egressd's PostgreSQL (egressd reads it; required)
#   GIT_REPO          URL of the GitOps repository to clone; when unset, the
#                     current directory must be a checkout of it (a CI job)
#   GIT_BASE_BRANCH   branch the baselines are compared with (default main)
#   GIT_PUSH_BRANCH   branch the commit is pushed to (default
#                     egress-baselines; it is rewritten on every run, so
#                     one pull request from it always shows the latest drift;
#                     set it to GIT_BASE_BRANCH to commit straight to it)
#   BASELINE_DIR      directory of the baselines in the repository
#                     (default baselines)
#   BASELINE_AT       end of the window, RFC 3339 (default: today 00:00 UTC,
#                     so that runs on the same day export the same bytes)
#   BASELINE_WINDOW   how far back traffic counts (default 168h)
#   BASELINE_PRUNE    1: also delete files of apps without traffic in the
#                     window (--prune)
#   GIT_SSH_KEY       file of an SSH private key for GIT_REPO (copied to a
#                     private temporary file, as ssh insists on its mode)
#   GIT_KNOWN_HOSTS   known_hosts file for GIT_REPO's SSH host
#   GIT_AUTHOR_NAME, GIT_AUTHOR_EMAIL   the commit's author (default egressd)
#   REVIEW_OUTPUT     review: file to write the report to, as Markdown
#   EGRESSD           the egressd binary (default: egressd on PATH)
set -eu

mode=${1:-sync}
case $mode in
sync | check | review) ;;
*)
	echo "usage: $0 [sync|check|review]" >&2
	exit 2
	;;
esac

: "${DATABASE_URL:?DATABASE_URL must name the egressd database}"
export DATABASE_URL
EGRESSD=${EGRESSD:-egressd}
GIT_BASE_BRANCH=${GIT_BASE_BRANCH:-main}
GIT_PUSH_BRANCH=${GIT_PUSH_BRANCH:-egress-baselines}
BASELINE_DIR=${BASELINE_DIR:-baselines}
BASELINE_AT=${BASELINE_AT:-$(date -u +%Y-%m-%dT00:00:00Z)}
BASELINE_WINDOW=${BASELINE_WINDOW:-168h}
set -- --dir "$BASELINE_DIR" --at "$BASELINE_AT" --window "$BASELINE_WINDOW"
if [ "$mode" = review ]; then
	# The pull request's checkout is the current directory: judge its files
	# against what the window saw, as they would be enforced.
	status=0
	"$EGRESSD" baseline check "$@" >"${TMPDIR:-/tmp}/egress-review.$$" || status=$?
	cat "${TMPDIR:-/tmp}/egress-review.$$"
	if [ -n "${REVIEW_OUTPUT:-}" ]; then
		{
			case $status in
			0) echo "**egressd baseline check**: these baselines allow everything the $BASELINE_WINDOW before $BASELINE_AT saw." ;;
			1) echo "**egressd baseline check**: with these baselines, the $BASELINE_WINDOW before $BASELINE_AT would have raised alerts and policy drops:" ;;
			*) echo "**egressd baseline check** failed (exit $status); see the job's log." ;;
			esac
			echo
			echo '```'
			cat "${TMPDIR:-/tmp}/egress-review.$$"
			echo '```'
		} >"$REVIEW_OUTPUT"
	fi
	rm -f "${TMPDIR:-/tmp}/egress-review.$$"
	case $status in
	0 | 1) exit $status ;;
	*) exit 2 ;;
	esac
fi
if [ "${BASELINE_PRUNE:-0}" = 1 ]; then
	set -- "$@" --prune
fi
export GIT_AUTHOR_NAME="${GIT_AUTHOR_NAME:-egressd}"
export GIT_AUTHOR_EMAIL="${GIT_AUTHOR_EMAIL:-egressd@localhost}"
export GIT_COMMITTER_NAME="${GIT_COMMITTER_NAME:-$GIT_AUTHOR_NAME}"
export GIT_COMMITTER_EMAIL="${GIT_COMMITTER_EMAIL:-$GIT_AUTHOR_EMAIL}"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ -n "${GIT_SSH_KEY:-}" ]; then
	cp "$GIT_SSH_KEY" "$tmp/ssh-key"
	chmod 600 "$tmp/ssh-key"
	GIT_SSH_COMMAND="ssh -i $tmp/ssh-key -o IdentitiesOnly=yes -o BatchMode=yes"
	if [ -n "${GIT_KNOWN_HOSTS:-}" ]; then
		GIT_SSH_COMMAND="$GIT_SSH_COMMAND -o UserKnownHostsFile=$GIT_KNOWN_HOSTS -o StrictHostKeyChecking=yes"
	fi
	export GIT_SSH_COMMAND
fi

if [ -n "${GIT_REPO:-}" ]; then
	git clone --quiet --depth 1 --branch "$GIT_BASE_BRANCH" "$GIT_REPO" "$tmp/repo"
	cd "$tmp/repo"
fi
mkdir -p "$BASELINE_DIR"

echo "egress-baselines: comparing $BASELINE_DIR with the live baselines of the $BASELINE_WINDOW before $BASELINE_AT"
status=0
"$EGRESSD" baseline diff "$@" || status=$?
case $status in
0)
	echo "egress-baselines: no drift"
	exit 0
	;;
1) echo "egress-baselines: drift" ;;
*)
	echo "egress-baselines: egressd baseline diff failed (exit $status)" >&2
	exit 2
	;;
esac
if [ "$mode" = check ]; then
	exit 1
fi

"$EGRESSD" baseline export "$@"
git add --all -- "$BASELINE_DIR"
if git diff --cached --quiet; then
	echo "egress-baselines: export changed nothing"
	exit 0
fi
git commit --quiet -m "egress baselines at $BASELINE_AT" \
	-m "Exported by: egressd baseline export $*"
if [ "$GIT_PUSH_BRANCH" = "$GIT_BASE_BRANCH" ]; then
	git push --quiet origin "HEAD:refs/heads/$GIT_PUSH_BRANCH"
else
	# The review branch is always the base plus the latest export. It is
	# left alone when it already holds these files, so that an open pull
	# request does not change every day while nobody reviews it.
	if git fetch --quiet --depth 1 origin "refs/heads/$GIT_PUSH_BRANCH" 2>/dev/null &&
		[ "$(git rev-parse 'FETCH_HEAD^{tree}')" = "$(git rev-parse 'HEAD^{tree}')" ]; then
		echo "egress-baselines: $GIT_PUSH_BRANCH already holds this export"
		exit 0
	fi
	git push --quiet --force origin "HEAD:refs/heads/$GIT_PUSH_BRANCH"
fi
echo "egress-baselines: pushed $(git rev-parse --short HEAD) to $GIT_PUSH_BRANCH"
