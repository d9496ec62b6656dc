# batchq: the verbs people type. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   ?= .venv
# Pinned emulator: S3 + DynamoDB in one process, started via scripts/moto_server.py (see README, Development).
MOTO_SPEC := moto[server]==5.2.5

CARGO_TEST := $(shell cargo nextest --version >/dev/null 2>&1 && echo "cargo nextest run --workspace --no-fail-fast" || echo "cargo test --workspace --no-fail-fast")

.PHONY: help venv test lint fmt clippy check clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

venv: $(VENV)/.installed ## Create the Python virtualenv with the pinned emulator

$(VENV)/.installed: Makefile
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check '$(MOTO_SPEC)'
	@touch $@

test: venv ## Build and run every test against a private local emulator
	cargo build --workspace --all-targets --quiet
	scripts/with-emulator.sh $(CARGO_TEST)

lint: fmt clippy ## cargo fmt --check and clippy -D warnings

fmt:
	cargo fmt --all -- --check

clippy:
	cargo clippy --workspace --all-targets --quiet -- -D warnings

clean: ## Remove build outputs and the virtualenv
	cargo clean
	rm -rf $(VENV) .tmp

.PHONY: demo
demo: venv ## Run the whole pipeline locally end to end (emulator + fake provider) and print what it did
	scripts/demo.sh
