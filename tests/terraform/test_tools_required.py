"""In CI a missing terraform fails instead of skipping: `.ci/run` sets
FOLDSTACK_REQUIRE_TOOLS=1, `make setup` ends with `make terraform-check`, which then fails
without terraform, and every Terraform/deploy test asks for the binary through
``need_terraform``, which fails rather than skips. Locally (no variable) both skip/warn.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from . import conftest
from .conftest import REPO

TERRAFORM_TESTS = [p for p in sorted((REPO / "tests" / "terraform").glob("*.py")) if p.name != Path(__file__).name] + [
    REPO / "tests" / "onboarding" / "test_walk.py"]


def test_need_terraform_fails_in_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setattr(conftest, "terraform_bin", lambda: None)
    monkeypatch.setattr(conftest, "REQUIRE_TOOLS", True)
    with pytest.raises(pytest.fail.Exception, match="terraform is not installed: the emulator deploy cannot run"):
        conftest.need_terraform("the emulator deploy")
    monkeypatch.setattr(conftest, "REQUIRE_TOOLS", False)
    with pytest.raises(pytest.skip.Exception, match="make terraform-check"):
        conftest.need_terraform("the emulator deploy")
    monkeypatch.setattr(conftest, "terraform_bin", lambda: "bin/terraform")
    assert conftest.need_terraform("anything") == "bin/terraform"


def test_no_terraform_test_skips_on_its_own_when_terraform_is_missing():
    """Every place that looks for the binary goes through need_terraform: a bare
    `pytest.skip("terraform is not installed…")` would pass CI with nothing run."""
    for path in TERRAFORM_TESTS:
        text = path.read_text()
        assert not re.search(r"skip\([^)]*terraform is not installed", text), f"{path.name} skips without terraform"
        if path.name != "conftest.py":  # terraform_bin() lives there
            assert 'which("terraform")' not in text, f"{path.name}: use need_terraform()"


def _terraform_check(require: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("FOLDSTACK_REQUIRE_TOOLS", "MAKEFLAGS")}
    if require:
        env["FOLDSTACK_REQUIRE_TOOLS"] = "1"
    return subprocess.run(["make", "--no-print-directory", "terraform-check", "TERRAFORM=terraform-not-installed-x"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_make_terraform_check_fails_in_ci_without_terraform_and_says_why():
    ci = _terraform_check(require=True)
    assert ci.returncode != 0
    assert "error: terraform is not on PATH" in ci.stderr and "make setup cannot install it" in ci.stderr
    local = _terraform_check(require=False)
    assert local.returncode == 0 and "warning: terraform is not on PATH" in local.stderr


def test_ci_entry_requires_tools_before_make_setup_which_checks_terraform():
    lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert lines.index("export FOLDSTACK_REQUIRE_TOOLS=1") < lines.index("make setup") < lines.index("make test")
    setup = re.search(r"^setup:([^#\n]*)", (REPO / "Makefile").read_text(), re.M)
    assert setup and "terraform-check" in setup.group(1).split()


def test_readme_says_what_make_setup_installs():
    makefile = (REPO / "Makefile").read_text()
    extras = re.search(r'pip install -q -e "\.(\[[\w,]+\])"', makefile)
    assert extras, "the venv target installs the package with its extras"
    row = next(line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("| `make setup` |"))
    assert f"`{extras.group(1)}`" in row, f"README's make setup row must name {extras.group(1)}"
    for step in ("npm ci", "torch==", "checkov", "demo data", "make terraform-check"):
        assert step in row, step
