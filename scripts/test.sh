#!/usr/bin/env bash
# The test command (make test, and CI through .ci/run). It works on a fresh
# Debian machine: it installs what the tests need and is missing, then runs
# every Go test. Tests that need PostgreSQL use TEST_DATABASE_URL when set,
# else start a throwaway cluster from the local PostgreSQL binaries (as an
# unprivileged user when run as root). Alert tests run the real Alertmanager
# (Debian's prometheus-alertmanager; $ALERTMANAGER_BIN overrides PATH) and
# volume tests the real Prometheus (Debian's prometheus), each on loopback
# ports of its own; the triage pages are tested in Debian's chromium
# (headless, driven by chromedp), which keeps a screenshot of each page in
# bin/test-artifacts/triage ($EGRESSD_TEST_ARTIFACTS overrides it). On a
# machine with systemd, Debian's packages also enable and start their
# services (Prometheus on :9090, Alertmanager on :9093).
#
# One line per package is printed as soon as that package finishes
# (gotestsum reads go test's JSON stream), then the output of every failed
# or skipped test. The only tests that may skip are those reading recorded
# Hubble flows from ../shared/hubble-samples, absent from a plain clone.
#
# TEST_TIMEOUT bounds each package's test binary (go test -timeout; 20m,
# far above what a package takes, so that only a hang trips it).
# TEST_PACKAGES is how many packages run at once (go test -p, default 4):
# a package spends seconds starting PostgreSQL, Prometheus or Alertmanager,
# and another uses the CPU meanwhile. TEST_PARALLEL is how many tests of one
# package run at once (go test -parallel, default 4, twice the CPUs here):
# cmd/egressd's tests spend much of their time waiting on a subprocess, a
# browser or a shared snapshot database, and with one per CPU a waiting
# test held a slot; on the 2-core machine 4 took make test from 3m51 to
# 3m14 and cmd/egressd from 3m21 to 2m58.
# Arguments are passed on to go test (e.g. -run TestSamples).
#
# Two settings make the race-detector build cheaper without checking less
# of egressd: GOGC=400 (fewer collections, which are costly under the race
# detector; the tests hold little memory), and no checkptr instrumentation
# in the protobuf runtime (google.golang.org/protobuf, whose unsafe code is
# upstream's and fuzzed there): the replay tests spend much of their time
# in protojson. egressd's own packages keep checkptr, which -race turns on.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/ensure-deps.sh postgresql alertmanager prometheus chromium

timeout=${TEST_TIMEOUT:-20m}
packages=${TEST_PACKAGES:-4}
parallel=${TEST_PARALLEL:-4}
export GOGC=${GOGC:-400}
exec go run gotest.tools/gotestsum@v1.13.0 --format pkgname-and-test-fails --format-icons text -- \
	-count=1 -race -gcflags='google.golang.org/protobuf/...=-d=checkptr=0' \
	-timeout "$timeout" -p "$packages" -parallel "$parallel" "$@" ./...
