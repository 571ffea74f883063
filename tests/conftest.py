"""Shared fixtures: repository paths, size classes from the real jobs.yaml, task settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def fold_workflow():
    from foldstack.workflows.specs import load_workflow

    return load_workflow("fold", REPO / "statemachines")


@pytest.fixture(scope="session")
def size_classes(fold_workflow):
    return fold_workflow.jobs.size_classes


@pytest.fixture
def local_env(tmp_path, monkeypatch, size_classes):
    """Task settings over local directories: inputs/, outputs/, scratch/."""
    dirs = {name: tmp_path / name for name in ("inputs", "outputs", "scratch")}
    for d in dirs.values():
        d.mkdir()
    monkeypatch.setenv("FOLDSTACK_SCRATCH_ROOT", str(dirs["scratch"]))
    monkeypatch.setenv("FOLDSTACK_ALLOWED_INPUT_PREFIXES", str(dirs["inputs"]))
    monkeypatch.setenv("FOLDSTACK_ALLOWED_OUTPUT_PREFIXES", str(dirs["outputs"]))
    monkeypatch.setenv(
        "FOLDSTACK_SIZE_CLASSES", json.dumps({k: v.model_dump() for k, v in size_classes.items()})
    )
    return dirs


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in Path(path).rglob("*") if p.is_file() or p.is_symlink())


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory) -> Path:
    """A FOLDSTACK_HOME with the demo database and random-weight models (built once)."""
    from foldstack.demo_data import build_demo_data

    path = tmp_path_factory.mktemp("demo-home")
    build_demo_data(path)
    return path
