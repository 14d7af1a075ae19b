# idgraph — `make help` lists the targets.
#
# Slow, stable artefacts live outside the clone so a fresh clone builds warm:
# the cargo target dir (with the compiled RocksDB) under ~/.cache/idgraph.
SHELL := /bin/bash
CACHE ?= $(HOME)/.cache/idgraph
export CARGO_TARGET_DIR ?= $(CACHE)/target
CARGO ?= cargo
BIN := $(CARGO_TARGET_DIR)/release
export IDGRAPH_BIN := $(BIN)/idgraph
RUN_DIR ?= out/run
TANSU_VERSION := 0.6.0
export IDGRAPH_TANSU ?= $(CACHE)/tools/bin/tansu
TANSU := $(IDGRAPH_TANSU)
BENCH_DIR ?= $(CACHE)/bench

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

deps: ## Install what the build and tests need (libclang for RocksDB, OpenSSL for TLS, socat for the TLS test)
	@# libclang itself, not libclang-cpp (which some images ship alone)
	@missing=; \
	if ! ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 && ! ls /usr/lib/x86_64-linux-gnu/libclang-[0-9]*.so* >/dev/null 2>&1; then missing="$$missing libclang-dev"; fi; \
	command -v pkg-config >/dev/null || missing="$$missing pkg-config"; \
	pkg-config --exists openssl 2>/dev/null || missing="$$missing libssl-dev"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v socat >/dev/null || missing="$$missing socat"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		sudo=; if [ "$$(id -u)" != 0 ]; then \
			if command -v sudo >/dev/null; then sudo=sudo; else \
				echo "missing:$$missing; this user cannot install them: run 'apt-get install$$missing' as root" >&2; exit 1; fi; \
		fi; \
		mkdir -p $(CACHE); log=$(CACHE)/apt-install.log; \
		if ! ($$sudo apt-get update -qq && $$sudo apt-get install -y -qq $$missing) >$$log 2>&1; then \
			echo "installing$$missing failed; the end of $$log:" >&2; tail -n 20 $$log >&2; exit 1; \
		fi; \
	fi

build: deps ## Build release binaries; leaves target/release/idgraph
	$(CARGO) build --release --workspace --bins
	@mkdir -p target/release
	@for b in idgraph idgraph-loadgen idgraph-score idgraph-produce idgraph-consume idgraph-ufbase idgraph-parsebench idgraph-recbench; do cp -f $(BIN)/$$b target/release/$$b; done
	@echo "built target/release/idgraph (and the load tools: idgraph-loadgen, -score, -produce, -consume, -ufbase, -parsebench, -recbench)"

run: build ## The engine on an embedded broker, fed with generated touchpoints (no external service; Ctrl-C stops)
	BIN=$(BIN) RUN_DIR=$(RUN_DIR) loadtest/run-embedded.sh

replay-demo: build ## Generate sample touchpoints, replay them from a file, score the profiles
	@rm -rf $(RUN_DIR) && mkdir -p $(RUN_DIR)
	$(BIN)/idgraph-loadgen --persons 2000 --events 20000 --format segment --out $(RUN_DIR)/events.ndjson --truth $(RUN_DIR)/truth.ndjson
	$(BIN)/idgraph replay --format segment --state $(RUN_DIR)/state --out $(RUN_DIR)/out $(RUN_DIR)/events.ndjson
	$(BIN)/idgraph profiles --state $(RUN_DIR)/state > $(RUN_DIR)/profiles.ndjson
	$(BIN)/idgraph-score --truth $(RUN_DIR)/truth.ndjson --profiles $(RUN_DIR)/profiles.ndjson

tools: ## Install the test broker (tansu) into the cache if missing
	@if [ ! -x $(TANSU) ]; then \
		echo "installing tansu $(TANSU_VERSION) into $(CACHE)/tools (once; 7-15 minutes)"; \
		env -u CARGO_TARGET_DIR $(CARGO) install tansu --version $(TANSU_VERSION) --features dynostore --locked --root $(CACHE)/tools; \
	fi

fmt: ## Format the code
	$(CARGO) fmt --all

lint: deps ## rustfmt check, clippy -D warnings, and no identifier values in log lines
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
	@if git grep -nE '(eprintln!|info!|warn!|error!|debug!|trace!)\(.*\.value\(\)' -- '*.rs'; then \
		echo "identifier values must not reach logs: print the IdentKey (redacted) instead"; exit 1; fi

test: deps tools lint build ## Lint, build, then run every test (unit, simulation, end-to-end)
	@mkdir -p out; set -o pipefail; status=0; \
	$(CARGO) test --release --workspace 2>&1 | tee out/test.log || status=$$?; \
	awk '/^test result:/ {p += $$4; f += $$6} END {printf "tests: %d passed, %d failed\n", p, f}' out/test.log; \
	exit $$status

bench-core: build ## Replay 10M events (P=1 and P=8) next to the union-find baseline
	BENCH_DIR=$(BENCH_DIR) BIN=$(BIN) loadtest/bench-core.sh

bench-parse: build ## The input parser alone: 2M Segment events in memory, microseconds per event
	@data=$(BENCH_DIR)/events-v2-2000000-600000.ndjson; mkdir -p $(BENCH_DIR); \
	[ -s $$data ] || $(BIN)/idgraph-loadgen --persons 600000 --events 2000000 --format segment --seed 42 --out $$data; \
	$(BIN)/idgraph-parsebench --format segment $$data

bench-records: build ## The profile record codec alone: hand-written against serde, nanoseconds per record
	@data=$(BENCH_DIR)/events-v2-2000000-600000.ndjson; mkdir -p $(BENCH_DIR); \
	[ -s $$data ] || $(BIN)/idgraph-loadgen --persons 600000 --events 2000000 --format segment --seed 42 --out $$data; \
	$(BIN)/idgraph-recbench --format segment $$data

bench-kafka: build tools ## End-to-end events/s through tansu next to the raw consume rate of the same topic (RUNS=3 runs, medians)
	BENCH_DIR=$(BENCH_DIR) BIN=$(BIN) TANSU=$(TANSU) loadtest/bench-kafka-runs.sh

clean: ## Remove build outputs of this clone (keeps the shared cache)
	rm -rf target out

.PHONY: help deps build run replay-demo tools fmt lint test bench-core bench-parse bench-records bench-kafka clean
