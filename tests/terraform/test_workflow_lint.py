"""Static checks of what gets deployed and what deploys it, without Terraform:

- the npm ``asl-validator`` (package.json, ``npm ci`` in ``make setup``) on every
  rendered state machine with its ``${…}`` placeholders substituted the way
  ``modules/workflow`` substitutes them (ARNs of the right shape, the mounts, db_uri);
- ``actionlint`` (dev extra) on every file of ``.github/workflows``;
- the deploy pipeline's shape: lock files committed and carried in the plan artifacts
  (hidden files included), images built once and promoted by digest, base images
  pinned by digest.

Missing tools skip locally and fail in CI (``FOLDSTACK_REQUIRE_TOOLS=1``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from foldstack.workflows.render import PLACEHOLDER

from .conftest import REPO, require_tool

RENDERED = sorted((REPO / "statemachines" / "rendered").glob("*.asl.json"))
WORKFLOWS = REPO / ".github" / "workflows"
ACCOUNT, REGION, PREFIX = "123456789012", "eu-west-1", "foldstack-dev"


def asl_validator() -> str:
    local = REPO / "node_modules" / ".bin" / "asl-validator"
    if local.exists() and shutil.which("node"):
        return str(local)
    return require_tool("asl-validator", "FOLDSTACK_ASL_VALIDATOR")


def substitute(workflow: str, text: str) -> str:
    """Fill every placeholder as modules/workflow's templatefile() does; an unknown one fails."""

    def value(m: re.Match) -> str:
        name = m.group(1)
        if name == "partition":
            return "aws"
        if (n := re.fullmatch(r"lambda_(\w+)_arn", name)):
            return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{PREFIX}-{n.group(1).replace('_', '-')}"
        if (n := re.fullmatch(r"queue_(\w+)_arn", name)):
            return f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/{PREFIX}-{n.group(1).replace('_', '-')}"
        if (n := re.fullmatch(r"job_definition_(\w+)_arn", name)):
            return (f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/"
                    f"{PREFIX}-{workflow}-{n.group(1).replace('_', '-')}:1")
        fixed = {"scratch_mount": "/fsx/scratch", "db_mount": "/fsx/db", "weights_dir": "/fsx/db/weights",
                 "db_uri": f"s3://{PREFIX}-database-{ACCOUNT}-{REGION}/db"}
        if name in fixed:
            return fixed[name]
        raise AssertionError(f"{workflow}: placeholder ${{{name}}} is not one modules/workflow fills")

    return PLACEHOLDER.sub(value, text)


def validate_asl(definition: str, where: Path) -> subprocess.CompletedProcess:
    where.write_text(definition)
    return subprocess.run([asl_validator(), "--json-path", str(where)], capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.mark.parametrize("rendered", RENDERED, ids=lambda p: p.name.split(".")[0])
@pytest.mark.slow
def test_asl_validator_accepts_every_rendered_definition_substituted(rendered, tmp_path):
    workflow = rendered.name.split(".")[0]
    text = substitute(workflow, rendered.read_text())
    assert "${" not in text
    json.loads(text)
    proc = validate_asl(text, tmp_path / rendered.name)
    assert proc.returncode == 0, f"asl-validator rejects {rendered.name}:\n{proc.stdout}{proc.stderr}"


@pytest.mark.slow
def test_asl_validator_rejects_a_broken_definition(tmp_path):
    """The check can fail: a Task without Resource and a dangling Next."""
    broken = {"StartAt": "A", "States": {"A": {"Type": "Task", "Next": "Nowhere"}}}
    proc = validate_asl(json.dumps(broken), tmp_path / "broken.asl.json")
    assert proc.returncode != 0


def test_actionlint_passes_on_every_workflow():
    actionlint = require_tool("actionlint", "FOLDSTACK_ACTIONLINT")
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    proc = subprocess.run([actionlint, "-no-color", *files], capture_output=True, text=True, timeout=120,
                          check=False, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    actionlint = require_tool("actionlint", "FOLDSTACK_ACTIONLINT")
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n"
                   "      - run: echo ${{ github.evnt_name }}\n")
    proc = subprocess.run([actionlint, "-no-color", str(bad)], capture_output=True, text=True, timeout=60,
                          check=False, cwd=tmp_path)
    assert proc.returncode != 0 and "evnt_name" in proc.stdout


# ------------------------------------------------------------------ the pipeline


def _workflow(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def _steps(workflow: dict) -> list[tuple[str, dict]]:
    return [(job_name, step) for job_name, job in workflow["jobs"].items() for step in job.get("steps", [])]


def _setup_prerequisites() -> list[str]:
    line = re.search(r"^setup:([^#\n]*)", (REPO / "Makefile").read_text(), re.M)
    assert line, "the Makefile has a setup target"
    return line.group(1).split()


def test_ci_installs_what_make_setup_installs_before_the_tests():
    """GitHub CI runs `make setup`'s steps (demo-data aside: tests build their own home)
    before `make test`: with FOLDSTACK_REQUIRE_TOOLS=1, a missing asl-validator
    (`make node-deps`) would fail its tests there."""
    ci = _workflow("ci.yml")
    assert ci["env"].get("FOLDSTACK_REQUIRE_TOOLS") == "1"
    runs = [str(step.get("run", "")).strip() for _, step in _steps(ci)]
    assert "make test" in runs
    needed = [t for t in _setup_prerequisites() if t != "demo-data"]
    assert {"system-deps", "node-deps", "venv"} <= set(needed)
    for target in needed:
        assert f"make {target}" in runs, f"ci.yml does not run `make {target}` (part of make setup)"
        assert runs.index(f"make {target}") < runs.index("make test"), f"`make {target}` runs after make test"
    uses = [str(step.get("uses", "")) for _, step in _steps(ci)]
    assert any(u.startswith("hashicorp/setup-terraform@") for u in uses), "the Terraform tests need terraform"


def test_lock_files_are_committed_for_every_env():
    for env in ("dev", "prod"):
        lock = REPO / "terraform" / "envs" / env / ".terraform.lock.hcl"
        assert lock.is_file(), f"{lock} must be committed (init -lockfile=readonly in the apply job)"
        text = lock.read_text()
        assert 'provider "registry.terraform.io/hashicorp/aws"' in text and re.search(r'version\s*=\s*"5\.', text)
        tracked = subprocess.run(["git", "check-ignore", "-q", str(lock)], cwd=REPO, check=False)
        assert tracked.returncode == 1, f"{lock} is git-ignored"


def test_plan_artifacts_carry_the_lock_file_hidden_files_included():
    uploads = [(j, s) for j, s in _steps(_workflow("deploy.yml")) if "upload-artifact" in s.get("uses", "")
               and str(s.get("with", {}).get("name", "")).startswith("plan-")]
    assert {s["with"]["name"] for _, s in uploads} == {"plan-dev", "plan-prod"}
    for job, step in uploads:
        paths = step["with"]["path"].split()
        env = step["with"]["name"].removeprefix("plan-")
        assert f"terraform/envs/{env}/.terraform.lock.hcl" in paths, f"{job}: the lock file is not in the artifact"
        # upload-artifact >= 4.4.0 drops hidden files (.terraform.lock.hcl) unless told not to.
        assert step["with"].get("include-hidden-files") is True, f"{job}: include-hidden-files: true is required"


def test_apply_jobs_init_with_the_committed_lock_file_readonly():
    make = (REPO / "terraform" / "terraform.mk").read_text()
    assert "-lockfile=readonly" in make
    for _, step in _steps(_workflow("deploy.yml")):
        assert "terraform init" not in str(step.get("run", "")) or "-lockfile=readonly" in step["run"]


def test_images_are_built_once_and_promoted_by_digest():
    deploy = _workflow("deploy.yml")
    build_calls = [j for j in deploy["jobs"].values() if j.get("uses", "").endswith("images.yml")]
    assert len(build_calls) == 1, "images are built once per commit"
    text = (WORKFLOWS / "images.yml").read_text()
    assert not re.search(r"docker build[^\n]*--pull", text), "no re-pulling of base images: pinned by digest"
    deploy_text = (WORKFLOWS / "deploy.yml").read_text()
    assert "promote" in deploy["jobs"], "deploy.yml has a promote job that copies images to prod by digest"
    promote = deploy["jobs"]["promote"]
    assert "apply-dev" in (promote["needs"] if isinstance(promote["needs"], list) else [promote["needs"]])
    # prod's copy is made from dev's digest and checked against it
    assert "imageDigest" in deploy_text and "--preserve-digests" in deploy_text
    assert re.search(r'if \[ "\$have" != "\$DIGEST" \]', deploy_text), "promote verifies prod's digest"
    plan_prod = deploy["jobs"]["plan-prod"]["needs"]
    assert "promote" in (plan_prod if isinstance(plan_prod, list) else [plan_prod]), "prod plans after promotion"
    assert "AWS_IMAGES_ROLE_ARN_PROD" not in text, "images.yml pushes to the build (dev) registry only"


def test_base_images_are_pinned_by_digest():
    for dockerfile in sorted((REPO / "containers").glob("*/Dockerfile")):
        text = dockerfile.read_text()
        base = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.M)
        assert base, f"{dockerfile}: ARG BASE_IMAGE=<image>@sha256:<digest>"
        assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", base.group(1)), base.group(1)
        assert "FROM ${BASE_REGISTRY}/${BASE_IMAGE}" in text
    pins = {re.search(r"^ARG BASE_IMAGE=(\S+)$", p.read_text(), re.M).group(1)
            for p in (REPO / "containers").glob("*/Dockerfile")}
    assert len(pins) == 1, f"every image starts from the same pinned base: {pins}"
