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

./scripts/ensure-deps.sh postgresql alertmanager prometheus

exec go test -count=1 -race "$@" ./...
