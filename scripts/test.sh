#!/usr/bin/env bash
# The test command (make test, and CI through .ci/run). It works on a fresh
# Debian machine: it installs what the tests need and is missing, then runs
# every Go test. Tests that need PostgreSQL use TEST_DATABASE_URL when set,
# else start a throwaway cluster from the local PostgreSQL binaries (as an
# unprivileged user when run as root). Alert tests run the real Alertmanager
# (Debian's prometheus-alertmanager; $ALERTMANAGER_BIN overrides PATH) and
# volume tests the real Prometheus (Debian's prometheus), each on loopback
# ports of its own. On a machine with systemd, Debian's packages also enable
# and start their services (Prometheus on :9090, Alertmanager on :9093).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
if [ -z "${TEST_DATABASE_URL:-}" ] && ! command -v initdb >/dev/null 2>&1 \
	&& ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
	need_apt+=(postgresql)
fi
if ! command -v prometheus-alertmanager >/dev/null 2>&1 && ! command -v alertmanager >/dev/null 2>&1 \
	&& [ -z "${ALERTMANAGER_BIN:-}" ]; then
	need_apt+=(prometheus-alertmanager)
fi
if ! command -v prometheus >/dev/null 2>&1; then
	need_apt+=(prometheus)
fi

if [ ${#need_apt[@]} -gt 0 ]; then
	if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
		echo "test.sh: installing ${need_apt[*]} (Debian packages)" >&2
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
	else
		echo "test.sh: missing ${need_apt[*]}: install the Debian package(s) (apt-get install ${need_apt[*]})" >&2
		case " ${need_apt[*]} " in *" postgresql "*)
			echo "test.sh: instead of postgresql, TEST_DATABASE_URL may point to a PostgreSQL server" >&2 ;;
		esac
		exit 1
	fi
fi

if ! command -v go >/dev/null 2>&1; then
	echo "test.sh: go not found in PATH: install Go 1.26 (https://go.dev/dl)" >&2
	exit 1
fi

exec go test -count=1 -race "$@" ./...
