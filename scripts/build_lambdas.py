#!/usr/bin/env python3
"""Build deterministic Lambda zips: build/lambdas/<name>.zip per lambdas/<name>/handler.py.

Each zip holds ``handler.py`` at the root plus the parts of the ``foldstack`` package a
Lambda needs (``PACKAGE_PARTS``). Entries are sorted, timestamps fixed and permissions
normalised, so the same sources always give byte-identical zips (and Terraform's
``source_code_hash`` changes only when code does). Terraform consumes these files; it
never builds them.

Third-party dependencies (``LAYER_REQUIREMENTS``: pydantic, numpy …; boto3 is in the runtime)
go into a separate layer zip with ``--deps`` (needs a package index):

    python scripts/build_lambdas.py --out build/lambdas
    python scripts/build_lambdas.py --out build/lambdas --deps --platform manylinux2014_aarch64
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
LAMBDAS_DIR = REPO / "lambdas"
PACKAGE_DIR = REPO / "src" / "foldstack"

# Parts of src/foldstack that go into every Lambda zip (pure Python only), relative to
# the package. Missing optional parts are skipped.
PACKAGE_PARTS = [
    "__init__.py",
    "py.typed",
    "core",
    "storage",
    "tasks",
    "cachekeys.py",  # the MSA cache's keys (msa_cache lookup, Collect Outputs' fill)
    "workflows/__init__.py",
    "workflows/specs.py",  # jobs.yaml model: size classes, queues (cost estimate)
    "workflows/registry.py",  # workloads.yaml: which module holds a workflow's tasks
    "workflows/dispatch.py",  # the shared Lambdas' dispatch on the event's `workflow`
    "cost.py",
    "data/prices",
    "reports",  # Collect Outputs' HTML reports (pure Python)
]
# The reports' 3D viewer (npm 3dmol, `npm ci` in make setup), packaged next to
# foldstack.reports, where foldstack.reports.viewer_script finds it. Required: without it
# Collect Outputs would publish reports that say "3D view unavailable" on every run.
VIEWER_JS = REPO / "node_modules" / "3dmol" / "build" / "3Dmol-min.js"
VIEWER_ARCNAME = "foldstack/reports/3Dmol-min.js"
# Job specs the tasks read (cost per queue and size class); found by
# foldstack.workflows.specs.find_statemachines_dir at <zip root>/statemachines/.
STATEMACHINE_FILES = ["jobs.yaml", "knobs.yaml"]
# The workload registry (statemachines/workloads.yaml): the dispatch reads it on Lambda.
REGISTRY_FILE = REPO / "statemachines" / "workloads.yaml"

# Installed into the dependency layer (python/ prefix) by --deps. boto3 ships with the runtime.
# numpy: the MSA cache lookup loads a cached features.npz as Predict does
# (foldstack.core.npz.check_features) before serving it.
LAYER_REQUIREMENTS = ["pydantic>=2.6,<3", "pyyaml>=6,<7", "numpy>=1.26,<3"]

FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # earliest date a zip can hold
SKIP_DIRS = {"__pycache__", ".mypy_cache", ".pytest_cache"}
SKIP_SUFFIXES = {".pyc", ".pyo", ".so", ".pyd"}


def _walk(root: Path, arc_root: str) -> list[tuple[str, Path]]:
    """(archive name, file) pairs under root, without caches or native code."""
    if root.is_file():
        return [(arc_root, root)]
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix in SKIP_SUFFIXES:
                continue
            out.append((f"{arc_root}/{path.relative_to(root).as_posix()}", path))
    return out


def write_zip(entries: list[tuple[str, Path]], dest: Path) -> str:
    """Write entries deterministically; return the sha256 of the zip."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for arcname, path in sorted(entries, key=lambda e: e[0]):
            info = zipfile.ZipInfo(arcname, date_time=FIXED_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o100644 << 16  # regular file, rw-r--r--
            info.create_system = 3  # unix, so the attributes above are honoured
            zf.writestr(info, path.read_bytes())
    tmp.replace(dest)
    return hashlib.sha256(dest.read_bytes()).hexdigest()


def _module_file(module: str) -> Path | None:
    """src/foldstack/... of a foldstack module (a package: its __init__.py), if it exists."""
    rel = Path(*module.split(".")[1:])
    if not rel.parts:
        return PACKAGE_DIR / "__init__.py"
    for candidate in (PACKAGE_DIR / rel.with_suffix(".py"), PACKAGE_DIR / rel / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_imports(path: Path) -> list[str]:
    """The foldstack modules `path` imports at module level (lazy imports inside functions
    are the caller's to ship; a module's package __init__ comes with it)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found += [f"{node.module}.{a.name}" for a in node.names]  # `from pkg import module`
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return [m for m in found if m.split(".")[0] == "foldstack"]


def registry_parts() -> list[str]:
    """PACKAGE_PARTS that the registered workloads' task modules need (workloads.yaml
    ``tasks``): each module and what it imports from foldstack at module level, less what
    PACKAGE_PARTS already ships."""
    registry = yaml.safe_load(REGISTRY_FILE.read_text()) or {}
    todo = [entry["tasks"] for entry in registry.values() if isinstance(entry, dict) and entry.get("tasks")]
    shipped = [PACKAGE_DIR / part for part in PACKAGE_PARTS]
    seen: set[Path] = set()
    while todo:
        module = todo.pop()
        for name in (module, *(".".join(module.split(".")[:i]) for i in range(2, module.count(".") + 1))):
            path = _module_file(name)
            if path is None or path in seen or any(path == s or s in path.parents for s in shipped):
                continue  # what PACKAGE_PARTS ships is Lambda-safe already: not followed further
            seen.add(path)
            todo += _module_imports(path)
    return sorted(str(p.relative_to(PACKAGE_DIR).as_posix()) for p in seen)


def package_entries() -> list[tuple[str, Path]]:
    entries: list[tuple[str, Path]] = []
    for part in [*PACKAGE_PARTS, *registry_parts()]:
        path = PACKAGE_DIR / part
        if path.exists():
            entries += _walk(path, f"foldstack/{part}")
    if not entries:
        raise SystemExit(f"no foldstack package parts found under {PACKAGE_DIR}")
    if not VIEWER_JS.is_file():
        raise SystemExit(f"the reports' 3D viewer is missing ({VIEWER_JS}): run `npm ci` "
                         "(make setup) before building the Lambda zips")
    entries.append((VIEWER_ARCNAME, VIEWER_JS))
    for spec in sorted((REPO / "statemachines").glob("*/*.yaml")):
        if spec.name in STATEMACHINE_FILES:
            entries.append((f"statemachines/{spec.parent.name}/{spec.name}", spec))
    entries.append((f"statemachines/{REGISTRY_FILE.name}", REGISTRY_FILE))
    return entries


def handler_names() -> list[str]:
    return sorted(p.parent.name for p in LAMBDAS_DIR.glob("*/handler.py"))


def build(out: Path, names: list[str] | None = None) -> dict[str, str]:
    names = names or handler_names()
    if not names:
        raise SystemExit(f"no lambdas/<name>/handler.py under {LAMBDAS_DIR}")
    common = package_entries()
    hashes = {}
    for name in names:
        handler = LAMBDAS_DIR / name / "handler.py"
        if not handler.is_file():
            raise SystemExit(f"missing {handler}")
        extra = [(f"{p.relative_to(handler.parent).as_posix()}", p)
                 for p in sorted(handler.parent.glob("*.py")) if p.name != "handler.py"]
        hashes[name] = write_zip([("handler.py", handler), *extra, *common], out / f"{name}.zip")
    return hashes


def build_layer(out: Path, platform: str, python_version: str) -> str:
    """pip-install LAYER_REQUIREMENTS for the Lambda platform into python/ and zip them."""
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "python"
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--only-binary=:all:",
             "--platform", platform, "--python-version", python_version, "--implementation", "cp",
             "--target", str(target), *LAYER_REQUIREMENTS],
            check=True,
        )
        entries = []
        for dirpath, dirnames, filenames in os.walk(target):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if path.suffix != ".pyc":
                    entries.append((f"python/{path.relative_to(target).as_posix()}", path))
        return write_zip(entries, out / "layer-deps.zip")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "build" / "lambdas")
    parser.add_argument("names", nargs="*", help="handlers to build (default: every lambdas/<name>/)")
    parser.add_argument("--deps", action="store_true", help="also build layer-deps.zip (needs a package index)")
    parser.add_argument("--platform", default="manylinux2014_aarch64",
                        help="wheel platform of the layer (arm64 functions)")
    parser.add_argument("--python-version", default="3.12")
    args = parser.parse_args(argv)
    for name, digest in build(args.out, args.names or None).items():
        print(f"{args.out / (name + '.zip')}  sha256={digest}")
    if args.deps:
        print(f"{args.out / 'layer-deps.zip'}  sha256={build_layer(args.out, args.platform, args.python_version)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
