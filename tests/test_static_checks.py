"""Lint and security scans run as tests so `make test` reports them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_ruff_clean():
    result = run(str(BIN / "ruff"), "check", "src", "lambdas", "tests", "scripts", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


def test_bandit_finds_no_medium_or_high_issues():
    result = run(str(BIN / "bandit"), "-q", "-c", "pyproject.toml", "-r", "src", "lambdas", "scripts", "-ll")
    assert result.returncode == 0, result.stdout + result.stderr
