#!/usr/bin/env bash
# Runs every fuzz target in the module for FUZZTIME each (default 30s), one
# after the other, and fails on the first crash. A crasher is written by Go
# under the package's testdata/fuzz/<Target>/: commit it, and it runs as a
# regression test in every `go test` from then on.
#   FUZZTIME=10m scripts/fuzz.sh               # every target
#   FUZZTIME=1m scripts/fuzz.sh FuzzDecode      # targets matching a regexp
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-30s}
match=${1:-.}
# Each go test gets an explicit -timeout: FUZZTIME plus 5 minutes for the
# build and the seed corpus when FUZZTIME is a plain duration (30s, 10m,
# 2h), else FUZZ_TIMEOUT (default 1h; FUZZTIME=1000x counts iterations).
timeout=${FUZZ_TIMEOUT:-1h}
if [[ $fuzztime =~ ^([0-9]+)([smh])$ ]]; then
	n=${BASH_REMATCH[1]}
	case ${BASH_REMATCH[2]} in
	s) secs=$n ;;
	m) secs=$((n * 60)) ;;
	h) secs=$((n * 3600)) ;;
	esac
	timeout=${FUZZ_TIMEOUT:-$((secs + 300))s}
fi
# `go test -list` prints the targets of each package, then "ok <package>".
targets=()
names=()
while read -r line; do
	case $line in
	Fuzz*) names+=("$line") ;;
	ok*)
		pkg=$(awk '{print $2}' <<<"$line")
		for n in "${names[@]:-}"; do
			[ -n "$n" ] && [[ $n =~ $match ]] && targets+=("$pkg $n")
		done
		names=()
		;;
	esac
done < <(go test -timeout 5m -list '^Fuzz' ./...)
if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz: no target matches $match" >&2
	exit 1
fi
# Go 1.26's fuzz coordinator can fail a target with a bare "context deadline
# exceeded" as -fuzztime runs out, having found nothing (golang/go#75804,
# fixed in Go 1.27): a run that fails that way and writes no crasher is run
# once more, and only a second such failure fails. A real crash writes its
# input under testdata/fuzz/ and fails at once.
fuzz() {
	local pkg=$1 name=$2 out rc
	set +e
	out=$(go test -run '^$' -fuzz "^$name\$" -fuzztime "$fuzztime" -timeout "$timeout" "$pkg" 2>&1)
	rc=$?
	set -e
	printf '%s\n' "$out"
	if [ $rc -ne 0 ] && grep -qx '    context deadline exceeded' <<<"$out" && ! grep -q 'Failing input written to' <<<"$out"; then
		return 75
	fi
	return $rc
}
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo "==> $name ($pkg) for $fuzztime"
	rc=0
	fuzz "$pkg" "$name" || rc=$?
	if [ $rc -eq 75 ]; then
		echo "fuzz: $name stopped with the coordinator's deadline and no crasher (golang/go#75804); running it again"
		rc=0
		fuzz "$pkg" "$name" || rc=$?
	fi
	if [ $rc -eq 75 ]; then
		echo "fuzz: $name stopped with the coordinator's deadline twice" >&2
		exit 1
	fi
	[ $rc -eq 0 ] || exit $rc
done
echo "fuzz: ${#targets[@]} targets, $fuzztime each, no crash"
