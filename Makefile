# Verdict: `make test` runs every test, installing what the tests need
# (nginx and Caddy for the forward-auth tests) when it is missing.

GO      ?= go
GOFLAGS ?=
export GOFLAGS

.PHONY: all build image test test-deps vet lint fuzz bench load clean

all: build

build:
	$(GO) build -o bin/verdict ./cmd/verdict

# image builds the container image $(IMAGE):$(VERSION): a static binary from
# this machine's Go (nothing is downloaded inside the build), then
# deploy/container/Containerfile with podman, buildah or docker, whichever
# works here (BUILDER=podman|buildah|docker to choose).
ifndef VERSION
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
endif
IMAGE     ?= verdict
IMAGE_BIN ?= bin/image/verdict
image:
	@sh deploy/container/build.sh --check >/dev/null
	CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -tags timetzdata \
		-ldflags "-s -w -X main.version=$(VERSION)" -o $(IMAGE_BIN) ./cmd/verdict
	VERSION=$(VERSION) sh deploy/container/build.sh $(IMAGE_BIN) $(IMAGE):$(VERSION)

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
	$(GO) test -run '^$$' -fuzz FuzzHeaderCache -fuzztime $(FUZZTIME) ./authz/token
	$(GO) test -run '^$$' -fuzz FuzzDecideInput -fuzztime $(FUZZTIME) ./authz
	$(GO) test -run '^$$' -fuzz FuzzBearerToken -fuzztime $(FUZZTIME) ./authz
	$(GO) test -run '^$$' -fuzz FuzzNormalizePath -fuzztime $(FUZZTIME) ./authz
	$(GO) test -run '^$$' -fuzz FuzzReadDecision -fuzztime $(FUZZTIME) ./client
	$(GO) test -run '^$$' -fuzz FuzzDecisionCacheAgrees -fuzztime $(FUZZTIME) ./authz
	$(GO) test -run '^$$' -fuzz FuzzDifferential -fuzztime $(FUZZTIME) ./authz/internal/plan
	$(GO) test -run '^$$' -fuzz FuzzPolicy -fuzztime $(FUZZTIME) ./authz/internal/plan
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
