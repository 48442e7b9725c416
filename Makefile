# Everything builds with the Go toolchain alone (CGO off, static).
GO       ?= go
BIN      := bin
VERSION  := $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS  := -s -w -X ipfs-cluster/internal/cli.BuildVersion=$(VERSION)
export CGO_ENABLED := 0

.PHONY: all build kubo reference test lint bench bench-cluster bench-add run clean

all: build kubo

## build: the ipfs-cluster binary and its tool-name links
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ipfs-cluster .
	ln -sf ipfs-cluster $(BIN)/ipfs-cluster-service
	ln -sf ipfs-cluster $(BIN)/ipfs-cluster-ctl
	ln -sf ipfs-cluster $(BIN)/ipfs-cluster-follow

## kubo: the pinned kubo daemon the tests and the local cluster run
kubo: $(BIN)/ipfs

$(BIN)/ipfs: tools/kubo/go.mod tools/kubo/go.sum
	cd tools/kubo && $(GO) build -trimpath -ldflags '-s -w' -o ../../$(BIN)/ipfs github.com/ipfs/kubo/cmd/ipfs

## reference: IPFS Cluster 1.1.6's own ctl and Go client, for compatibility tests
reference: $(BIN)/ref/ipfs-cluster-ctl $(BIN)/ref/refclient

$(BIN)/ref/ipfs-cluster-ctl: tools/refcluster/go.mod tools/refcluster/go.sum
	cd tools/refcluster && $(GO) build -trimpath -ldflags '-s -w' -o ../../$@ github.com/ipfs-cluster/ipfs-cluster/cmd/ipfs-cluster-ctl

$(BIN)/ref/refclient: tools/refcluster/go.mod tools/refcluster/go.sum tools/refcluster/refclient/main.go
	cd tools/refcluster && $(GO) build -trimpath -ldflags '-s -w' -o ../../$@ ./refclient

## run: build everything and start a local cluster with kubo, add and pin a file
run: build kubo
	$(GO) run ./scripts/localcluster

## test: every test, with real kubo daemons
test: build kubo reference
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

## lint: staticcheck, and deadcode for functions nothing reaches, not even a test
lint: $(BIN)/staticcheck $(BIN)/deadcode
	$(BIN)/staticcheck ./...
	@out=$$($(BIN)/deadcode -test ./...); if [ -n "$$out" ]; then echo "$$out"; exit 1; fi

$(BIN)/staticcheck $(BIN)/deadcode: tools/lint/go.mod tools/lint/go.sum
	cd tools/lint && $(GO) build -trimpath -o ../../$(BIN)/staticcheck honnef.co/go/tools/cmd/staticcheck
	cd tools/lint && $(GO) build -trimpath -o ../../$(BIN)/deadcode golang.org/x/tools/cmd/deadcode

## bench: the Go benchmarks of the hot paths
bench: build kubo
	$(GO) test -run '^$$' -bench . -benchmem ./...

## bench-cluster: measure a three-peer local cluster (JSON line per figure)
bench-cluster: build kubo
	$(GO) run ./scripts/benchcluster

## bench-add: measure add, CAR import and their memory on a three-peer local cluster
bench-add: build kubo
	$(GO) run ./scripts/benchadd

clean:
	rm -rf $(BIN)
