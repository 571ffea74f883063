"""Shared fixtures for the Terraform / container / CI checks.

Everything runs against a throw-away copy of the Terraform tree (plus jobs.yaml, the
rendered ASL and freshly built Lambda zips), so `.terraform/` and lock files never
land in the repository. Inits, validates and `terraform test` runs happen once per
session, in parallel, and the individual tests read their results.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import load_repo_module

REPO = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = REPO / "terraform"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
MODULES = sorted(p.parent.name for p in (TERRAFORM_DIR / "modules").glob("*/versions.tf"))
# `_shared` holds the root module both envs link to; only backend.hcl and tfvars differ.
ENVS = sorted(
    p.parent.name for p in (TERRAFORM_DIR / "envs").glob("*/versions.tf") if not p.parent.name.startswith("_")
)
ROOTS = [f"modules/{m}" for m in MODULES] + [f"envs/{e}" for e in ENVS]
TESTED_MODULES = [m for m in MODULES if list((TERRAFORM_DIR / "modules" / m / "tests").glob("*.tftest.hcl"))]
REQUIRE_TOOLS = os.environ.get("FOLDSTACK_REQUIRE_TOOLS") == "1"


def _load_script(name: str):
    return load_repo_module(f"scripts/{name}.py", name)


def terraform_bin() -> str | None:
    return shutil.which("terraform")


# Why `make setup` cannot install it: HashiCorp ships Terraform only from its own release
# site and apt repository, which this project's machines cannot reach (PyPI, Debian and
# npm only). CI gets it from the machine image here, from setup-terraform on GitHub.
TERRAFORM_MISSING = ("terraform is not installed: {what} cannot run. Install Terraform 1.11.x on PATH "
                     "(HashiCorp's release; `make setup` cannot fetch it: `make terraform-check` says why)")


def need_terraform(what: str) -> str:
    """The terraform binary, else skip; in CI (FOLDSTACK_REQUIRE_TOOLS=1) fail, so a machine
    without it cannot pass `.ci/run` with every Terraform and deploy test skipped."""
    path = terraform_bin()
    if path is None:
        message = TERRAFORM_MISSING.format(what=what)
        if REQUIRE_TOOLS:
            pytest.fail(message)
        pytest.skip(message)
    return path


def find_tool(name: str, env_var: str) -> str | None:
    """A tool from $env_var, next to this interpreter (the venv), or on PATH."""
    if os.environ.get(env_var):
        return os.environ[env_var]
    sibling = Path(sys.executable).parent / name
    if sibling.exists():
        return str(sibling)
    return shutil.which(name)


def require_tool(name: str, env_var: str) -> str:
    path = find_tool(name, env_var)
    if path is None:
        message = f"{name} is not installed (dev dependency; set {env_var} to point at it)"
        if REQUIRE_TOOLS:
            pytest.fail(message)
        pytest.skip(message)
    return path


@dataclass
class Result:
    cmd: list[str]
    rc: int
    output: str

    def explain(self) -> str:
        return f"$ {' '.join(self.cmd)}\n(rc={self.rc})\n{self.output[-6000:]}"


@dataclass
class TerraformRun:
    root: Path
    env: dict[str, str]
    results: dict[str, dict[str, Result]] = field(default_factory=dict)


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> Result:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return Result(cmd, proc.returncode, proc.stdout + proc.stderr)


def _stage_copy(dest: Path) -> None:
    """terraform/, jobs.yaml, rendered ASL (or its fixture), fixtures and Lambda zips."""
    ignore = shutil.ignore_patterns(".terraform", ".terraform.lock.hcl", "*.tfplan", "plan.out", "*.tfstate*")
    shutil.copytree(TERRAFORM_DIR, dest / "terraform", ignore=ignore)
    shutil.copytree(REPO / "statemachines", dest / "statemachines", ignore=shutil.ignore_patterns("__pycache__"))
    # Every registered workflow deploys from its rendered ASL; one not rendered yet (a
    # fresh checkout before `make build`) uses its stand-in fixture, if there is one.
    for fixture in sorted(FIXTURES.glob("*.asl.json")):
        rendered = dest / "statemachines" / "rendered" / fixture.name
        if not rendered.exists():
            rendered.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(fixture, rendered)
    shutil.copytree(FIXTURES, dest / "tests" / "terraform" / "fixtures")
    _load_script("build_lambdas").build(dest / "build" / "lambdas")
    # The envs point at build/lambdas/layer-deps.zip (built with network access by
    # `make plan`); validate does not read it, but keep the layout complete.
    (dest / "build" / "lambdas" / "layer-deps.zip").write_bytes(
        (dest / "build" / "lambdas" / "cleanup.zip").read_bytes()
    )


@pytest.fixture(scope="session")
def tf(tmp_path_factory) -> TerraformRun:
    """init + validate every module/env, and `terraform test` every module, in parallel."""
    terraform = need_terraform("the Terraform checks")
    root = tmp_path_factory.mktemp("tf")
    _stage_copy(root)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_VAR_", "AWS_"))}
    env.update({"TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1"})
    mirror = _load_script("tf_mirror").find_mirror()
    if mirror is not None:
        rc = root / "terraform.rc"
        rc.write_text(_load_script("tf_mirror").cli_config(mirror))
        env["TF_CLI_CONFIG_FILE"] = str(rc)
    elif os.environ.get("TF_CLI_CONFIG_FILE") and not Path(os.environ["TF_CLI_CONFIG_FILE"]).exists():
        env.pop("TF_CLI_CONFIG_FILE")  # a dangling setting only produces warnings

    run = TerraformRun(root=root, env=env)

    def chain(rel: str) -> tuple[str, dict[str, Result]]:
        cwd = root / "terraform" / rel
        out: dict[str, Result] = {}
        out["init"] = _run([terraform, "init", "-backend=false", "-input=false", "-no-color"], cwd, env)
        if out["init"].rc != 0:
            return rel, out
        out["validate"] = _run([terraform, "validate", "-no-color"], cwd, env)
        if rel.startswith("modules/") and (cwd / "tests").is_dir():
            out["test"] = _run([terraform, "test", "-no-color"], cwd, env)
        return rel, out

    workers = max(2, min(6, (os.cpu_count() or 2) * 2))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for rel, out in pool.map(chain, ROOTS):
            run.results[rel] = out
    return run
