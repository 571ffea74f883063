"""Database lifecycle (issue 5 item 3): fetch a named version from a local source, verify
sha256s, publish (manifest.json, then CURRENT atomically); a mismatch publishes nothing."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from foldstack.steps.common import BadInputError
from foldstack.steps.databases import msa_databases, open_database
from foldstack.steps.refresh_db import (
    ChecksumMismatchError,
    cleanup_partials,
    parse_checksum_file,
    parse_spec,
    refresh_database,
    run_refresh_db,
)

RUN = "refresh-test-1"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def fasta_bytes() -> bytes:
    """Real UniProtKB LuxC sequences shipped in pyhmmer's test data."""
    from foldstack.demo_data import pyhmmer_seqs_dir

    return (pyhmmer_seqs_dir() / "LuxC.faa").read_bytes()


@pytest.fixture
def source(tmp_path, fasta_bytes) -> Path:
    src = tmp_path / "mirror" / "luxc" / "v2"
    src.mkdir(parents=True)
    (src / "luxc.fasta").write_bytes(fasta_bytes)
    (src / "README").write_text("LuxC test DB\n")
    return src


@pytest.fixture
def db_root(tmp_path) -> Path:
    root = tmp_path / "db"
    root.mkdir()
    return root


def spec_for(source: Path, version: str = "v2", **extra) -> dict:
    files = {p.name: _sha(p.read_bytes()) for p in sorted(source.iterdir()) if p.is_file()}
    return {"name": "luxc", "version": version, "source": str(source), "files": files,
            "role": "uniref90", "sequences": "luxc.fasta", "max_hits": 100, "license": "CC BY 4.0", **extra}


def listing(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def test_publish_from_local_dir_writes_manifest_then_current(source, db_root):
    out = refresh_database(parse_spec(spec_for(source)), db_root, RUN)
    assert out["action"] == "published" and out["previous"] is None
    base = db_root / "luxc"
    assert (base / "CURRENT").read_text() == "v2\n"
    assert listing(base) == ["CURRENT", "v2"]  # no staging or temp files left
    db = open_database(db_root, "luxc", verify=True)  # sizes + sha256 against the manifest
    assert db.version == "v2" and db.manifest["source_files"] == spec_for(source)["files"]
    assert db.manifest["files"]["luxc.fasta"]["sha256"] == _sha((source / "luxc.fasta").read_bytes())
    assert [d.name for d in msa_databases(db_root)] == ["luxc"]  # the msa step will search it


def test_checksum_mismatch_publishes_nothing_and_keeps_current(source, db_root):
    refresh_database(parse_spec(spec_for(source)), db_root, RUN)
    (source / "luxc.fasta").write_bytes(b">tampered\nMKV\n")
    bad = spec_for(source, version="v3")
    bad["files"]["luxc.fasta"] = _sha(b"what the publisher announced")
    with pytest.raises(ChecksumMismatchError, match="does not match the expected"):
        refresh_database(parse_spec(bad), db_root, RUN)
    base = db_root / "luxc"
    assert (base / "CURRENT").read_text() == "v2\n"
    assert listing(base) == ["CURRENT", "v2"]  # partial v3 removed, v2 untouched
    open_database(db_root, "luxc", verify=True)


def test_checksum_file_over_file_uri_with_unpack(tmp_path, db_root, fasta_bytes):
    src = tmp_path / "pub"
    src.mkdir()
    gz = gzip.compress(fasta_bytes)
    (src / "luxc.fasta.gz").write_bytes(gz)
    (src / "SHA256SUMS").write_text(f"{_sha(gz)}  luxc.fasta.gz\n")
    spec = {"name": "luxc", "version": "2024_01", "source": f"file://{src}", "checksums": "SHA256SUMS",
            "unpack": True, "role": "uniref90", "sequences": "luxc.fasta"}
    refresh_database(parse_spec(spec), db_root, RUN)
    db = open_database(db_root, "luxc", verify=True)
    assert db.sequences.read_bytes() == fasta_bytes
    assert set(db.manifest["files"]) == {"luxc.fasta"}
    assert db.manifest["source_files"] == {"luxc.fasta.gz": _sha(gz)}


def test_rerun_is_idempotent_and_rollback_republishes(source, db_root, tmp_path, fasta_bytes):
    refresh_database(parse_spec(spec_for(source)), db_root, RUN)
    assert refresh_database(parse_spec(spec_for(source)), db_root, "again")["action"] == "already_current"
    newer = tmp_path / "v3src"
    newer.mkdir()
    (newer / "luxc.fasta").write_bytes(fasta_bytes[: len(fasta_bytes) // 2].rsplit(b"\n>", 1)[0] + b"\n")
    refresh_database(parse_spec(spec_for(newer, version="v3")), db_root, RUN)
    assert (db_root / "luxc" / "CURRENT").read_text() == "v3\n"
    back = refresh_database(parse_spec(spec_for(source)), db_root, "rollback")
    assert back["action"] == "republished" and back["previous"] == "v3"
    assert (db_root / "luxc" / "CURRENT").read_text() == "v2\n"


def test_non_current_version_dir_that_does_not_match_is_replaced(source, db_root):
    junk = db_root / "luxc" / "v2"
    junk.mkdir(parents=True)
    (junk / "luxc.fasta").write_text(">half\nMK\n")
    refresh_database(parse_spec(spec_for(source)), db_root, RUN)
    open_database(db_root, "luxc", verify=True)


def test_current_version_that_does_not_match_is_refused(source, db_root):
    refresh_database(parse_spec(spec_for(source)), db_root, RUN)
    other = spec_for(source)
    other["files"]["luxc.fasta"] = "0" * 64
    with pytest.raises(BadInputError, match="refusing to replace a version in use"):
        refresh_database(parse_spec(other), db_root, RUN)
    open_database(db_root, "luxc", verify=True)


def test_missing_source_file_is_bad_input(source, db_root):
    spec = spec_for(source)
    spec["files"]["absent.fasta"] = "a" * 64
    with pytest.raises(BadInputError, match="not found"):
        refresh_database(parse_spec(spec), db_root, RUN)
    assert not (db_root / "luxc" / "CURRENT").exists() and listing(db_root / "luxc") == []


@pytest.mark.parametrize("bad", [
    {"files": {"../escape": "a" * 64}},
    {"files": {"x": "not-a-sha"}},
    {"checksums": "SHA256SUMS"},  # with files too: exactly one
    {"version": "../v"},
    {"name": "a/b"},
    {"role": "uniref90", "sequences": None},
])
def test_bad_specs_are_rejected(source, bad):
    spec = {**spec_for(source), **bad}
    with pytest.raises(BadInputError):
        parse_spec(spec)


def test_checksum_file_formats():
    digest = "ab" * 32
    assert parse_checksum_file(f"{digest}  a.fa\n{digest} *b.fa\nSHA256 (c.fa) = {digest.upper()}\n") == {
        "a.fa": digest, "b.fa": digest, "c.fa": digest}
    with pytest.raises(BadInputError, match="line 1"):
        parse_checksum_file(f"{digest}  ../x\n")


def test_cleanup_removes_only_this_runs_partials(db_root):
    base = db_root / "luxc"
    (base / "v2").mkdir(parents=True)
    (base / "CURRENT").write_text("v2\n")
    (base / f".v3.partial-{RUN}-abc").mkdir()
    (base / ".v3.partial-other-run-abc").mkdir()
    removed = cleanup_partials(db_root, RUN)
    assert [Path(r).name for r in removed] == [f".v3.partial-{RUN}-abc"]
    assert listing(base) == [".v3.partial-other-run-abc", "CURRENT", "v2"]


def test_step_contract_records_timings_and_publication(source, db_root, tmp_path):
    final = run_refresh_db(RUN, tmp_path / "scratch", db_root, json.dumps(spec_for(source)))
    done = json.loads((final / "refresh_db.done.json").read_text())
    assert done["target"] == "luxc" and "download" in done["timings"] and done["started_at"]
    published = json.loads((final / "published.json").read_text())
    assert published["action"] == "published" and published["version"] == "v2"


def test_cli_exit_codes(source, db_root, tmp_path):
    def step(spec):
        return subprocess.run(
            [sys.executable, "-m", "foldstack", "step", "refresh-db", "--run-id", RUN,
             "--scratch", str(tmp_path / "scratch"), "--db", str(db_root), "--spec", json.dumps(spec)],
            capture_output=True, text=True, timeout=120)

    bad = spec_for(source)
    bad["files"]["luxc.fasta"] = "f" * 64
    proc = step(bad)
    assert proc.returncode == 2, proc.stderr
    assert "does not match the expected" in proc.stderr and not (db_root / "luxc" / "CURRENT").exists()
    proc = step(spec_for(source))
    assert proc.returncode == 0, proc.stderr
    assert (db_root / "luxc" / "CURRENT").read_text() == "v2\n"
