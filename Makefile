# Portcullis — make targets.
#   make run    start the gateway on embedded defaults
#   make test   every gate CI runs: lint, race-tested unit tests with the
#               coverage gate, end-to-end tests, fuzz smoke
SHELL   := /bin/bash
GO      ?= go
BIN     := bin/portcullis
COVER   := .cover

# Pinned tools, installed on first use into .tools/<name>@<version>/.
TOOLS               := $(CURDIR)/.tools
STATICCHECK_VERSION := v0.8.2
GOSEC_VERSION       := v2.29.0
GOVULNCHECK_VERSION := v1.8.0
GITLEAKS_VERSION    := v8.30.1
STATICCHECK := $(TOOLS)/staticcheck@$(STATICCHECK_VERSION)/staticcheck
GOSEC       := $(TOOLS)/gosec@$(GOSEC_VERSION)/gosec
GOVULNCHECK := $(TOOLS)/govulncheck@$(GOVULNCHECK_VERSION)/govulncheck
GITLEAKS    := $(TOOLS)/gitleaks@$(GITLEAKS_VERSION)/gitleaks

# Seconds per fuzz target in fuzz-smoke.
FUZZTIME ?= 10s

.PHONY: all build run test lint fmt-check vet staticcheck gosec nosec modverify vulncheck secrets \
        unit cover e2e fuzz-smoke tools clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/portcullis

## run: start the gateway on embedded defaults (127.0.0.1:8420, ./portcullis-data, ./workspace)
run: build
	./$(BIN) serve

## test: every gate, as CI runs it
test: lint unit cover e2e fuzz-smoke

## lint: formatting, vet, staticcheck, gosec (high severity + high confidence),
## suppression reasons, module checksums, vulnerabilities (offline DB), secrets
lint: fmt-check vet staticcheck gosec nosec modverify vulncheck secrets

fmt-check:
	@unformatted=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi; \
	echo "gofmt: clean"

vet:
	$(GO) vet ./...

staticcheck: $(STATICCHECK)
	$(STATICCHECK) ./...

gosec: $(GOSEC)
	$(GOSEC) -quiet -severity high -confidence high -exclude-generated ./...

nosec:
	@scripts/nosec-reasons.sh

modverify:
	$(GO) mod verify

vulncheck: $(GOVULNCHECK)
	@GOVULNCHECK=$(GOVULNCHECK) scripts/vulncheck.sh

secrets: $(GITLEAKS)
	$(GITLEAKS) git --config .gitleaks.toml --redact --no-banner .

## unit: every package with the race detector (and atomic coverage)
unit:
	@mkdir -p $(COVER)
	$(GO) test -race -count=1 -coverprofile=$(COVER)/unit.out \
		$$($(GO) list ./... | grep -v /test/e2e) 2>&1 | tee $(COVER)/unit.txt; exit $${PIPESTATUS[0]}

## cover: per-package coverage from the last `make unit`; core packages >= 80%
cover:
	@test -f $(COVER)/unit.txt || $(MAKE) unit
	@scripts/coverage-gate.sh $(COVER)/unit.txt

e2e:
	$(GO) test -race -count=1 ./test/e2e/

## fuzz-smoke: every fuzz target for FUZZTIME (default 10s)
fuzz-smoke:
	@FUZZTIME=$(FUZZTIME) GO=$(GO) scripts/fuzz-smoke.sh

.PHONY: bench-sandbox
## bench-sandbox: sandbox overhead vs bare and bubblewrap (root; not part of test)
bench-sandbox:
	@GO=$(GO) scripts/bench-sandbox.sh

.PHONY: bench bench-check
## bench: every benchmark in one run (gateway overhead vs direct, built-in
## throughput, policy, audit, sandbox, memory) against DESIGN §6; writes
## BENCHMARKS.md and bench/baseline.json (root; ~5 min; not part of test)
bench:
	@GO=$(GO) scripts/bench.sh

## bench-check: run the benchmark into bench/latest.json (or compare
## RESULT=FILE) against bench/baseline.json, 25% tolerance; informational,
## exit 0 unless STRICT=1 and a metric regressed
bench-check:
	@GO=$(GO) RESULT=$(RESULT) STRICT=$(STRICT) scripts/bench-check.sh

tools: $(STATICCHECK) $(GOSEC) $(GOVULNCHECK) $(GITLEAKS)

$(STATICCHECK):
	GOBIN=$(dir $@) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
$(GOSEC):
	GOBIN=$(dir $@) $(GO) install github.com/securego/gosec/v2/cmd/gosec@$(GOSEC_VERSION)
$(GOVULNCHECK):
	GOBIN=$(dir $@) $(GO) install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION)
$(GITLEAKS):
	GOBIN=$(dir $@) $(GO) install github.com/zricethezav/gitleaks/v8@$(GITLEAKS_VERSION)

clean:
	rm -rf bin $(COVER)
