"""The real HH-suite binaries on a tiny HH-suite database this test builds.

hhblits (BFD + UniRef30 in one search, AlphaFold's command line) and hhsearch (pdb70, the
monomer template search) run as the msa step runs them, and the step parses what they
really write (A3M, .hhr). The databases are built the way HH-suite documents it: one A3M
per entry, ``ffindex_build`` (the ``_a3m`` ffindex), ``hhmake`` over every entry
(``ffindex_apply``: ``_hhm``), ``cstranslate`` (``_cs219``, hhblits' prefilter).

Needs Debian's ``hhsuite`` (``make system-deps``); skipped without it, failed without it
in CI (``FOLDSTACK_REQUIRE_TOOLS=1``).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess  # nosec B404 - fixed argv
from pathlib import Path

import pytest

from foldstack.steps.databases import write_manifest
from foldstack.steps.features import load_features, n_templates
from tests.steps.conftest import DEMO_SEQ, copy_demo_dbs, stage

REQUIRE_TOOLS = os.environ.get("FOLDSTACK_REQUIRE_TOOLS") == "1"
TOOLS = ("hhblits", "hhsearch", "hhmake", "ffindex_build", "ffindex_apply")


def _cstranslate() -> str | None:
    """cstranslate: on PATH, else Debian's per-CPU build (its PATH wrapper,
    ``/usr/libexec/hhsuite/bin/cstranslate``, resolves the wrong directory in hhsuite
    3.3.0+ds-7, so the build is called directly: the best one this CPU runs)."""
    if shutil.which("cstranslate") and subprocess.run(["cstranslate", "-h"], capture_output=True).returncode in (0, 1):
        return shutil.which("cstranslate")
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    for simd in ("avx2", "avx", "sse4.1", "ssse3", "sse3", "plain"):
        for path in glob.glob(f"/usr/libexec/hhsuite/cstranslate-{simd}"):
            if simd == "plain" or simd in flags:
                return path
    return None


def _hhsuite_data() -> Path | None:
    """cs219.lib and context_data.lib (cstranslate's alphabet and context library)."""
    for d in (os.environ.get("HHLIB", "") + "/data", "/usr/share/hhsuite/data", "/usr/lib/hhsuite/data"):
        if (Path(d) / "cs219.lib").is_file() and (Path(d) / "context_data.lib").is_file():
            return Path(d)
    return None


def _missing() -> list[str]:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if _cstranslate() is None:
        missing.append("cstranslate")
    if _hhsuite_data() is None:
        missing.append("hhsuite data (cs219.lib)")
    return missing


@pytest.fixture(scope="module", autouse=True)
def _tools():
    missing = _missing()
    if missing and REQUIRE_TOOLS:
        pytest.fail(f"HH-suite tools missing: {missing} (make system-deps installs Debian's hhsuite)")
    if missing:
        pytest.skip(f"HH-suite tools missing: {missing} (Debian hhsuite)")


def build_hhsuite_db(directory: Path, prefix: str, entries: list[tuple[str, str]]) -> Path:
    """An HH-suite database ``<directory>/<prefix>_{a3m,hhm,cs219}.ff{data,index}``, one
    single-sequence A3M per (name, sequence) entry; returns ``<directory>/<prefix>``."""
    a3m_dir = directory / f".{prefix}-a3m"
    a3m_dir.mkdir(parents=True)
    for i, (name, seq) in enumerate(entries):
        (a3m_dir / f"{i:05d}").write_text(f">{name}\n{seq}\n")
    base = directory / prefix
    run = {"check": True, "capture_output": True}
    subprocess.run(["ffindex_build", "-s", f"{base}_a3m.ffdata", f"{base}_a3m.ffindex", str(a3m_dir)], **run)
    subprocess.run(["ffindex_apply", f"{base}_a3m.ffdata", f"{base}_a3m.ffindex", "-i", f"{base}_hhm.ffindex",
                    "-d", f"{base}_hhm.ffdata", "--", "hhmake", "-i", "stdin", "-o", "stdout", "-v", "0"], **run)
    data = _hhsuite_data()
    subprocess.run([_cstranslate(), "-f", "-x", "0.3", "-c", "4", "-I", "a3m", "-i", f"{base}_a3m", "-o",
                    f"{base}_cs219", "-A", str(data / "cs219.lib"), "-D", str(data / "context_data.lib")], **run)
    shutil.rmtree(a3m_dir)
    for kind in ("a3m", "hhm", "cs219"):
        assert (directory / f"{prefix}_{kind}.ffindex").stat().st_size > 0, kind
    return base


def _publish_hhsuite(root: Path, name: str, role: str, entries: list[tuple[str, str]]) -> Path:
    version = root / name / "v1"
    version.mkdir(parents=True)
    build_hhsuite_db(version, name, entries)
    write_manifest(version, name=name, version="v1", role=role, sequences=None, max_hits=None,
                   source="test fixture: demo sequences as single-sequence HH-suite entries", license="CC BY 4.0",
                   extra={"hhsuite_db": name})
    (root / name / "CURRENT").write_text("v1\n")
    return version


def _demo_homologs() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """DEMO_SEQ's homologs among the demo sequences (phmmer, E <= 1e-3; the query's own
    entry left out) and as many other demo sequences: the entries of the BFD/UniRef30
    stand-ins."""
    import pyhmmer

    from foldstack.demo_data import _demo_records

    records = [(rid, seq) for rid, _, seq in _demo_records()]
    alphabet = pyhmmer.easel.Alphabet.amino()
    query = pyhmmer.easel.TextSequence(name=b"q", sequence=DEMO_SEQ).digitize(alphabet)
    targets = [pyhmmer.easel.TextSequence(name=rid.encode(), sequence=seq).digitize(alphabet) for rid, seq in records]
    (hits,) = pyhmmer.hmmer.phmmer([query], targets, E=1e-3)
    names = {h.name.decode() if isinstance(h.name, bytes) else h.name for h in hits}
    homologs = [(rid, seq) for rid, seq in records if rid in names and seq != DEMO_SEQ]
    others = [(rid, seq) for rid, seq in records if rid not in names][:len(homologs)]
    assert len(homologs) >= 5, homologs
    return homologs, others


@pytest.mark.slow  # builds two HH-suite databases (hhmake per entry) and runs hhblits 3 iterations
def test_full_dbs_run_searches_bfd_and_uniref30_with_the_real_hhblits(tmp_path, db_root):
    """One real hhblits over both HH-suite databases: its A3M is parsed into the MSA, with
    hits from both databases, after the UniRef90 rows."""
    from foldstack.steps.msa import run_msa

    root = copy_demo_dbs(db_root, tmp_path / "db")
    homologs, others = _demo_homologs()
    half = len(homologs) // 2
    # distinct names per database, so the A3M shows which database each hit came from
    _publish_hhsuite(root, "bfd", "bfd", [(f"bfd_{r}", s) for r, s in homologs[:half] + others])
    _publish_hhsuite(root, "uniref30", "uniref30", [(f"ur30_{r}", s) for r, s in homologs[half:]])
    scratch = tmp_path / "scratch"
    stage(scratch, "r", "t", DEMO_SEQ)
    out = run_msa("r", "t", scratch, root, db_preset="full_dbs")

    info = json.loads((out / "features.json").read_text())
    assert info["msa_tools"]["bfd+uniref30"]["tool"] == "hhblits"
    assert [d["name"] for d in info["databases"]][1:3] == ["bfd", "uniref30"]
    n_hh = info["hits"]["bfd+uniref30"][0]
    assert n_hh >= 3  # the real hhblits found homologs (its A3M, parsed)
    a3m = (out / "msa.a3m").read_text()
    headers = [ln[1:].split()[0] for ln in a3m.splitlines() if ln.startswith(">")]
    assert any(h.startswith("bfd_") for h in headers) and any(h.startswith("ur30_") for h in headers)
    first_hh = min(i for i, h in enumerate(headers) if h.startswith(("bfd_", "ur30_")))
    assert all(not h.startswith(("bfd_", "ur30_")) for h in headers[1:first_hh]) and first_hh > 1  # after UniRef90
    assert not any(h.removeprefix("bfd_") in {r for r, _ in others} for h in headers if h.startswith("bfd_")), \
        "non-homologous entries came back as hits"
    feats = load_features(out / "features.npz")
    assert feats["msa"].shape[1] == len(DEMO_SEQ) and feats["msa"].shape[0] >= n_hh


@pytest.mark.slow  # builds an HH-suite database and runs jackhmmer + hhsearch
def test_monomer_templates_by_the_real_hhsearch_on_pdb70(tmp_path, template_root, chain_e):
    """pdb70 built from the template fixture's chains: hhsearch's .hhr is parsed by
    AlphaFold's parser and featurised from the mmCIF (HhsearchHitFeaturizer)."""
    if not (template_root / "pdb_mmcif").is_dir():
        pytest.skip("no template fixture (python-biopython-doc)")
    from foldstack.steps.msa import run_msa

    root = tmp_path / "db"
    shutil.copytree(template_root, root)
    (seqres,) = root.glob("pdb_mmcif/*/pdb_seqres.txt")
    lines = seqres.read_text().splitlines()
    chains = [(h[1:], s) for h, s in zip(lines[::2], lines[1::2], strict=True)]
    assert {c[0].split()[0] for c in chains} == {"1a7g_E", "2xhe_A", "2xhe_B"}
    _publish_hhsuite(root, "pdb70", "pdb70", chains)
    scratch = tmp_path / "scratch"
    stage(scratch, "r", "e1a7g", chain_e)
    out = run_msa("r", "e1a7g", scratch, root, "jackhmmer")

    info = json.loads((out / "features.json").read_text())
    block = info["templates"]
    assert block["search"] == "hhsearch" and block["featurizer"].endswith("HhsearchHitFeaturizer")
    assert "1a7g_E" in block["per_chain"][0]["templates"]
    feats = load_features(out / "features.npz")
    names = [x.decode() for x in feats["template_domain_names"]]
    assert n_templates(feats) >= 1 and "1a7g_E" in names
    best = names.index("1a7g_E")
    assert feats["template_sequence"][best].decode() == chain_e
    assert feats["template_all_atom_masks"][best][:, 1].sum() >= 0.9 * len(chain_e)  # real CA coordinates
