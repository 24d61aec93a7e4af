# Portcullis — make targets. `make run` starts the gateway on embedded
# defaults; `make test` runs every check CI runs.

GO      ?= go
BIN     := bin/portcullis
PKGS    := ./...

.PHONY: all build run test vet unit e2e lint clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/portcullis

## run: start the gateway on embedded defaults (127.0.0.1:8420, ./portcullis-data, ./workspace)
run: build
	./$(BIN) serve

## test: vet, the whole suite with the race detector, then the end-to-end tests
test: vet unit e2e

vet:
	$(GO) vet $(PKGS)

unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /test/e2e)

e2e:
	$(GO) test -race -count=1 ./test/e2e/

lint: vet
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi

clean:
	rm -rf bin e2e.log
