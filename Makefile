# batchq: the verbs people type. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   ?= .venv
# Pinned emulator: S3 + DynamoDB in one process, started via scripts/moto_server.py (see docs/development.md).
MOTO_SPEC := moto[server]==5.2.5
# Pinned independent Standard Webhooks implementation: the receiver of cli/tests/webhooks.rs verifies batchq's signatures with it.
STANDARDWEBHOOKS_SPEC := standardwebhooks==1.1.0

TEST_RUNNER := $(shell cargo nextest --version >/dev/null 2>&1 && echo "cargo nextest run" || echo "cargo test")
CARGO_TEST := $(TEST_RUNNER) --workspace --no-fail-fast
# The test files that run on whichever store BATCHQ_TEST_STORE names: the
# in-memory store in the first run, DynamoDB and S3 on the emulator in the
# second, the embedded store (SQLite + files in a temporary data directory) in
# the third (selected within --workspace: a narrower package set would unify
# features differently and rebuild the dependencies). The store conformance
# suite runs on all three stores in the first run.
STORE_TESTS := pipeline crash_matrix end_to_end result_files token_budget tenants tracing_spans api api_bad_input api_fuzz untagged_duplicates backup budgets lambda_metrics activity_report results_feed deliver_function provider_webhooks_lambda

.PHONY: help venv browser test lint fmt clippy check clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

venv: $(VENV)/.installed ## Create the Python virtualenv with the pinned emulator and standardwebhooks

$(VENV)/.installed: Makefile
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check '$(MOTO_SPEC)' '$(STANDARDWEBHOOKS_SPEC)'
	@touch $@

browser: ## Install Debian's chromium (as root, when missing) for the dashboard's browser test
	scripts/install-chromium.sh

test: venv browser ## Build and run every test (store tests on the in-memory store, then again on a private local emulator, then on the embedded store; the dashboard's in headless Chromium)
	$(VENV)/bin/python scripts/check_emulator.py
	cargo build --workspace --all-targets --quiet
	scripts/with-emulator.sh $(CARGO_TEST)
	BATCHQ_TEST_STORE=emulator scripts/with-emulator.sh $(CARGO_TEST) $(addprefix --test ,$(STORE_TESTS))
	BATCHQ_TEST_STORE=embedded scripts/with-emulator.sh $(CARGO_TEST) $(addprefix --test ,$(STORE_TESTS))

lint: fmt clippy ## cargo fmt --check and clippy -D warnings

fmt:
	cargo fmt --all -- --check

clippy:
	cargo clippy --workspace --all-targets --quiet -- -D warnings

clean: ## Remove build outputs and the virtualenv
	cargo clean
	rm -rf $(VENV) .tmp

.PHONY: bench
bench: venv ## Benchmarks: hot paths, peak memory, calls and AWS cost per request, binary sizes, start times, the embedded store (writes bench/results.json)
	cargo build --profile perf --quiet -p batchq-bench
	@# The functions on their own (the workspace's default members), so they
	@# are built without the features the bench and the CLI turn on (SQLite).
	@# The embedded section alone runs no function binary.
	@if [ "$$BATCHQ_BENCH_ONLY" = embedded ]; then \
	  target/perf/batchq-bench $(BENCH_ARGS); \
	else \
	  cargo build --profile perf --quiet && \
	  BATCHQ_MOTO_METER=1 scripts/with-emulator.sh target/perf/batchq-bench $(BENCH_ARGS); \
	fi

.PHONY: demo demo-aws
demo: ## Run the whole pipeline locally end to end (embedded store + fake provider; needs only Rust) and print what it did
	scripts/demo.sh embedded

demo-aws: venv ## The same demo on DynamoDB and S3 (a private local emulator) instead of the embedded store
	scripts/demo.sh aws

.PHONY: load
load: venv ## Load test: LOAD_CLIENTS (32) clients enqueue through batchq serve for LOAD_SECONDS (60), then "lost: 0"
	scripts/load.sh

# ---------------------------------------------------------------- AWS (docs/operations.md, Deploy to AWS)
# Pinned deploy tools from PyPI, installed into .venv on first use. The SAM CLI
# gets its own virtualenv inside it (.venv/sam): its many exact pins must not
# move the emulator's.
CARGO_LAMBDA_SPEC   := cargo-lambda==1.9.2
ZIG_SPEC            := ziglang==0.17.0
CFN_LINT_SPEC       := cfn-lint==1.58.0
SAM_TRANSLATOR_SPEC := aws-sam-translator==1.115.0
SAM_CLI_SPEC        := aws-sam-cli==1.170.0
# arm64 (default) or x86_64; `make build` falls back to x86_64 by itself,
# and `make deploy` follows the last build unless ARCH is given.
ARCH ?=

.PHONY: build deploy lint-infra

$(VENV)/.lambda-tools: Makefile
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check '$(CARGO_LAMBDA_SPEC)' '$(ZIG_SPEC)'
	@touch $@

$(VENV)/.infra-lint: Makefile
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check '$(CFN_LINT_SPEC)' '$(SAM_TRANSLATOR_SPEC)'
	@touch $@

$(VENV)/sam/.installed: Makefile
	@test -x $(VENV)/sam/bin/python || $(PYTHON) -m venv $(VENV)/sam
	$(VENV)/sam/bin/pip install --quiet --disable-pip-version-check '$(SAM_CLI_SPEC)'
	@touch $@

build: $(VENV)/.lambda-tools ## Build the five Lambda bootstraps (cargo lambda --release --arm64) and print their sizes
	VENV=$(VENV) ARCH=$(or $(ARCH),arm64) infra/build.sh

deploy: $(VENV)/.lambda-tools $(VENV)/sam/.installed ## sam build + sam deploy (guided the first time; needs AWS credentials)
	VENV=$(VENV) ARCH=$(ARCH) infra/deploy.sh

lint-infra: $(VENV)/.infra-lint ## cfn-lint infra/template.yaml, as written and as SAM translates it
	$(VENV)/bin/cfn-lint infra/template.yaml
	@mkdir -p .tmp
	$(VENV)/bin/python infra/sam_translate.py infra/template.yaml .tmp/template.sam.json
	$(VENV)/bin/cfn-lint .tmp/template.sam.json
