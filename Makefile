# Verdict: `make test` runs every test, installing what the tests need
# (nginx and Caddy for the forward-auth tests) when it is missing.

GO      ?= go
GOFLAGS ?=
export GOFLAGS

.PHONY: all build test test-deps vet lint fuzz bench load clean

all: build

build:
	$(GO) build -o bin/verdict ./cmd/verdict

test: test-deps vet
	$(GO) test -race -count=1 -timeout 20m ./...

# test-deps installs the real proxies the end-to-end tests drive.
test-deps:
	@sh test/install-deps.sh

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

lint: vet
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.1 ./...

# fuzz runs each fuzz target for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzVerify -fuzztime $(FUZZTIME) ./authz/token
	$(GO) test -run '^$$' -fuzz FuzzParseJWKS -fuzztime $(FUZZTIME) ./authz/token
	$(GO) test -run '^$$' -fuzz FuzzDecideInput -fuzztime $(FUZZTIME) ./authz
	$(GO) test -run '^$$' -fuzz FuzzBearerToken -fuzztime $(FUZZTIME) ./authz
	$(GO) test -run '^$$' -fuzz FuzzNormalizePath -fuzztime $(FUZZTIME) ./authz
	$(GO) test -run '^$$' -fuzz FuzzDecodeDecideBody -fuzztime $(FUZZTIME) ./server
	$(GO) test -run '^$$' -fuzz FuzzExtAuthzCheck -fuzztime $(FUZZTIME) ./server
	$(GO) test -run '^$$' -fuzz FuzzForwardedCert -fuzztime $(FUZZTIME) ./server/internal/fwdcert
	$(GO) test -run '^$$' -fuzz FuzzReadTarball -fuzztime $(FUZZTIME) ./bundles
	$(GO) test -run '^$$' -fuzz FuzzParseCost -fuzztime $(FUZZTIME) ./bundles
	$(GO) test -run '^$$' -fuzz FuzzAppendString -fuzztime $(FUZZTIME) ./internal/jsonw

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./authz/...

# load compares Verdict's HTTP service with `opa run --server` under wrk
# (about 25 minutes; see BENCHMARKS.md). Not part of `make test`.
load:
	test/load/run.sh

clean:
	rm -rf bin
