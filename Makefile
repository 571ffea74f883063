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

.PHONY: help setup system-deps node-deps venv demo-data terraform-check demo test test-fast soak lint render build clean

help: ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: system-deps node-deps venv demo-data terraform-check ## install everything (system packages, node packages, virtualenv, demo DB and weights), then check terraform is there

# Terraform is not installed by setup: HashiCorp ships it only from its own release site and
# apt repository, which this project's machines do not reach (PyPI, Debian, npm only). CI
# gets it from the machine image or, on GitHub, setup-terraform. Under
# FOLDSTACK_REQUIRE_TOOLS=1 (CI) a missing terraform fails here, before the tests.
terraform-check: ## say whether terraform is on PATH for the Terraform and deploy tests (CI: fail if not)
	@if command -v $(TERRAFORM) >/dev/null 2>&1; then $(TERRAFORM) version 2>/dev/null | sed -n 1p; \
	else msg="terraform is not on PATH: the Terraform and AWS-emulator deploy tests need Terraform 1.11.x (HashiCorp's release, not in the Debian, PyPI or npm registries, so make setup cannot install it)"; \
	  if [ "$${FOLDSTACK_REQUIRE_TOOLS:-}" = 1 ]; then echo "error: $$msg" >&2; exit 1; fi; \
	  echo "warning: $$msg; those tests will be skipped" >&2; fi

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

# test-fast leaves out the `slow` (seconds or more each: models, MMseqs2 index builds, Chromium,
# bandit, whole local runs, killed drivers), `e2e` (whole runs with real steps) and `terraform`
# tests: what remains is the unit, contract, handler and CLI-parsing layer.
test-fast: ## the suite without Terraform, whole-run and model tests
	$(BIN)/pytest -q -m "not slow and not soak and not terraform and not e2e" -n $(TEST_WORKERS) --dist loadgroup

lint: ## ruff + bandit
	$(BIN)/ruff check src lambdas tests scripts bench
	$(BIN)/bandit -q -c pyproject.toml -r src lambdas

render: ## render statemachines/*/definition.asl.json.j2 into statemachines/rendered/
	$(BIN)/foldstack render

# The zips carry the reports' 3D viewer (npm 3dmol) and the build refuses without it: a checkout
# that has not run `make setup` (the plan and deploy workflows) installs it here, once.
VIEWER_JS := node_modules/3dmol/build/3Dmol-min.js
$(VIEWER_JS):
	npm ci --no-audit --no-fund

build: render | $(VIEWER_JS) ## build deterministic Lambda zips into build/lambdas/
	$(PY) scripts/build_lambdas.py --out build/lambdas

clean:
	rm -rf build .pytest_cache

-include terraform/terraform.mk
