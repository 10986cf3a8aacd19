# Arbiter's single entry point. Run `make` (or `make help`) for the targets.
#
# Tools (buf, protoc plugins, govulncheck) are pinned in go.mod and run with `go tool`.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

GO        ?= go
BIN       := bin/arbiter
# Test timeout per package. `make test` takes under 8 minutes on a busy 2-core machine: it runs
# every test with the race detector, the fuzz targets on their seed corpora (go test runs
# those as ordinary tests), and no fuzzing; `make test-long` adds the fuzzing.
TEST_TIMEOUT ?= 8m
# Budget per fuzz target: `make fuzz` runs each for FUZZTIME, `make fuzz-short` (CI, after make
# test) for FUZZTIME_SHORT, `make test-long` for FUZZTIME_LONG. Building a target's
# instrumented test binary takes 20-60 s on 2 cores, whatever the budget. The CI and long
# budgets count executions (Nx) instead of time: with a duration, Go 1.26's fuzz coordinator can
# report a spurious "context deadline exceeded" failure when the time runs out under load
# (go.dev/issue/75804, fixed in Go 1.27), which would make CI flaky. A run of `make fuzz` that
# fails that way with no input written under testdata/fuzz/ is that bug, not a finding.
FUZZTIME ?= 30s
FUZZTIME_SHORT ?= 2000x
FUZZTIME_LONG ?= 100000x
# Benchmarks: packages and time per benchmark.
BENCH_PKGS ?= ./...
BENCHTIME ?= 1s
# Arguments for `make run`, for example RUN_ARGS="--redis redis://127.0.0.1:6379".
RUN_ARGS ?=

.PHONY: help
help: ## Show this help.
	@echo "usage: make TARGET"
	@echo
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sort | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build the arbiter binary into bin/arbiter.
	@echo "build: fetching the Go modules $(BIN) needs (a first build downloads them: up to a minute)"
	@$(GO) list -deps ./cmd/arbiter >/dev/null
	@echo "build: compiling $(BIN) (a first build compiles every dependency: about 2 minutes on 2 cores; later builds take seconds)"
	$(GO) build -o $(BIN) ./cmd/arbiter

.PHONY: run
run: build ## Build and run `arbiter serve` on the embedded store with the default policy.
	@echo "run: starting arbiter serve: gRPC and Connect JSON on 127.0.0.1:50051, admin and the console on http://127.0.0.1:8080/ (Ctrl-C stops it)"
	./$(BIN) serve $(RUN_ARGS)

.PHONY: redis-server
redis-server: ## Install redis-server (Debian package) when it is missing; the tests start their own.
	@if ! command -v redis-server >/dev/null 2>&1; then \
		echo "redis-server not found: installing the Debian package"; \
		sudo=""; if [ "$$(id -u)" != 0 ]; then sudo=sudo; fi; \
		$$sudo apt-get update; \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y --no-install-recommends redis-server; \
	fi

.PHONY: nats-server
nats-server: ## Install nats-server (Debian package) when it is missing; the tests start their own with JetStream.
	@if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then \
		echo "nats-server not found: installing the Debian package"; \
		sudo=""; if [ "$$(id -u)" != 0 ]; then sudo=sudo; fi; \
		$$sudo apt-get update; \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y --no-install-recommends nats-server; \
	fi

.PHONY: chromium
chromium: ## Install Debian's chromium when it is missing: the console's browser tests drive it headless.
	@if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then \
		echo "chromium not found: installing the Debian package"; \
		sudo=""; if [ "$$(id -u)" != 0 ]; then sudo=sudo; fi; \
		$$sudo apt-get update; \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y --no-install-recommends chromium; \
	fi

.PHONY: promtool
promtool: ## Put promtool in bin/ when it is not on the PATH (extracted from Debian's prometheus package; nothing is installed or started).
	@if ! command -v promtool >/dev/null 2>&1 && [ ! -x bin/promtool ]; then \
		echo "promtool not found: extracting it from the Debian package prometheus into bin/"; \
		dir=$$(mktemp -d); trap 'rm -rf "$$dir"' EXIT; \
		if ! (cd "$$dir" && apt-get download prometheus >/dev/null 2>&1); then \
			sudo=""; if [ "$$(id -u)" != 0 ]; then sudo=sudo; fi; \
			$$sudo apt-get update; \
			(cd "$$dir" && apt-get download prometheus); \
		fi; \
		dpkg-deb -x "$$dir"/prometheus_*.deb "$$dir/x"; \
		mkdir -p bin; cp "$$dir/x/usr/bin/promtool" bin/promtool; \
	fi

# The archive's tests use the PostgreSQL at 127.0.0.1:POSTGRES_PORT, user postgres, trust
# authentication (archive/archivetest; ARBITER_TEST_POSTGRES names another).
POSTGRES_PORT ?= 5432

.PHONY: postgres
postgres: ## Make sure a PostgreSQL answers on 127.0.0.1:5432; start a throwaway cluster when none does.
	@if (exec 3<>/dev/tcp/127.0.0.1/$(POSTGRES_PORT)) 2>/dev/null; then \
		if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p $(POSTGRES_PORT); then \
			echo "postgres: 127.0.0.1:$(POSTGRES_PORT) is taken, but no PostgreSQL there is ready"; exit 1; \
		fi; \
		exit 0; \
	fi; \
	bindir=$$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1); \
	if [ -z "$$bindir" ]; then \
		echo "postgres: PostgreSQL not found: installing the Debian package, without its default cluster"; \
		sudo=""; if [ "$$(id -u)" != 0 ]; then sudo=sudo; fi; \
		$$sudo mkdir -p /etc/postgresql-common; \
		[ -e /etc/postgresql-common/createcluster.conf ] || \
			echo "create_main_cluster = false" | $$sudo tee /etc/postgresql-common/createcluster.conf >/dev/null; \
		$$sudo apt-get update; \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y --no-install-recommends \
			-o Dpkg::Options::=--force-confold postgresql; \
		bindir=$$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1); \
	fi; \
	dir=$$(mktemp -d /tmp/arbiter-postgres.XXXXXX); as=""; \
	if [ "$$(id -u)" = 0 ]; then chown postgres: "$$dir"; as="runuser -u postgres --"; fi; \
	$$as "$$bindir/initdb" -D "$$dir/data" -U postgres --auth=trust >"$$dir/initdb.log"; \
	$$as "$$bindir/pg_ctl" -D "$$dir/data" -l "$$dir/postgres.log" -w \
		-o "-c listen_addresses=127.0.0.1 -p $(POSTGRES_PORT) -k $$dir" start >/dev/null || \
		{ cat "$$dir/postgres.log"; echo "postgres: the throwaway cluster did not start"; exit 1; }; \
	echo "postgres: started a throwaway cluster on 127.0.0.1:$(POSTGRES_PORT) in $$dir" \
		"(stop it with: $$as $$bindir/pg_ctl -D $$dir/data stop)"

.PHONY: test
test: redis-server nats-server postgres promtool chromium ## Run every test with the race detector (fuzz targets on their seeds only); under 8 minutes.
	ARBITER_REQUIRE_BROWSER=1 $(GO) test -race -timeout $(TEST_TIMEOUT) ./...

.PHONY: screenshots
screenshots: chromium ## Refresh the console's screenshots in docs/ (console-*.png) from a real browser.
	$(GO) test -run '^TestConsoleInBrowser$$' -count 1 ./cmd/arbiter -screenshots

.PHONY: test-long
test-long: test ## make test, then each fuzz target for FUZZTIME_LONG executions (a few minutes a target).
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME_LONG)

.PHONY: fuzz-short
fuzz-short: ## Each fuzz target for FUZZTIME_SHORT executions: the short pass CI runs after make test.
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME_SHORT)

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 30s).
	@out=$$(mktemp); trap 'rm -f "$$out"' EXIT; \
	for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for target in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$$dir"/*_test.go | sed 's/^func //'); do \
			echo "fuzz $$dir $$target ($(FUZZTIME))"; \
			if ! $(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) "$$dir" >"$$out" 2>&1; then \
				cat "$$out"; echo "fuzz $$target failed; the failing input is under $$dir/testdata/fuzz/$$target"; exit 1; \
			fi; \
		done; \
	done

.PHONY: bench
bench: ## Run the benchmarks (BENCH_PKGS, BENCHTIME) with allocation counts.
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) $(BENCH_PKGS)

.PHONY: loadtest
loadtest: build ## Run the standard load-test scenario against the embedded store and Redis.
	loadtest/scenario.sh $(BIN)

.PHONY: loadtest-faults
loadtest-faults: build redis-server ## Load test through a Redis stall, kill and restart; reports each phase (errors, degraded share, p99, decisions per event id).
	loadtest/faults.sh $(BIN)

.PHONY: lint
lint: ## go vet, buf lint, buf format check and govulncheck.
	$(GO) vet ./...
	$(GO) tool buf lint
	$(GO) tool buf format -d --exit-code
	@out=$$(mktemp); \
	if $(GO) tool govulncheck ./... >"$$out" 2>&1; then cat "$$out"; rm -f "$$out"; \
	elif grep -qiE 'fetching vulnerabilities|dial tcp|no such host|connection refused|i/o timeout' "$$out"; then \
		echo "govulncheck: skipped, the vulnerability database is not reachable"; rm -f "$$out"; \
	else cat "$$out"; rm -f "$$out"; exit 1; fi

# The API's descriptors with their comments (a FileDescriptorSet with source info), embedded by gen/arbiter/v1/descriptor.go for server reflection: protoc-gen-go drops the
# comments from the descriptors it embeds, and grpcurl's describe shows them from this one.
DESCRIPTOR_SET := gen/arbiter/v1/arbiter.binpb

.PHONY: generate
generate: ## Regenerate the Go code and the OpenAPI document under gen/ from proto/.
	$(GO) tool buf generate
	$(GO) tool buf build --as-file-descriptor-set -o $(DESCRIPTOR_SET)
	@printf '%s\n' '// Code generated by make generate. DO NOT EDIT.' '' 'package arbiterv1' '' 'import _ "embed"' '' \
		'// DescriptorSet holds the descriptors of proto/arbiter/v1 and their imports with their' \
		'// comments (source info), as a serialized google.protobuf.FileDescriptorSet. Server' \
		'// reflection serves them, so that clients such as grpcurl show the documentation.' '//' \
		'//go:embed $(notdir $(DESCRIPTOR_SET))' 'var DescriptorSet []byte' >gen/arbiter/v1/descriptor.go
	@printf '%s\n' '// Code generated by make generate. DO NOT EDIT.' '' \
		'// Package openapi holds the OpenAPI 3.1 document of the Connect protocol (JSON over HTTP' \
		'// POST) for proto/arbiter/v1, written by protoc-gen-connect-openapi.' 'package openapi' '' 'import _ "embed"' '' \
		'// Document is the OpenAPI document, as JSON.' '//' \
		'//go:embed arbiter.openapi.json' 'var Document []byte' >gen/openapi/openapi.go

.PHONY: checkgenerate
checkgenerate: generate ## Fail when the checked-in generated code is stale.
	@if [ -n "$$(git status --porcelain -- gen)" ]; then \
		git status --porcelain -- gen; git diff --stat -- gen; \
		echo "gen/ is stale: run make generate and commit the result"; exit 1; \
	fi

.PHONY: clean
clean: ## Remove build and test output.
	rm -rf bin loadtest-report
