# egressd. `make demo` shows it working; `make test` runs every test.
GO ?= go
BIN := bin/egressd

.PHONY: build test demo lint bench fuzz clean

build:
	$(GO) build -o $(BIN) ./cmd/egressd

# Installs what the tests need when missing (Debian's postgresql), then
# runs all tests. TEST_DATABASE_URL points them at an existing server.
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

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Runs each fuzz target for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./collector
	$(GO) test -run '^$$' -fuzz '^FuzzReplayLine$$' -fuzztime $(FUZZTIME) ./collector
	$(GO) test -run '^$$' -fuzz '^FuzzUnmarshal$$' -fuzztime $(FUZZTIME) ./baseline
	$(GO) test -run '^$$' -fuzz '^FuzzAcceptBody$$' -fuzztime $(FUZZTIME) ./httpapi
	$(GO) test -run '^$$' -fuzz '^FuzzPolicies$$' -fuzztime $(FUZZTIME) ./baseline

clean:
	rm -rf bin
