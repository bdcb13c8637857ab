#!/usr/bin/env bash
# govulncheck over the module: fails when code egressd calls is affected by a
# known vulnerability. The database is GOVULNDB (default https://vuln.go.dev;
# file:///path for an offline mirror, e.g. Debian/openSUSE's govulncheck-vulndb).
#
# When the database cannot be reached (a machine without internet access),
# the check cannot run: it says so loudly and exits 0, unless
# VULNCHECK_REQUIRED=1, which makes that a failure too.
# v1.1.4: later releases need golang.org/x/telemetry versions that the
# module proxy does not serve.
#
# First it proves itself: against a database holding one made-up advisory for
# pgxpool.NewWithConfig, which egressd calls, govulncheck must fail.
set -uo pipefail
cd "$(dirname "$0")/.."
fake=$(mktemp -d)
trap 'rm -rf "$fake"' EXIT
GOBIN="$fake/bin" go install golang.org/x/vuln/cmd/govulncheck@v1.1.4 || exit 1
govulncheck() { "$fake/bin/govulncheck" "$@"; }
mkdir -p "$fake/index" "$fake/ID"
now=2026-01-01T00:00:00Z
echo "{\"modified\":\"$now\"}" >"$fake/index/db.json"
echo "[{\"path\":\"github.com/jackc/pgx/v5\",\"vulns\":[{\"id\":\"GO-0000-0001\",\"modified\":\"$now\"}]}]" >"$fake/index/modules.json"
echo "[{\"id\":\"GO-0000-0001\",\"modified\":\"$now\",\"aliases\":[]}]" >"$fake/index/vulns.json"
cat >"$fake/ID/GO-0000-0001.json" <<JSON
{"schema_version":"1.3.1","id":"GO-0000-0001","modified":"$now","published":"$now",
 "details":"A made-up advisory: scripts/vulncheck.sh checks that govulncheck fails on it.",
 "references":[{"type":"WEB","url":"https://example.invalid/GO-0000-0001"}],
 "database_specific":{"url":"https://example.invalid/GO-0000-0001"},
 "affected":[{"package":{"name":"github.com/jackc/pgx/v5","ecosystem":"Go"},
   "ranges":[{"type":"SEMVER","events":[{"introduced":"0"}]}],
   "ecosystem_specific":{"imports":[{"path":"github.com/jackc/pgx/v5/pgxpool","symbols":["NewWithConfig"]}]}}]}
JSON
selftest=$(govulncheck -db "file://$fake" ./... 2>&1)
# 3: vulnerabilities found (anything else: the check did not work).
if [ $? -ne 3 ] || ! grep -q "GO-0000-0001" <<<"$selftest"; then
	echo "$selftest"
	echo "vulncheck: govulncheck did not report the made-up advisory: the check is broken" >&2
	exit 1
fi
grep -m1 "Vulnerability #1" <<<"$selftest"
echo "vulncheck: self-test ok (a made-up advisory for a function egressd calls fails the check)"

db=${GOVULNDB:-https://vuln.go.dev}
out=$(govulncheck -db "$db" ./... 2>&1)
rc=$?
echo "$out"
if [ $rc -ne 0 ] && grep -q "fetching vulnerabilities" <<<"$out"; then
	echo "vulncheck: NOT CHECKED: the vulnerability database $db is unreachable from this machine." >&2
	echo "vulncheck: set GOVULNDB=file:///path/to/a/mirror, or run where $db answers." >&2
	[ "${VULNCHECK_REQUIRED:-0}" = 1 ] && exit 1
	exit 0
fi
exit $rc
