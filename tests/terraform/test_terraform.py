"""The offline Terraform chain (docs/terraform.md), the container and CI checks, wrapped in pytest.

fmt, init -backend=false against the local provider mirror, validate, `terraform test`
(mock_provider, plan-mode assertions) per module, checkov, hadolint, workflow YAML,
README drift, and the Makefile's plan/apply targets.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from .conftest import (
    ENVS,
    MODULES,
    REPO,
    ROOTS,
    TERRAFORM_DIR,
    TESTED_MODULES,
    need_terraform,
    require_tool,
)

pytestmark = pytest.mark.terraform

WORKFLOWS = REPO / ".github" / "workflows"
DOCKERFILES = sorted((REPO / "containers").glob("*/Dockerfile"))
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def _needs_terraform() -> str:
    return need_terraform("the Terraform checks")


def test_layout_every_module_has_the_standard_files():
    for module in MODULES:
        for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md"):
            assert (TERRAFORM_DIR / "modules" / module / name).is_file(), f"modules/{module}/{name} is missing"
    assert set(ENVS) == {"dev", "prod"}
    assert set(MODULES) >= {"storage", "network", "fsx", "ecr", "iam", "batch", "lambdas", "workflow",
                            "monitoring", "config", "platform"}


def test_envs_hold_no_resources_and_use_locked_s3_backend():
    for env in ENVS:
        text = "\n".join(p.read_text() for p in (TERRAFORM_DIR / "envs" / env).glob("*.tf"))
        assert not re.search(r'^\s*(resource|data)\s+"', text, re.M), f"envs/{env} must hold no resources"
        assert len(re.findall(r'^module\s+"', text, re.M)) == 1 and "../../modules/platform" in text
        assert re.search(r'backend\s+"s3"\s*\{[^}]*use_lockfile\s*=\s*true', text, re.S)
        assert "allowed_account_ids" in text and "default_tags" in text
        backend = (TERRAFORM_DIR / "envs" / env / "backend.hcl").read_text()
        assert f"foldstack/{env}/" in backend, "one state key per env"


def test_fmt():
    terraform = _needs_terraform()
    proc = subprocess.run([terraform, "fmt", "-check", "-recursive", "-diff", "-no-color", str(TERRAFORM_DIR)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"terraform fmt -check found changes:\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("rel", ROOTS)
def test_init_and_validate(tf, rel):
    results = tf.results[rel]
    assert results["init"].rc == 0, results["init"].explain()
    assert results["validate"].rc == 0, results["validate"].explain()


@pytest.mark.parametrize("module", TESTED_MODULES)
def test_terraform_test(tf, module):
    result = tf.results[f"modules/{module}"].get("test")
    assert result is not None, tf.results[f"modules/{module}"]["init"].explain()
    assert result.rc == 0 and re.search(r"Success! \d+ passed, 0 failed", result.output), result.explain()


def test_every_module_has_terraform_tests():
    untested = sorted(set(MODULES) - set(TESTED_MODULES))
    assert not untested, f"modules without tests/*.tftest.hcl: {untested}"


def test_checkov_has_no_failures_and_every_skip_has_a_reason():
    checkov = require_tool("checkov", "FOLDSTACK_CHECKOV")
    env = dict(os.environ, BC_SKIP_MAPPING="TRUE", CHECKOV_RUN_SCA_PACKAGE_SCAN_V2="false", PYTHONWARNINGS="ignore")
    for key in ("BC_API_KEY", "PRISMA_API_URL"):
        env.pop(key, None)
    proc = subprocess.run(
        [checkov, "-d", str(TERRAFORM_DIR), "--framework", "terraform", "--skip-download", "--quiet",
         "--compact", "--skip-path", "tests", "-o", "json"],
        capture_output=True, text=True, env=env, check=False, timeout=300,
    )
    assert proc.stdout.strip(), proc.stderr[-4000:]
    reports = json.loads(proc.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [(c["check_id"], c["resource"], c["file_path"])
              for r in reports for c in r["results"].get("failed_checks", [])]
    assert not failed, f"checkov failures: {failed}"
    assert all(r["summary"]["parsing_errors"] == 0 for r in reports), "checkov could not parse some files"
    skip_re = re.compile(r"#\s*checkov:skip=(CKV2?_AWS_\d+)(:?)(.*)$")
    for path in TERRAFORM_DIR.rglob("*.tf"):
        for line in path.read_text().splitlines():
            if (m := skip_re.search(line)):
                assert m.group(2) == ":" and len(m.group(3).strip()) >= 20, f"{path}: skip {m.group(1)} needs a reason"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint(dockerfile):
    hadolint = require_tool("hadolint", "FOLDSTACK_HADOLINT")
    proc = subprocess.run([hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


IMAGE_EXTRAS = {"msa": "steps", "predict": "steps", "cryoem-cpu": "cryoem", "cryoem-gpu": "cryoem"}


def test_dockerfiles_are_non_root_and_pinned():
    assert {p.parent.name for p in DOCKERFILES} >= {"msa", "predict", "cryoem-cpu", "cryoem-gpu"}
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        users = re.findall(r"^USER\s+(\S+)", text, re.M)
        assert users and users[-1] == "1000:1000", f"{dockerfile}: must end as uid 1000 (Batch's container_user)"
        assert re.search(r"^ARG BASE_REGISTRY=", text, re.M) and "FROM ${BASE_REGISTRY}/" in text
        # every stage starts from the one pinned base (a build stage too)
        assert set(re.findall(r"^FROM\s+(\S+)", text, re.M)) == {"${BASE_REGISTRY}/${BASE_IMAGE}"}, dockerfile
        assert ":latest" not in text
        if re.search(r"\btorch\b", text.split("pip install", 1)[-1]):
            assert re.search(r'torch==\$\{TORCH_VERSION\}', text), f"{dockerfile}: torch must be pinned"
        # every step image installs the package (its jobs run `foldstack step ...`); ours with the
        # extra their steps import — a new workload's image picks its own (docs/onboarding.md)
        extra = IMAGE_EXTRAS.get(dockerfile.parent.name)
        wanted = f'"/opt/foldstack[{extra}]"' if extra else '"/opt/foldstack'
        assert wanted in text, f"{dockerfile}: installs {wanted.strip(chr(34))}"


def test_cryoem_gpu_image_builds_a_reviewed_relion_commit():
    text = (REPO / "containers" / "cryoem-gpu" / "Dockerfile").read_text()
    assert re.search(r"^ARG RELION_COMMIT=[0-9a-f]{40}$", text, re.M)
    assert 'test "$(git -C /src/relion rev-parse HEAD)" = "${RELION_COMMIT}"' in text
    assert re.search(r"^ARG RELION_TAG=3\.1\.\d+$", text, re.M)
    cpu = (REPO / "containers" / "cryoem-cpu" / "Dockerfile").read_text()
    cpu_relion = re.search(r"^ARG RELION_VERSION=(\d+\.\d+\.\d+)-", cpu, re.M).group(1)
    gpu_relion = re.search(r"^ARG RELION_TAG=(\S+)$", text, re.M).group(1)
    assert cpu_relion == gpu_relion, "the CPU and GPU steps run the same RELION release (they share STAR files)"


def _workflows() -> dict[str, dict]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(WORKFLOWS.glob("*.yml"))}


def test_workflows_parse_and_exist():
    assert set(_workflows()) >= {"ci.yml", "plan.yml", "deploy.yml", "images.yml"}


def test_workflow_actions_are_pinned_by_sha_and_permissions_are_least():
    for name, wf in _workflows().items():
        assert wf.get("permissions") in ({"contents": "read"}, {}), f"{name}: top-level permissions must be minimal"
        for job_name, job in wf["jobs"].items():
            for perm, level in (job.get("permissions") or {}).items():
                assert perm in {"contents", "id-token", "pull-requests"}, (name, job_name, perm)
                assert level in {"read", "write"}, (name, job_name, perm)
                assert perm != "contents" or level == "read", f"{name}/{job_name}: contents must stay read-only"
            if "uses" in job:
                assert job["uses"].startswith("./.github/workflows/"), f"{name}/{job_name}: {job['uses']}"
            for step in job.get("steps", []):
                if "uses" in step:
                    assert SHA_PIN.match(step["uses"]), f"{name}/{job_name}: {step['uses']} is not pinned by full SHA"


def test_ci_has_no_cloud_credentials():
    text = (WORKFLOWS / "ci.yml").read_text()
    assert "configure-aws-credentials" not in text and "id-token" not in text
    assert "make test" in text


def _runs(job: dict, text: str) -> bool:
    return any(text in str(step.get("run", "")) for step in job.get("steps", []))


def test_prod_apply_sits_behind_the_protected_environment():
    jobs = _workflows()["deploy.yml"]["jobs"]
    prod_applies = [j for j in jobs.values() if _runs(j, "apply ENV=prod")]
    assert len(prod_applies) == 1, "exactly one job applies prod"
    job = prod_applies[0]
    assert job.get("environment") in ("prod", {"name": "prod"}), "the prod apply must run in environment: prod"
    steps = job["steps"]
    assert any("download-artifact" in s.get("uses", "") for s in steps), "prod applies the approved plan artifact"
    needs = job["needs"] if isinstance(job["needs"], list) else [job["needs"]]
    assert any("plan-prod" in n for n in needs)
    dev_apply = [k for k, j in jobs.items() if _runs(j, "apply ENV=dev")]
    assert dev_apply and jobs["plan-prod"]["needs"] and all(
        "environment" not in j or j["environment"] != "prod" for k, j in jobs.items() if k != "apply-prod"
    )


def test_module_readme_tables_are_up_to_date():
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "tf_docs.py"), "--check"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_config_readme_documents_every_parameter():
    text = (TERRAFORM_DIR / "modules" / "config" / "README.md").read_text()
    for name in ("state_machine_arn", "workflows", "input_prefix", "allowed_input_prefixes", "output_prefix",
                 "scratch_bucket", "region", "log_group_batch", "queues", "msa_cache_uri", "allowed_output_prefixes",
                 "size_classes", "db_uri"):
        assert f"`{name}`" in text


def _make(*args: str, ci: bool = False) -> subprocess.CompletedProcess:
    """``make -n <args>`` at the top of the repository (what it would run, running nothing)."""
    if not (REPO / "Makefile").exists():
        pytest.skip("no top-level Makefile")
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "GITHUB_ACTIONS", "ENV", "IMAGE_TAG", "MAKEFLAGS")}
    if ci:
        env.update(CI="true", GITHUB_ACTIONS="true")
    return subprocess.run(["make", "--no-print-directory", "-n", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, check=False)


def _terraform_commands(proc: subprocess.CompletedProcess) -> list[str]:
    """The terraform commands of a ``make -n`` that succeeded."""
    assert proc.returncode == 0, proc.stderr
    return [re.sub(r"^TF_CLI_CONFIG_FILE=\S+ ", "", line) for line in proc.stdout.splitlines()
            if "terraform -chdir" in line]


def test_make_plan_prints_the_terraform_commands():
    proc = _make("plan", "ENV=dev")
    assert _terraform_commands(proc) == [
        "terraform -chdir=terraform/envs/dev init -input=false -backend-config=backend.hcl",
        "terraform -chdir=terraform/envs/dev plan -input=false -out=plan.out",
    ]
    assert "scripts/build_lambdas.py --out build/lambdas" in proc.stdout
    tagged = _terraform_commands(_make("plan", "ENV=prod", "IMAGE_TAG=abc123"))
    assert tagged[-1].endswith("plan -input=false -out=plan.out -var image_tag=abc123")


def test_make_apply_uses_only_a_saved_plan():
    assert _terraform_commands(_make("apply", "ENV=dev")) == [
        "terraform -chdir=terraform/envs/dev init -input=false -backend-config=backend.hcl -lockfile=readonly",
        "terraform -chdir=terraform/envs/dev apply -input=false plan.out",
    ]


def test_make_apply_prod_only_in_ci():
    refused = _make("apply", "ENV=prod")
    assert refused.returncode != 0 and "refusing to apply ENV=prod outside CI" in refused.stderr
    allowed = _terraform_commands(_make("apply", "ENV=prod", ci=True))
    assert allowed[-1] == "terraform -chdir=terraform/envs/prod apply -input=false plan.out"


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_make_bootstrap_makes_the_state_bucket_then_only_the_registries(env):
    """A new account (docs/operations.md): the state bucket of the env's backend.hcl first
    (the S3 backend cannot init without it), then only the ECR repositories, so images
    can be pushed before the first deploy. Prod too, outside CI: it creates no compute."""
    proc = _make("bootstrap", f"ENV={env}")
    lines = proc.stdout.splitlines()
    bucket = [i for i, line in enumerate(lines)
              if f"terraform/bootstrap/state_bucket.py --backend-config terraform/envs/{env}/backend.hcl" in line]
    assert len(bucket) == 1, proc.stdout
    commands = _terraform_commands(proc)
    assert commands == [
        f"terraform -chdir=terraform/envs/{env} init -input=false -backend-config=backend.hcl",
        f"terraform -chdir=terraform/envs/{env} apply -target=module.platform.module.ecr",
    ]
    first_terraform = next(i for i, line in enumerate(lines) if "terraform -chdir" in line)
    assert bucket[0] < first_terraform, "the state bucket must exist before terraform init"
    assert (REPO / "terraform" / "bootstrap" / "state_bucket.py").is_file()
    tagged = _terraform_commands(_make("bootstrap", f"ENV={env}", "IMAGE_TAG=abc123"))
    assert tagged[-1].endswith("apply -target=module.platform.module.ecr -var image_tag=abc123")


@pytest.mark.parametrize("target", ["plan", "apply", "bootstrap"])
@pytest.mark.parametrize("env", ["staging", ""])
def test_make_refuses_unknown_envs(target, env):
    proc = _make(target, f"ENV={env}")
    assert proc.returncode != 0
    assert "unknown ENV" in proc.stderr or "ENV is required" in proc.stderr
    assert "terraform -chdir" not in proc.stdout
