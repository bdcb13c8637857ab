#!/usr/bin/env bash
# ensure-deps.sh WHAT...: installs the Debian packages egressd's tests and
# demo need when they are missing (as root, with apt), else fails saying what
# to install. WHAT is any of: postgresql, alertmanager, prometheus, chromium
# (the browser the triage pages are tested in, driven by chromedp).
set -euo pipefail

need_apt=()
for what in "$@"; do
	case "$what" in
	postgresql)
		if [ -z "${TEST_DATABASE_URL:-}" ] && [ -z "${DATABASE_URL:-}" ] && ! command -v initdb >/dev/null 2>&1 \
			&& ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
			need_apt+=(postgresql)
		fi
		;;
	alertmanager)
		if ! command -v prometheus-alertmanager >/dev/null 2>&1 && ! command -v alertmanager >/dev/null 2>&1 \
			&& [ -z "${ALERTMANAGER_BIN:-}" ]; then
			need_apt+=(prometheus-alertmanager)
		fi
		;;
	prometheus)
		if ! command -v prometheus >/dev/null 2>&1; then
			need_apt+=(prometheus)
		fi
		;;
	chromium)
		if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 \
			&& ! command -v google-chrome >/dev/null 2>&1; then
			need_apt+=(chromium)
		fi
		;;
	*)
		echo "ensure-deps.sh: unknown dependency $what" >&2
		exit 2
		;;
	esac
done

if [ ${#need_apt[@]} -gt 0 ]; then
	if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
		echo "ensure-deps.sh: installing ${need_apt[*]} (Debian packages)" >&2
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
	else
		echo "ensure-deps.sh: missing ${need_apt[*]}: install the Debian package(s) (apt-get install ${need_apt[*]})" >&2
		case " ${need_apt[*]} " in *" postgresql "*)
			echo "ensure-deps.sh: instead of postgresql, DATABASE_URL (TEST_DATABASE_URL for tests) may point to a PostgreSQL server" >&2 ;;
		esac
		exit 1
	fi
fi

if ! command -v go >/dev/null 2>&1; then
	echo "ensure-deps.sh: go not found in PATH: install Go 1.26 (https://go.dev/dl)" >&2
	exit 1
fi
