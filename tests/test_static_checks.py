"""Lint and security scans run as tests so `make test` reports them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_ruff_clean():
    result = run(str(BIN / "ruff"), "check", "src", "lambdas", "tests", "scripts", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow  # bandit over the whole tree (tens of seconds on 2 cores); `make lint` runs it too
def test_bandit_finds_no_medium_or_high_issues():
    result = run(str(BIN / "bandit"), "-q", "-c", "pyproject.toml", "-r", "src", "lambdas", "scripts", "-ll")
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_layers_and_no_cycles():
    """The import-linter contracts in pyproject.toml: cli above client above the local
    engine above steps/tasks above workflows/storage/core, and no cycles between siblings."""
    result = run(str(BIN / "lint-imports"), "--no-cache")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr


def test_no_module_in_src_has_more_than_500_lines():
    """One job per module: a module past ~500 lines is split by concern."""
    big = {str(p.relative_to(REPO)): n for p in (REPO / "src").rglob("*.py")
           if (n := len(p.read_text().splitlines())) > 500}
    assert not big, big


def test_docs_refer_only_to_documents_in_the_repository():
    """Docstrings and comments point at the repository's own docs, never at documents a
    reader of the repository cannot open (a design section number, an issue number)."""
    import re

    pattern = re.compile(r"DESIGN(\.md)?\s*§|\bissue\s+#?\d+(\s+item\s+\d+)?\b", re.IGNORECASE)
    hits = []
    for root in ("src", "lambdas", "scripts", "tests", "bench", "docs", "terraform", "statemachines", "containers"):
        for path in (REPO / root).rglob("*"):
            if path.is_file() and path.suffix in {".py", ".md", ".tf", ".hcl", ".yaml", ".yml", ".j2", ".sh", ""}:
                for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                    if pattern.search(line):
                        hits.append(f"{path.relative_to(REPO)}:{n}: {line.strip()[:100]}")
    for path in (REPO / "README.md", REPO / "Makefile"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                hits.append(f"{path.name}:{n}: {line.strip()[:100]}")
    assert not hits, "\n".join(hits)
