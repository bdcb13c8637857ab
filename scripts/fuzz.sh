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
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo "==> $name ($pkg) for $fuzztime"
	go test -run '^$' -fuzz "^$name\$" -fuzztime "$fuzztime" -timeout "$timeout" "$pkg"
done
echo "fuzz: ${#targets[@]} targets, $fuzztime each, no crash"
