"""`--msa-tool mmseqs2`: MMseqs2 search → A3M (NULs stripped) → the same features file."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from foldstack.steps.features import load_features
from tests.steps.conftest import DEMO_SEQ, TARGET, copy_demo_dbs, invoke, stage

needs_mmseqs = pytest.mark.skipif(shutil.which("mmseqs") is None, reason="Debian mmseqs2 not installed")
# Real MMseqs2 searches build the demo databases' k-mer indexes (~17 s and ~860 MB each,
# whatever the database size): `make test` runs them, `make test-fast` leaves them out.
builds_index = pytest.mark.slow


@pytest.fixture(scope="module")
def own_db(tmp_path_factory, db_root):
    """A private copy of the demo DBs (the lazily built MMseqs2 indexes go next to them)."""
    return copy_demo_dbs(db_root, tmp_path_factory.mktemp("mmseqs-db"))


@pytest.fixture(scope="module")
def mmseqs_done(tmp_path_factory, own_db):
    scratch = tmp_path_factory.mktemp("scratch-mmseqs")
    stage(scratch, "r", TARGET, DEMO_SEQ)
    result = invoke(["msa", "--run-id", "r", "--target", TARGET, "--scratch", str(scratch), "--db", str(own_db),
                     "--msa-tool", "mmseqs2", "--cache", ""])
    assert result.exit_code == 0, result.output
    return scratch / "r" / "msa" / TARGET


@needs_mmseqs
@builds_index
def test_a3m_is_clean_and_query_first(mmseqs_done):
    raw = (mmseqs_done / "msa.a3m").read_bytes()
    assert b"\x00" not in raw
    lines = raw.decode().splitlines()
    assert lines[0] == f">{TARGET}" and lines[1] == DEMO_SEQ
    assert len(lines) >= 4  # at least one homolog besides the query
    for ln in lines[1::2]:
        assert len([c for c in ln if not c.islower()]) == len(DEMO_SEQ)


@needs_mmseqs
@builds_index
def test_same_features_file_and_provenance(mmseqs_done, msa_done):
    feats = load_features(mmseqs_done / "features.npz")
    scratch, run_id = msa_done
    reference = load_features(scratch / run_id / "msa" / TARGET / "features.npz")
    assert set(feats) == set(reference)
    for key in feats:
        assert feats[key].dtype == reference[key].dtype, key
        assert feats[key].shape[1:] == reference[key].shape[1:] or key.startswith("template"), key
    assert feats["msa"].shape[0] >= 2 and np.all(feats["msa"][0] == reference["msa"][0])
    info = json.loads((mmseqs_done / "features.json").read_text())
    assert info["msa_tool"] == "mmseqs2"
    assert info["tool"]["name"] == "mmseqs2" and info["tool"]["version"]
    assert info["msa_tools"]["demo_uniref"] == {"tool": "mmseqs2", "version": info["tool"]["version"]}
    assert info["parameters"]["msa_format_mode"] == 6 and info["parameters"]["sensitivity"] == 7.5
    assert info["mmseqs_target_db"]["demo_uniref"][0]["target_db"] in ("index", "built-index")
    done = json.loads((mmseqs_done / "msa.done.json").read_text())
    assert done["tool_versions"]["mmseqs2"] == info["tool"]["version"]


@needs_mmseqs
@builds_index
def test_index_cached_next_to_db_version_and_reused(mmseqs_done, own_db, scratch):
    (index,) = list((own_db / "demo_uniref").glob("*/mmseqs/*/BUILD.json"))
    build = json.loads(index.read_text())
    assert build["source"] == "demo_uniref.fasta" and len(build["source_sha256"]) == 64 and build["mmseqs_version"]
    before = index.stat().st_mtime_ns
    from foldstack.steps.msa import run_msa

    stage(scratch, "r2", TARGET, DEMO_SEQ)
    out = run_msa("r2", TARGET, scratch, own_db, "mmseqs2")
    info = json.loads((out / "features.json").read_text())
    assert info["mmseqs_target_db"]["demo_uniref"][0]["target_db"] == "index"
    assert index.stat().st_mtime_ns == before


@needs_mmseqs
@builds_index
def test_mmseqs_hits_are_jackhmmer_hits(mmseqs_done, msa_done):
    def ids(path):
        return {ln[1:].split()[0].split("/")[0] for ln in path.read_text().splitlines()[2:] if ln.startswith(">")}

    scratch, run_id = msa_done
    mm, jh = ids(mmseqs_done / "msa.a3m"), ids(scratch / run_id / "msa" / TARGET / "msa.a3m")
    assert mm and len(mm & jh) / len(mm) >= 0.5


@needs_mmseqs
def test_read_only_root_without_index_is_refused_never_copied(tmp_path, monkeypatch):
    """No index and no write access: a bad-input error naming how to build the index; no
    per-job createdb of the database (it would copy it into scratch)."""
    from foldstack.core.errors import BadInputError
    from foldstack.steps import mmseqs
    from foldstack.steps.databases import Database

    version_dir = tmp_path / "db" / "x" / "v1"
    version_dir.mkdir(parents=True)
    db = Database(name="x", version="v1", path=version_dir, manifest={"sequences": "x.fasta"}, manifest_sha256="0")
    calls = []
    monkeypatch.setattr(mmseqs, "_run", lambda binary, *args, **kw: calls.append(args))
    monkeypatch.setattr(mmseqs.os, "access", lambda path, mode: False)
    work = tmp_path / "work"
    with pytest.raises(BadInputError, match="never copies a database.*foldstack db index --name x --version v1"):
        mmseqs.target_db(db, "mmseqs", work)
    assert calls == [] and not work.exists() and not (version_dir / "mmseqs").exists()


FAKE_MMSEQS = """#!/bin/sh
# Stands in for a CUDA build of MMseqs2 (>= 16): logs argv, makes the files later steps read.
echo "$*" >> "$FAKE_LOG"
case "$1" in
  version) echo "18.8cc5c-fake" ;;
  gpuserver) exec sleep 30 ;;
  createdb|makepaddedseqdb|createindex) mkdir -p "$(dirname "$3")"; : > "$3" ;;
  rmdb) rm -f "$2" ;;  # `rmdb DB -v 1`: $3 is "-v", never a file to write
  search) : > "$4" ;;
  result2msa) printf '>q0\nMKVLAAGIVG\n' > "$5"; printf '0\t0\t17\n' > "$5.index" ;;
esac
"""


def test_gpu_search_plumbing_with_a_fake_binary(tmp_path, monkeypatch):
    """On a CPU machine: the GPU index is built with makepaddedseqdb + createindex --split 1
    --index-subset 2, and a GPU job starts one gpuserver per database, then searches with
    --gpu 1 --prefilter-mode 1 --gpu-server 1 (no -s); the server stops at the end."""
    from foldstack.steps import mmseqs
    from foldstack.steps.databases import Database

    binary = tmp_path / "mmseqs"
    binary.write_text(FAKE_MMSEQS)
    binary.chmod(0o755)
    log = tmp_path / "argv.log"
    monkeypatch.setenv("FAKE_LOG", str(log))
    version_dir = tmp_path / "db" / "x" / "v1"
    version_dir.mkdir(parents=True)
    (version_dir / "x.fasta").write_text(">a\nMKVLAAGIVG\n")
    db = Database(name="x", version="v1", path=version_dir, manifest={"sequences": "x.fasta"}, manifest_sha256="0")
    mmseqs.mmseqs_version.cache_clear()
    index = mmseqs.build_target_index(db, str(binary), gpu=True)
    assert index.name == "18.8cc5c-fake-gpu" and json.loads((index / "BUILD.json").read_text())["gpu"] is True
    built = log.read_text().splitlines()
    assert [ln.split()[0] for ln in built if ln != "version"] == ["createdb", "makepaddedseqdb", "rmdb", "createindex"]
    assert "--split 1 --index-subset 2" in built[-1]

    monkeypatch.setenv(mmseqs.GPU_ENV, "1")
    monkeypatch.setenv(mmseqs.INDEX_ENV, "prebuilt")
    try:
        for _ in range(2):  # two searches in one job: one server
            a3m, info = mmseqs.search_a3m("MKVLAAGIVG", "q0", db, cpus=2, work_dir=tmp_path / "work",
                                          binary=str(binary))
            assert a3m.startswith(">q0\nMKVLAAGIVG") and info["gpu"] is True and info["target_db"] == "index"
        argv = log.read_text().splitlines()
        servers = [ln for ln in argv if ln.startswith("gpuserver")]
        searches = [ln for ln in argv if ln.startswith("search")]
        assert len(servers) == 1 and f"gpuserver {index}/target --max-seqs 10000 --db-load-mode 0 " \
            "--prefilter-mode 1" == servers[0]
        assert len(searches) == 2 and all("--gpu 1 --prefilter-mode 1 --gpu-server 1" in s and " -s " not in s
                                          for s in searches)
    finally:
        assert mmseqs.stop_gpu_servers() == 1
        mmseqs.mmseqs_version.cache_clear()


def test_nul_separated_a3m_is_normalised():
    from foldstack.steps.mmseqs import normalize_a3m

    text = ">q\nMKV\n>hit1\t50\t0.9\nMK-\n\x00>q2\nMKV\n"
    assert normalize_a3m(text.replace("\x00", ""), "T", "MKV") == ">T\nMKV\n>hit1\t50\t0.9\nMK-\n>q2\nMKV\n"
    with pytest.raises(RuntimeError, match="not the query"):
        normalize_a3m(">x\nAAA\n", "T", "MKV")


@needs_mmseqs
@builds_index
def test_chain_cache_keeps_mmseqs_a3m_per_tool(tmp_path, own_db, monkeypatch):
    """MMseqs2 chain entries hold the A3M, live under their own tool, and are reused."""
    import foldstack.steps.mmseqs as mmseqs
    from foldstack.steps.msa import run_msa

    calls = []
    real = mmseqs.search_many_a3m
    monkeypatch.setattr(mmseqs, "search_many_a3m",
                        lambda queries, *a, **k: calls.extend(s for _, s in queries) or real(queries, *a, **k))
    cache, scratch = tmp_path / "cache", tmp_path / "scratch"
    stage(scratch, "r1", "a", DEMO_SEQ)
    first = run_msa("r1", "a", scratch, own_db, "mmseqs2", str(cache))
    (marker,) = cache.glob("msa/mmseqs2-reduced_dbs/*/chains/*/chain.json")
    assert json.loads(marker.read_text())["alignments"] == [
        {"database": name, "fmt": "a3m"} for name in ("demo_uniref", "demo_small_bfd", "demo_mgnify")]
    assert calls == [DEMO_SEQ] * 3 and not list(cache.glob("msa/jackhmmer*"))

    stage(scratch, "r2", "b", DEMO_SEQ)
    second = run_msa("r2", "b", scratch, own_db, "mmseqs2", str(cache))
    assert calls == [DEMO_SEQ] * 3  # not searched again
    info = json.loads((second / "features.json").read_text())
    assert info["chain_cache"]["chains"][0]["cache"] == "hit"
    a, b = load_features(first / "features.npz"), load_features(second / "features.npz")
    assert sorted(a) == sorted(b)
    for key in set(a) - {"domain_name"}:  # the target's own name
        assert np.array_equal(a[key], b[key]), key
