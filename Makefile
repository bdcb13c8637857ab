# egressd. `make demo` shows it working; `make test` runs every test.
GO ?= go
BIN := bin/egressd
# egressd version and --version print these (see cmd/egressd/flags.go).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: build image test demo lint bench fuzz clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/egressd

# egressd's container image without a Docker daemon: a static binary FROM
# scratch, run as user 65532 (deploy/image). Writes bin/egressd-image.tar for
# docker load, podman load, crane push or skopeo copy docker-archive:.
# IMAGE names it; GOARCH=arm64 builds for arm64.
IMAGE ?= egressd:$(VERSION)
GOARCH ?= $(shell $(GO) env GOARCH)
image:
	CGO_ENABLED=0 GOOS=linux GOARCH=$(GOARCH) $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" \
		-o bin/egressd-linux-$(GOARCH) ./cmd/egressd
	$(GO) run ./deploy/image --binary bin/egressd-linux-$(GOARCH) --arch $(GOARCH) \
		--version $(VERSION) --commit "$(COMMIT)" --tag $(IMAGE) --out bin/egressd-image.tar

# Installs what the tests need when missing (Debian's postgresql), then
# runs all tests, printing a line per package as it finishes.
# TEST_DATABASE_URL points them at an existing server.
test:
	./scripts/test.sh

# Streams nine generated days of a home lab through the real service, into a
# throwaway PostgreSQL ($$DATABASE_URL is ignored): learning, alerts,
# baselines. DEMOFLAGS=--keep-running keeps a live Hubble for egressd serve.
demo: build
	./scripts/ensure-deps.sh postgresql
	./$(BIN) demo $(DEMOFLAGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# The Go benchmarks beside the code (hot paths, by cardinality), then the
# end-to-end harness bin/egressd-bench (its own binary: the server links no
# test code), which prints every performance target with its figure and
# ratio (BENCHMARKS.md). BENCHTIME=3s for steadier Go figures; BENCHFLAGS
# go to the harness (e.g. BENCHFLAGS='--runs 5 --only ingest').
BENCHTIME ?= 1s
BENCHFLAGS ?=
bench:
	./scripts/ensure-deps.sh postgresql alertmanager
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -timeout 30m ./...
	$(GO) build -o bin/egressd-bench ./cmd/egressd-bench
	./bin/egressd-bench $(BENCHFLAGS)

# Runs every fuzz target for FUZZTIME each (default 30s); FUZZ=regexp picks
# targets. CI runs each for 5s; crashers found are kept in testdata/fuzz.
FUZZTIME ?= 30s
FUZZ ?= .
fuzz:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh '$(FUZZ)'

clean:
	rm -rf bin
