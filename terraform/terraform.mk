# Terraform targets, included by the top-level Makefile (which defines VENV, BIN, PY,
# and `build`: render the ASL + build the Lambda zips).
#
#   make plan ENV=dev       render, build zips (+ dependency layer), init, plan -out
#   make apply ENV=dev      apply the saved plan, nothing else (prod: CI only)
#   make bootstrap ENV=dev  a new account, once: the state bucket, then the env's ECR
#                           repositories (before the first image push)
#   make tf-check           the offline chain: fmt, init/validate, terraform test,
#                           checkov, hadolint, workflow YAML, README drift (pytest)
#   make test-deploy        apply + audit + use + destroy envs/dev on a moto server
#   make tf-docs            regenerate the module README tables
#
# A local provider mirror is used when one is found (scripts/tf_mirror.py,
# FOLDSTACK_TF_PLUGIN_DIR overrides); otherwise Terraform downloads from the registry.

TF_ENVS       := dev prod
TERRAFORM     ?= terraform
TF_ENV_DIR     = terraform/envs/$(ENV)
TF_PLAN_FILE  := plan.out
TF_CLI_RC     := build/terraform.rc
LAMBDA_OUT    := build/lambdas
# Set by CI to the commit SHA the images were built from; empty = terraform.tfvars.
IMAGE_TAG     ?=
TF_MIRROR      = $(shell python3 scripts/tf_mirror.py --cli-config $(TF_CLI_RC) 2>/dev/null)
TF             = $(if $(TF_MIRROR),TF_CLI_CONFIG_FILE=$(CURDIR)/$(TF_CLI_RC) )$(TERRAFORM) -chdir=$(TF_ENV_DIR)

# CI means GitHub Actions here (deploy.yml); a plain CI=true from a laptop is not enough.
TF_IN_CI       = $(and $(filter true,$(CI)),$(filter true,$(GITHUB_ACTIONS)))

.PHONY: plan apply bootstrap tf-check test-deploy tf-docs tf-fmt build-lambda-deps tf-env-check

tf-env-check:
	$(if $(ENV),,$(error ENV is required: make plan ENV=<$(subst $() ,|,$(TF_ENVS))>))
	$(if $(filter $(ENV),$(TF_ENVS)),,$(error unknown ENV '$(ENV)': expected one of $(TF_ENVS)))
	$(if $(and $(filter prod,$(ENV)),$(filter apply,$(MAKECMDGOALS)),$(if $(TF_IN_CI),,x)),$(error refusing to apply ENV=prod outside CI: merge to main and approve the prod deployment in GitHub))
	@:

$(LAMBDA_OUT)/layer-deps.zip:
	$(PY) scripts/build_lambdas.py --out $(LAMBDA_OUT) --deps

build-lambda-deps: ## build the Lambda dependency layer (needs a package index)
	$(PY) scripts/build_lambdas.py --out $(LAMBDA_OUT) --deps

plan: tf-env-check build $(LAMBDA_OUT)/layer-deps.zip ## terraform plan ENV=dev|prod into terraform/envs/$(ENV)/plan.out
	$(TF) init -input=false -backend-config=backend.hcl
	$(TF) plan -input=false -out=$(TF_PLAN_FILE)$(if $(IMAGE_TAG), -var image_tag=$(IMAGE_TAG))

apply: tf-env-check ## apply the saved plan of ENV (prod: only from CI)
	@test -f $(TF_ENV_DIR)/$(TF_PLAN_FILE) || { echo "no saved plan in $(TF_ENV_DIR): run make plan ENV=$(ENV) first" >&2; exit 1; }
	$(TF) init -input=false -backend-config=backend.hcl -lockfile=readonly
	$(TF) apply -input=false $(TF_PLAN_FILE)

# A new account, once, by a person with admin rights (prod too: it creates no compute,
# only the state bucket, the KMS key and the image repositories). Then images can be
# pushed, and the first deploy applies the rest. Terraform asks before applying.
bootstrap: tf-env-check build $(LAMBDA_OUT)/layer-deps.zip ## new account: state bucket + ECR repositories of ENV (before the first image push)
	$(PY) terraform/bootstrap/state_bucket.py --backend-config $(TF_ENV_DIR)/backend.hcl
	$(TF) init -input=false -backend-config=backend.hcl
	$(TF) apply -target=module.platform.module.ecr$(if $(IMAGE_TAG), -var image_tag=$(IMAGE_TAG))

test-deploy: ## apply/audit/use/destroy terraform/envs/dev on a moto server (part of make test)
	$(BIN)/pytest -q -m deploy tests/terraform

tf-check: ## offline Terraform/container/CI checks (pytest -m terraform)
	$(BIN)/pytest -q -m terraform tests/terraform

tf-docs: ## regenerate terraform/modules/*/README.md input/output tables
	python3 scripts/tf_docs.py

tf-fmt: ## terraform fmt -recursive
	$(TERRAFORM) fmt -recursive terraform
