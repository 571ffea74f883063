# foldstack — one entry point for setup, tests, the demo and deploys.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# torch must be installed as exactly this version before the package: a wider spec
# lets pip pick the newest CUDA build (several GB).
TORCH_VERSION ?= 2.13.0
# The local state dir is the CLI's own default (FOLDSTACK_HOME, else ~/.foldstack): no
# override here, so `make demo` and a later `foldstack run --local` use the same home.

.PHONY: help setup system-deps node-deps venv demo-data demo test test-fast soak lint render build clean

help: ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: system-deps node-deps venv demo-data ## install everything (system packages, node packages, virtualenv, demo DB and weights)

node-deps: ## node packages from package-lock.json: asl-validator (tests), 3dmol (the reports' 3D viewer)
	npm ci --no-audit --no-fund

system-deps: ## Debian packages the steps and tests use
	bash scripts/install_system_deps.sh

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

CHECKOV_VENV ?= .venv-checkov
CHECKOV_VERSION ?= 3.3.30
export FOLDSTACK_CHECKOV := $(CURDIR)/$(CHECKOV_VENV)/bin/checkov

venv: $(BIN)/activate
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==$(TORCH_VERSION)"
	$(BIN)/pip install -q -e ".[steps,cryoem,dev]"
	test -x $(CHECKOV_VENV)/bin/checkov || { $(PYTHON) -m venv $(CHECKOV_VENV) && \
	  $(CHECKOV_VENV)/bin/pip install -q "checkov==$(CHECKOV_VERSION)"; }

demo-data: ## build the demo sequence DB and tiny random-weight models under $FOLDSTACK_HOME (default ~/.foldstack)
	$(BIN)/foldstack demo-data

demo: setup ## set up, then fold the bundled example with both engines locally
	$(BIN)/foldstack demo

# Test processes (pytest-xdist). The Terraform checks stay on one worker (tests/conftest.py).
TEST_WORKERS ?= 2

test: ## the whole offline suite (the 1,000-run soak is `make soak`)
	$(BIN)/pytest -q -m "not soak" -n $(TEST_WORKERS) --dist loadgroup

soak: ## the full fault-injected soak (slow; run by hand)
	$(BIN)/pytest -q -m soak -s

# test-fast leaves out the `slow` (models, MMseqs2 index builds, Chromium, bandit), `e2e`
# (whole runs with real steps) and `terraform` tests; whole runs with the fake steps stay in.
test-fast: ## the suite without Terraform, whole-run and model tests
	$(BIN)/pytest -q -m "not slow and not soak and not terraform and not e2e" -n $(TEST_WORKERS) --dist loadgroup

lint: ## ruff + bandit
	$(BIN)/ruff check src lambdas tests scripts bench
	$(BIN)/bandit -q -c pyproject.toml -r src lambdas

render: ## render statemachines/*/definition.asl.json.j2 into statemachines/rendered/
	$(BIN)/foldstack render

build: render ## build deterministic Lambda zips into build/lambdas/
	$(PY) scripts/build_lambdas.py --out build/lambdas

clean:
	rm -rf build .pytest_cache

-include terraform/terraform.mk
