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
done < <(go test -list '^Fuzz' ./...)
if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz: no target matches $match" >&2
	exit 1
fi
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo "==> $name ($pkg) for $fuzztime"
	go test -run '^$' -fuzz "^$name\$" -fuzztime "$fuzztime" "$pkg"
done
echo "fuzz: ${#targets[@]} targets, $fuzztime each, no crash"
