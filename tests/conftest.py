"""Shared fixtures: repository paths, size classes from the real jobs.yaml, task settings."""

from __future__ import annotations

import functools
import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def load_repo_module(relative: str, name: str) -> ModuleType:
    """A fresh module from a repository file outside any package (a script, a Lambda
    handler), loaded the way its runtime loads it: by path."""
    spec = importlib.util.spec_from_file_location(name, REPO / relative)
    assert spec is not None and spec.loader is not None, relative
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_handler(name: str):
    """The ``handler`` function of ``lambdas/<name>/handler.py``."""
    return load_repo_module(f"lambdas/{name}/handler.py", f"handler_{name}").handler


MODULE_SCOPED = re.compile(r"""scope=["'](module|class)["']""")


@functools.cache
def _has_module_scoped_fixture(path: str) -> bool:
    return bool(MODULE_SCOPED.search(Path(path).read_text(encoding="utf-8")))


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups (it runs first otherwise)
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`make test` runs two workers, `--dist loadgroup`), the Terraform
    checks share one session's copied tree and provider inits: keep them on one worker. A
    module with a module- or class-scoped fixture (a whole CryoEM chain, an MMseqs2 index)
    goes to one worker as a whole too: spread over both, each worker would build it again."""
    for item in items:
        if item.nodeid.startswith("tests/terraform/"):
            item.add_marker(pytest.mark.xdist_group("terraform"))
        elif _has_module_scoped_fixture(str(item.path)):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))


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


@pytest.fixture
def s3_env(monkeypatch, size_classes):
    """Task settings over moto S3 (in-process): buckets `lake` (inputs/, results/) and
    `scratch`; yields the S3 client."""
    from tests.fake_aws import task_buckets

    with task_buckets(monkeypatch, json.dumps({k: v.model_dump() for k, v in size_classes.items()})) as s3:
        yield s3


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in Path(path).rglob("*") if p.is_file() or p.is_symlink())


@pytest.fixture(scope="session", autouse=True)
def never_the_users_home(tmp_path_factory):
    """Tests never touch ~/.foldstack (the default home, which `make demo` fills):
    FOLDSTACK_HOME is a session temp dir unless a test passes its own home. The
    AlphaFold2 JAX cache, which follows FOLDSTACK_HOME, stays in one temp dir across
    sessions (as the step tests' own)."""
    import os
    import tempfile

    saved = {k: os.environ.get(k) for k in ("FOLDSTACK_HOME", "FOLDSTACK_JAX_CACHE_DIR", "FOLDSTACK_DB_IMPORT_RETRIES",
                                            "FOLDSTACK_INPUT_WAIT_S")}
    os.environ["FOLDSTACK_HOME"] = str(tmp_path_factory.mktemp("foldstack-home"))
    os.environ.setdefault("FOLDSTACK_JAX_CACHE_DIR", str(Path(tempfile.gettempdir()) / "foldstack-test-jax-cache"))
    # Steps run in-process by tests read local directories, where nothing arrives late:
    # the FSx import waits (minutes by default) are off unless a test sets them itself.
    os.environ.setdefault("FOLDSTACK_DB_IMPORT_RETRIES", "0")
    os.environ.setdefault("FOLDSTACK_INPUT_WAIT_S", "0")
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session", autouse=True)
def one_command_tree_per_app():
    """typer's CliRunner rebuilds the whole click command tree of an app on every invoke
    (~0.1 s for foldstack's): build it once per app. Every command registers at import,
    so the tree of an app object never changes during a session."""
    import weakref

    import typer.testing

    built: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    real = typer.testing._get_command

    def get_command(app):
        if app not in built:
            built[app] = real(app)
        return built[app]

    typer.testing._get_command = get_command
    yield
    typer.testing._get_command = real


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory) -> Path:
    """A FOLDSTACK_HOME with the demo database and random-weight models (built once)."""
    from foldstack.demo_data import build_demo_data

    path = tmp_path_factory.mktemp("demo-home")
    build_demo_data(path)
    return path


def _run_manifests(root: Path) -> list[Path]:
    """Run manifests (``<output>/<run_id>/manifest.json``) under ``root``; database
    manifests, which share the file name, carry no ``foldstack_version``."""
    found = []
    for path in root.rglob("manifest.json"):
        try:
            if path.is_file() and b'"foldstack_version"' in path.read_bytes()[:1 << 20]:
                found.append(path)
        except OSError:
            continue
    return found


@pytest.fixture(autouse=True)
def every_manifest_validates(request):
    """Every run manifest a test leaves in its tmp_path must load through the manifest
    model, so the model and what Collect Outputs writes cannot drift apart."""
    # Asked for before the test runs, so tmp_path is still there when this one ends.
    tmp_path = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if tmp_path is None:
        return
    from foldstack.core.manifest import load_manifest

    for path in _run_manifests(tmp_path):
        load_manifest(path.read_bytes(), source=str(path))
