"""The onboarding walk (docs/onboarding.md) done on a copy of the tree: the toy workload's
files (``tests/onboarding/walk_toy/``, laid out as they go into the tree) added where a
platform engineer adds them, and what changed afterwards, for ``test_walk.py``.

    tree = copy_tree(tmp / "tree")         # what git would commit: tracked + untracked, not ignored
    before = snapshot(tree)
    add_toy(tree)                          # statemachines/toy/, containers/toy/, workloads.yaml
    changed(tree, before)                  # every path added, changed or removed since
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import REPO

TOY = Path(__file__).resolve().with_name("walk_toy")
WORKFLOW = "toy"
#: The toy's Python package (request model, Lambda tasks, Batch step) inside the tree, and
#: the folder to put on PYTHONPATH for it. Its image copies it (containers/toy/Dockerfile).
PACKAGE_ROOT = Path("containers") / "toy" / "src"
#: Build outputs and tool state a walk step may leave (all git-ignored): not the walk's edits.
IGNORED_DIRS = {".terraform", "__pycache__", ".pytest_cache", ".ruff_cache", "build", "node_modules", ".venv"}
IGNORED_SUFFIXES = (".pyc", ".tfplan", ".tfstate", ".tfstate.backup", ".terraform.lock.hcl")


def tree_files(root: Path = REPO) -> list[str]:
    """What git would commit in `root`: tracked and untracked files, ignored ones left out
    (read-only: ``git ls-files``); tracked files deleted in the work tree are skipped."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                         capture_output=True, check=True).stdout.decode()
    return sorted({p for p in out.split("\0") if p and os.path.lexists(root / p)})


def copy_tree(dest: Path, source: Path = REPO) -> Path:
    """`source`'s committable files (symbolic links kept as links) copied to `dest`."""
    for rel in tree_files(source):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, target, follow_symlinks=False)
    return dest


def _digest(path: Path) -> str:
    if path.is_symlink():
        return "link:" + os.readlink(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(root: Path) -> dict[str, str]:
    """{path: content digest} of every file under `root`, build outputs left out."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in IGNORED_DIRS]
        for name in filenames:
            if not name.endswith(IGNORED_SUFFIXES):
                path = Path(dirpath) / name
                found[path.relative_to(root).as_posix()] = _digest(path)
    return found


def changed(root: Path, before: dict[str, str]) -> list[str]:
    """Every path added, changed or removed under `root` since `before`."""
    after = snapshot(root)
    return sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))


def add_toy(tree: Path) -> None:
    """The walk's edits: the workload's folder, its image (with its package) and its
    registration entry appended to statemachines/workloads.yaml. Nothing else."""
    for part in ("statemachines", "containers"):
        shutil.copytree(TOY / part / WORKFLOW, tree / part / WORKFLOW,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    registry = tree / "statemachines" / "workloads.yaml"
    text = registry.read_text()
    registry.write_text(text + ("" if text.endswith("\n") else "\n") + (TOY / "workloads.entry.yaml").read_text())
