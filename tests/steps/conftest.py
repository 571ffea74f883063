"""Fixtures for the step tests: a demo home (real demo DB + tiny random weights built
through the real save/load paths), staged targets, and a persistent JAX compile cache."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

DEMO_SEQ = "MNEELILKNRLKEVRKEKGYSQQKLADEVGVSRNTISSIETGQFNPTAKLALILCIALDEKFEDLFYF"
TARGET = "HG003687_68"


@pytest.fixture(scope="session", autouse=True)
def _step_env():
    """Offline HF, and a JAX compile cache that outlives the test session."""
    old = dict(os.environ)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("FOLDSTACK_JAX_CACHE_DIR", str(Path(tempfile.gettempdir()) / "foldstack-test-jax-cache"))
    os.environ.pop("FOLDSTACK_INJECT_FAULT", None)
    yield
    os.environ.clear()
    os.environ.update(old)


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory) -> Path:
    from foldstack.demo_data import build_demo_data

    home = tmp_path_factory.mktemp("foldstack-home")
    build_demo_data(home)
    return home


@pytest.fixture(scope="session")
def db_root(demo_home) -> Path:
    return demo_home / "db"


@pytest.fixture(scope="session")
def weights(demo_home) -> Path:
    return demo_home / "weights"


def stage(scratch: Path, run_id: str, target: str, sequence: str, description: str = "") -> Path:
    path = scratch / run_id / "input" / "targets" / f"{target}.fasta"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f">{target} {description}".rstrip() + f"\n{sequence}\n")
    return path


@pytest.fixture
def scratch(tmp_path) -> Path:
    path = tmp_path / "scratch"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def msa_done(tmp_path_factory, db_root) -> tuple[Path, str]:
    """One msa step on the demo target, shared by read-only tests: (scratch, run_id)."""
    from foldstack.steps.msa import run_msa

    scratch = tmp_path_factory.mktemp("scratch-msa")
    stage(scratch, "run1", TARGET, DEMO_SEQ)
    run_msa("run1", TARGET, scratch, db_root, "jackhmmer", None)
    return scratch, "run1"


@pytest.fixture(scope="session")
def esmfold_done(tmp_path_factory, weights) -> tuple[Path, str]:
    from foldstack.steps.predict import run_predict

    scratch = tmp_path_factory.mktemp("scratch-esm")
    stage(scratch, "run1", TARGET, DEMO_SEQ)
    run_predict("run1", TARGET, scratch, weights, "esmfold", "monomer")
    return scratch, "run1"


def invoke(args: list[str]):
    """Run `foldstack step ...` in-process (typer's runner); returns the result."""
    from typer.testing import CliRunner

    from foldstack.cli.step import app

    return CliRunner().invoke(app, args)


DEMO_DBS = ("demo_uniref", "demo_small_bfd", "demo_mgnify")


def copy_demo_dbs(db_root: Path, dest: Path) -> Path:
    """A private copy of the demo sequence DBs (every role of the reduced_dbs and colabfold
    presets), without their MMseqs2 indexes."""
    import shutil

    for name in DEMO_DBS:
        shutil.copytree(db_root / name, dest / name, ignore=shutil.ignore_patterns("mmseqs"))
    return dest


@pytest.fixture(scope="session")
def template_root(tmp_path_factory, db_root) -> Path:
    """The demo sequence DB plus the 1A7G/2XHE template DB assembled from Debian's
    python-biopython-doc (never downloaded; without the package: no template DB)."""

    from foldstack.demo_data import build_demo_templates, template_cif_files

    root = tmp_path_factory.mktemp("db-templates")
    copy_demo_dbs(db_root, root)
    if template_cif_files() is not None:
        assert build_demo_templates(root) is not None
    return root


@pytest.fixture(scope="session")
def chain_e(template_root) -> str:
    """The 1A7G chain E sequence as pdb_seqres holds it (without the template DB: the demo
    sequence)."""
    seqres = list(template_root.glob("pdb_mmcif/*/pdb_seqres.txt"))
    if not seqres:
        return DEMO_SEQ
    lines = seqres[0].read_text().splitlines()
    return lines[lines.index(next(ln for ln in lines if ln.startswith(">1a7g_E"))) + 1]
