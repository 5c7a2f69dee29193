# passnum — see `make help`.
#
# Tests and `make run` need no Docker: cmd/withpg and internal/testdb start a private
# PostgreSQL from Debian's binaries (installed with apt-get when missing and root).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

GO       ?= go
BIN      := $(CURDIR)/bin
TOOLS    := $(BIN)/tools
WITHPG   := $(BIN)/withpg

# Code generation: Debian's protoc, pinned plugins installed into bin/tools.
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.0
PROTO_ROOT  := proto
PROTO_FILES := $(wildcard $(PROTO_ROOT)/passnum/v1/*.proto)

# Packages with fuzz targets (FuzzXxx); `make fuzz` runs each target for FUZZTIME.
FUZZ_PKGS ?= ./internal/vcode ./internal/ident ./internal/sepa ./internal/orgs ./internal/auth
FUZZTIME  ?= 30s

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

# withpg is built rather than `go run`, so that signals reach it and it can stop its
# server, and so that the command's exit status comes back unchanged.
.PHONY: $(WITHPG)
$(WITHPG):
	$(GO) build -o $@ ./cmd/withpg

# The race detector stays on: it roughly doubles the suite's time on 2 cores (13 s to 22 s
# when measured), and the ledger is concurrent code. `make test RACE=` turns it off.
RACE ?= -race

.PHONY: test
test: $(WITHPG) ## run every test (race detector on), on DATABASE_URL's server if set, else on a private one
ifneq ($(strip $(DATABASE_URL)),)
	$(GO) test $(RACE) -count=1 ./...
else
	$(WITHPG) -fast -- $(GO) test $(RACE) -count=1 ./...
endif

.PHONY: run
run: ## run the server for development (passnumd dev)
	$(GO) run ./cmd/passnumd dev

# bench-data keeps its PostgreSQL data in var/bench (or uses DATABASE_URL's server): a fresh
# one gets about 10 M redemptions, then spend report latency is printed. DATAGEN_FLAGS passes
# flags to cmd/passnum-datagen, e.g. DATAGEN_FLAGS=-measure-only to time reports again.
.PHONY: bench-data
bench-data: $(WITHPG) ## generate ~10 M redemptions (var/bench, or DATABASE_URL) and time spend reports
ifneq ($(strip $(DATABASE_URL)),)
	$(GO) run ./cmd/passnum-datagen $(DATAGEN_FLAGS)
else
	$(WITHPG) -data var/bench -fast -- $(GO) run ./cmd/passnum-datagen $(DATAGEN_FLAGS)
endif

# bench starts its own durable PostgreSQL (temporary directory), runs pgbench on it, then the
# real passnumd binary as a separate process, and compares; BENCH_FLAGS passes flags to
# cmd/passnum-bench, e.g. BENCH_FLAGS="-scenario redeem -cpuprofile". Built rather than `go run`
# so that signals reach it and its exit status comes back unchanged.
.PHONY: bench
bench: ## benchmark passnum against pgbench on the same PostgreSQL; results in bench/results/
	$(GO) build -o $(BIN)/passnum-bench ./cmd/passnum-bench
	$(BIN)/passnum-bench $(BENCH_FLAGS)

.PHONY: build
build: ## build bin/passnumd and bin/passnum
	$(GO) build -o $(BIN)/passnumd ./cmd/passnumd
	$(GO) build -o $(BIN)/passnum ./cmd/passnum

.PHONY: generate
generate: ## regenerate the gRPC code from proto/passnum/v1/*.proto
	@if [[ -z "$(PROTO_FILES)" ]]; then echo "generate: no .proto files under $(PROTO_ROOT)/passnum/v1" >&2; exit 1; fi
	@if ! command -v protoc >/dev/null; then \
		if [[ $$(id -u) -ne 0 ]]; then echo "generate: protoc is missing: install Debian's protobuf-compiler" >&2; exit 1; fi; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y protobuf-compiler; \
	fi
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	PATH="$(TOOLS):$$PATH" protoc -I $(PROTO_ROOT) -I /usr/include \
		--go_out=$(PROTO_ROOT) --go_opt=paths=source_relative \
		--go-grpc_out=$(PROTO_ROOT) --go-grpc_opt=paths=source_relative \
		$(PROTO_FILES)

.PHONY: fmt
fmt: ## format the Go code
	$(GO) fmt ./...

.PHONY: vet
vet: ## go vet every package
	$(GO) vet ./...

.PHONY: fuzz
fuzz: ## run each fuzz target of FUZZ_PKGS for FUZZTIME
	@if [[ -z "$(strip $(FUZZ_PKGS))" ]]; then echo "fuzz: FUZZ_PKGS is empty, nothing to fuzz"; exit 0; fi; \
	for pkg in $(FUZZ_PKGS); do \
		dir=$$($(GO) list -f '{{.Dir}}' "$$pkg"); \
		targets=$$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$$dir"/*_test.go); \
		if [[ -z "$$targets" ]]; then echo "fuzz: $$pkg has no fuzz target" >&2; exit 1; fi; \
		for target in $$targets; do \
			echo "fuzz: $$pkg $$target"; \
			$(GO) test -run='^$$' -fuzz="^$$target\$$" -fuzztime=$(FUZZTIME) "$$pkg"; \
		done; \
	done

.PHONY: clean
clean: ## remove bin/
	rm -rf $(BIN)

# var/ holds the development data (the PostgreSQL cluster of `make run`): stop any server
# running from it before removing it.
.PHONY: distclean
distclean: clean ## also stop the development PostgreSQL and remove var/
	@for pid in var/*/postmaster.pid var/*/*/postmaster.pid; do \
		[[ -f "$$pid" ]] || continue; \
		$(GO) run ./cmd/withpg -data "$$(dirname "$$pid")" -stop; \
	done
	rm -rf var
