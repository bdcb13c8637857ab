# egressd. `make demo` shows it working; `make test` runs every test.
GO ?= go
BIN := bin/egressd

.PHONY: build test demo lint bench fuzz clean

build:
	$(GO) build -o $(BIN) ./cmd/egressd

# Installs what the tests need when missing (Debian's postgresql), then
# runs all tests, printing a line per package as it finishes.
# TEST_DATABASE_URL points them at an existing server.
test:
	./scripts/test.sh

# Streams nine generated days of a home lab through the real service, with a
# throwaway PostgreSQL (or $$DATABASE_URL): learning, alerts, baselines.
demo: build
	./scripts/ensure-deps.sh postgresql
	./$(BIN) demo

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# The Go benchmarks beside the code (hot paths, by cardinality), then the
# end-to-end harness, which prints every DESIGN.md target with its figure and
# ratio (BENCHMARKS.md). BENCHTIME=3s for steadier Go figures.
BENCHTIME ?= 1s
bench: build
	./scripts/ensure-deps.sh postgresql alertmanager
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -timeout 30m ./...
	./$(BIN) bench

# Runs every fuzz target for FUZZTIME each (default 30s); FUZZ=regexp picks
# targets. CI runs each for 5s; crashers found are kept in testdata/fuzz.
FUZZTIME ?= 30s
FUZZ ?= .
fuzz:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh '$(FUZZ)'

clean:
	rm -rf bin
