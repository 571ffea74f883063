"""Database versions users can get: a refresh that unpacks a tarball, builds the MMseqs2
index and publishes CURRENT last; `foldstack db build` from one's own FASTA; the msa step
searching that index read-only (never copying the database); a run's pinned versions."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from foldstack.core.errors import BadInputError
from foldstack.steps import refresh_db_publish
from foldstack.steps.databases import open_database
from foldstack.steps.refresh_db import refresh_database
from foldstack.steps.refresh_db_source import parse_spec
from foldstack.steps.refresh_db_unpack import unpack_archive
from tests.steps.conftest import stage
from tests.steps.test_steps_refresh_db import s3  # noqa: F401, F811 - the moto S3 fixture

HAVE_MMSEQS = shutil.which("mmseqs") is not None
needs_mmseqs = pytest.mark.skipif(not HAVE_MMSEQS, reason="Debian mmseqs2 not installed")
# Building a real MMseqs2 index takes ~17 s and ~860 MB (the k-mer table, whatever the
# database size): those tests run in `make test`, not `make test-fast`.
builds_index = pytest.mark.slow


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _luxc() -> bytes:
    from foldstack.demo_data import pyhmmer_seqs_dir

    return (pyhmmer_seqs_dir() / "LuxC.faa").read_bytes()


def _first_record(fasta: bytes) -> tuple[str, str]:
    lines = fasta.decode().split(">")[1].splitlines()
    return lines[0].split()[0], "".join(lines[1:]).rstrip("*")


def _tar(members: list[tuple[str, bytes | None, str]], mode: str = "w:gz") -> bytes:
    """A tarball of (name, data, kind) members; kind: file | dir | symlink | hardlink."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind in ("symlink", "hardlink"):
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                info.linkname = data.decode() if data else "/etc/passwd"
                tar.addfile(info)
            else:
                info.size = len(data or b"")
                tar.addfile(info, io.BytesIO(data or b""))
    return buf.getvalue()


# ------------------------------------------------------------------ refresh: tarball -> index -> CURRENT last


@pytest.fixture(scope="module")
def refreshed(tmp_path_factory):
    """A refresh of a .tar.gz (FASTA inside a directory) with the MMseqs2 index: records
    what existed at the moment CURRENT was written."""
    if not HAVE_MMSEQS:
        pytest.skip("Debian mmseqs2 not installed")
    tmp = tmp_path_factory.mktemp("refresh-tar")
    src, root = tmp / "src", tmp / "db"
    src.mkdir()
    root.mkdir()
    fasta = _luxc()
    tgz = _tar([("./", None, "dir"), ("./seqs/", None, "dir"), ("./seqs/luxc.fasta", fasta, "file"),
                ("./README", b"LuxC test database\n", "file")])
    (src / "luxc_v1.tar.gz").write_bytes(tgz)
    spec = {"name": "luxc", "version": "v1", "source": f"file://{src}", "files": {"luxc_v1.tar.gz": _sha(tgz)},
            "unpack": True, "roles": ["uniref90", "mgnify", "small_bfd"],  # serves reduced_dbs on its own
            "sequences": "seqs/luxc.fasta", "max_hits": 100}
    seen: dict[str, object] = {}
    real = refresh_db_publish.set_current

    def spy(base, version):
        version_dir = Path(base) / version
        seen["manifest"] = (version_dir / "manifest.json").is_file()
        seen["index"] = sorted(p.parent.name for p in version_dir.glob("mmseqs/*/BUILD.json"))
        seen["partials"] = sorted(p.name for p in Path(base).iterdir() if ".partial-" in p.name)
        seen["current_before"] = (Path(base) / "CURRENT").exists()
        real(base, version)

    refresh_db_publish.set_current = spy
    try:
        out = refresh_database(parse_spec(spec), root, "refresh-tar-1")
    finally:
        refresh_db_publish.set_current = real
    return {"out": out, "root": root, "seen": seen, "fasta": fasta, "tgz": tgz, "spec": spec}


@builds_index
def test_refresh_unpacks_tarball_builds_index_and_publishes_current_last(refreshed):
    out, root, seen = refreshed["out"], refreshed["root"], refreshed["seen"]
    assert out["action"] == "published"
    # CURRENT was written last: the version dir was complete (manifest + index), no staging left
    assert seen == {"manifest": True, "index": seen["index"], "partials": [], "current_before": False}
    assert len(seen["index"]) == 1
    assert (root / "luxc" / "CURRENT").read_text() == "v1\n"
    db = open_database(root, "luxc", verify=True)
    assert db.sequences.read_bytes() == refreshed["fasta"]
    files = db.manifest["files"]
    assert "luxc_v1.tar.gz" not in files and {"seqs/luxc.fasta", "README"} <= set(files)
    index = db.manifest["indexes"]["mmseqs2"]
    assert f"{index['path']}/BUILD.json" in files and f"{index['path']}/target.idx" in files
    assert index["source_sha256"] == _sha(refreshed["fasta"]) and index["gpu"] is False
    assert db.manifest["source_files"] == {"luxc_v1.tar.gz": _sha(refreshed["tgz"])}
    # the same request again is a no-op (the index included)
    again = refresh_database(parse_spec(refreshed["spec"]), root, "refresh-tar-2")
    assert again["action"] == "already_current"


@needs_mmseqs
@builds_index
def test_msa_job_uses_the_published_index_read_only(refreshed, tmp_path, monkeypatch):
    """The version directory cannot be written (as FSx): the search uses the published
    index, writes nothing under the database, and its scratch stays small."""
    from foldstack.steps import mmseqs
    from foldstack.steps.msa import run_msa

    root = refreshed["root"]
    before = {str(p): p.stat().st_mtime_ns for p in root.rglob("*")}
    db_bytes = sum(p.stat().st_size for p in (root / "luxc").rglob("*") if p.is_file())
    real_access = os.access
    monkeypatch.setattr(mmseqs.os, "access", lambda path, mode: False if mode & os.W_OK else real_access(path, mode))
    monkeypatch.setenv(mmseqs.INDEX_ENV, "prebuilt")
    peak = {"bytes": 0}
    real_run = mmseqs._run

    def measured(binary, *args, **kw):
        assert not (args[0] == "createdb" and str(args[1]).startswith(str(root))), "the database was copied"
        real_run(binary, *args, **kw)
        work = Path(str(args[1])).parent  # the search's own temp dir (query DB, results, A3M)
        peak["bytes"] = max(peak["bytes"], sum(p.stat().st_size for p in work.rglob("*") if p.is_file()))

    monkeypatch.setattr(mmseqs, "_run", measured)
    name, seq = _first_record(refreshed["fasta"])
    scratch = tmp_path / "scratch"
    stage(scratch, "ro", "t1", seq)
    out = run_msa("ro", "t1", scratch, root, "mmseqs2")
    info = json.loads((out / "features.json").read_text())
    runs = info["mmseqs_target_db"]["luxc"]  # the searches of the database (one per distinct search)
    assert runs
    for run in runs:
        assert run["target_db"] == "index" and Path(run["index"]).parent == root / "luxc" / "v1" / "mmseqs", run
        assert run["mmseqs_version"] and len(run["build_sha256"]) == 64 and run["gpu"] is False
    assert {str(p): p.stat().st_mtime_ns for p in root.rglob("*")} == before  # nothing written under the DB
    assert 0 < peak["bytes"] < 0.05 * db_bytes, (peak, db_bytes)  # scratch: a small fraction of the DB
    assert info["msa_depth"] >= 2


# ------------------------------------------------------------------ unpacking


@pytest.mark.parametrize("member, kind, why", [
    ("../escape.txt", "file", "refusing member"),
    ("/etc/evil", "file", "refusing member"),
    ("a/../../b", "file", "refusing member"),
    ("link", "symlink", "a link"),
    ("hard", "hardlink", "a link"),
    ("manifest.json", "file", "refusing member"),
    (".hidden", "file", "refusing member"),
])
def test_unpack_refuses_escaping_members_and_links(tmp_path, member, kind, why):
    dest = tmp_path / "stage"
    dest.mkdir()
    archive = dest / "x.tar"
    archive.write_bytes(_tar([("ok.txt", b"fine\n", "file"), (member, b"x\n", kind)], mode="w"))
    with pytest.raises(BadInputError, match=why):
        unpack_archive(archive, dest)
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "b").exists()


@pytest.mark.skipif(shutil.which("zstd") is None, reason="zstd binary not installed")
def test_unpack_zst_and_tar_zst(tmp_path):
    dest = tmp_path / "stage"
    dest.mkdir()
    plain = tmp_path / "pdb_seqres.fasta"
    plain.write_bytes(b">101m_A mol:protein length:3  MYO\nMKV\n")
    subprocess.run(["zstd", "-q", "-o", str(dest / "pdb_seqres.fasta.zst"), str(plain)], check=True)
    tar = tmp_path / "m.tar"
    tar.write_bytes(_tar([("mmcif_files/", None, "dir"), ("mmcif_files/101m.cif", b"data_101M\n", "file")], mode="w"))
    subprocess.run(["zstd", "-q", "-o", str(dest / "mmcif.tar.zst"), str(tar)], check=True)
    assert unpack_archive(dest / "pdb_seqres.fasta.zst", dest) == ["pdb_seqres.fasta"]
    assert unpack_archive(dest / "mmcif.tar.zst", dest) == ["mmcif_files/101m.cif"]
    assert sorted(p.name for p in dest.iterdir()) == ["mmcif_files", "pdb_seqres.fasta"]
    assert (dest / "pdb_seqres.fasta").read_bytes() == plain.read_bytes()


def test_template_database_from_archives_and_trust_on_first_use(tmp_path):
    """A pdb_mmcif version from an mmCIF tarball + a gzipped seqres, no published checksums:
    refused unless trust_on_first_use, which records the digests seen."""
    src, root = tmp_path / "src", tmp_path / "db"
    src.mkdir()
    root.mkdir()
    tgz = _tar([("mmcif_files/", None, "dir"), ("mmcif_files/1abc.cif", b"data_1ABC\n", "file")])
    (src / "mmcif.tar.gz").write_bytes(tgz)
    seqres = gzip.compress(b">1abc_A mol:protein length:3  X\nMKV\n")
    (src / "pdb_seqres.txt.gz").write_bytes(seqres)
    spec = {"name": "pdb_mmcif", "version": "2024_01", "source": str(src), "unpack": True,
            "files": {"mmcif.tar.gz": None, "pdb_seqres.txt.gz": None}, "role": "pdb_mmcif",
            "seqres": "pdb_seqres.txt", "mmcif_dir": "mmcif_files", "max_template_date": "2024-01-01"}
    with pytest.raises(BadInputError, match="trust_on_first_use"):
        parse_spec(spec)
    out = refresh_database(parse_spec({**spec, "trust_on_first_use": True}), root, "tofu-1")
    assert out["action"] == "published" and (root / "pdb_mmcif" / "CURRENT").read_text() == "2024_01\n"
    db = open_database(root, "pdb_mmcif", verify=True)
    m = db.manifest
    assert m["role"] == "pdb_mmcif" and m["seqres"] == "pdb_seqres.txt" and m["mmcif_dir"] == "mmcif_files"
    assert m["source_files"] == {"mmcif.tar.gz": _sha(tgz), "pdb_seqres.txt.gz": _sha(seqres)}
    assert m["unverified_files"] == ["mmcif.tar.gz", "pdb_seqres.txt.gz"] and "indexes" not in m
    assert set(m["files"]) == {"mmcif_files/1abc.cif", "pdb_seqres.txt"}
    # a rerun with the digests now known is recognised as the same version
    pinned = {**spec, "files": {"mmcif.tar.gz": _sha(tgz), "pdb_seqres.txt.gz": _sha(seqres)}}
    assert refresh_database(parse_spec(pinned), root, "tofu-2")["action"] == "already_current"


def test_file_sources_fetch_each_file_from_its_own_uri(tmp_path):
    a, b, root = tmp_path / "a", tmp_path / "b", tmp_path / "db"
    for d in (a, b, root):
        d.mkdir()
    fasta = _luxc()
    (a / "luxc.fasta").write_bytes(fasta)
    (b / "NOTES").write_bytes(b"elsewhere\n")
    spec = {"name": "luxc", "version": "v1", "source": str(a), "role": "uniref90", "sequences": "luxc.fasta",
            "mmseqs_index": False, "files": {"luxc.fasta": _sha(fasta), "NOTES": _sha(b"elsewhere\n")},
            "file_sources": {"NOTES": f"file://{b}/NOTES"}}
    refresh_database(parse_spec(spec), root, "fs-1")
    assert (root / "luxc" / "v1" / "NOTES").read_bytes() == b"elsewhere\n"


# ------------------------------------------------------------------ foldstack db build / list


@needs_mmseqs
@builds_index
def test_db_build_from_fasta_files_then_list(tmp_path):
    from typer.testing import CliRunner

    from foldstack.cli import app
    from foldstack.demo_data import pyhmmer_seqs_dir

    root = tmp_path / "home" / "db"
    pksi_gz = tmp_path / "pksi.fasta.gz"
    pksi_gz.write_bytes(gzip.compress((pyhmmer_seqs_dir() / "PKSI.faa").read_bytes()))
    luxc = pyhmmer_seqs_dir() / "LuxC.faa"
    runner = CliRunner()
    args = ["db", "build", "--name", "mine", "--version", "v1", "--fasta", str(luxc), "--fasta", str(pksi_gz),
            "--db", str(root), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    built = json.loads(result.stdout[result.stdout.index("{"):])
    assert built["action"] == "published" and built["records"] == 22
    db = open_database(root, "mine", verify=True)
    assert db.role == "uniref90" and db.manifest["sequence_count"] == 22
    assert db.manifest["source"].startswith("foldstack db build: LuxC.faa, pksi.fasta.gz")
    assert list((db.path / "mmseqs").glob("*/BUILD.json")) and not list(root.glob(".db-build-*"))
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and '"already_current"' in again.stdout
    listed = runner.invoke(app, ["db", "list", "--db", str(root), "--json"])
    assert listed.exit_code == 0, listed.output
    (entry,) = json.loads(listed.stdout)["databases"]
    assert entry["name"] == "mine" and entry["current"] == "v1"
    assert entry["versions"][0]["current"] and entry["versions"][0]["mmseqs_indexes"]


def test_db_build_rejects_what_is_not_fasta(tmp_path):
    from foldstack.steps.db_build import build_database

    bad = tmp_path / "x.fasta"
    bad.write_text("MKV\n")
    with pytest.raises(BadInputError, match="not FASTA"):
        build_database(tmp_path / "db", "x", "v1", [bad], index=False)
    bad.write_text(">a\nMK1V\n")
    with pytest.raises(BadInputError, match="not residues"):
        build_database(tmp_path / "db", "x", "v1", [bad], index=False)
    assert not list((tmp_path / "db").glob("x/*"))


# ------------------------------------------------------------------ pinned versions (--db NAME=VERSION)


def test_a_run_pins_a_version_other_than_current(tmp_path, monkeypatch):
    """Two versions built by the user; CURRENT names v2, the request pins v1: the msa step
    searches v1, and the MSA cache key says v1."""
    from foldstack.cachekeys import resolve_db_versions
    from foldstack.steps.db_build import build_database
    from foldstack.steps.msa import run_msa

    root = tmp_path / "db"
    luxc = _luxc()
    (tmp_path / "v1.fasta").write_bytes(luxc)
    (tmp_path / "v2.fasta").write_bytes(luxc.split(b"\n>", 1)[0] + b"\n")  # first record only
    roles = ["uniref90", "mgnify", "small_bfd"]  # one database serving reduced_dbs
    build_database(root, "uniref90", "v1", [tmp_path / "v1.fasta"], role=roles, index=False)
    build_database(root, "uniref90", "v2", [tmp_path / "v2.fasta"], role=roles, index=False)
    assert (root / "uniref90" / "CURRENT").read_text() == "v2\n"
    _, seq = _first_record(luxc)
    scratch = tmp_path / "scratch"
    stage(scratch, "pin", "t1", seq)
    request = {"inputs": ["x.fasta"], "output_uri": str(tmp_path / "out"), "db_versions": {"uniref90": "v1"}}
    (scratch / "pin" / "input" / "request.json").write_text(json.dumps(request))
    out = run_msa("pin", "t1", scratch, root, "jackhmmer")
    info = json.loads((out / "features.json").read_text())
    assert {(d["name"], d["version"]) for d in info["databases"]} == {("uniref90", "v1")}
    assert info["msa_depth"] > 2  # v2 holds only the query's own record
    assert resolve_db_versions(str(root), {"uniref90": "v1"}) == {"uniref90": "v1"}
    assert resolve_db_versions(str(root)) == {"uniref90": "v2"}
    from foldstack.steps.databases import pinned_versions

    with pytest.raises(BadInputError, match="v9.*installed: v1, v2"), pinned_versions({"uniref90": "v9"}):
        open_database(root, "uniref90")


def test_request_validates_pins_and_keys_the_run_id_on_them():
    from foldstack.core.fasta import parse_fasta
    from foldstack.core.request import RunRequest
    from foldstack.core.runid import make_run_id

    records = parse_fasta(">a\nMKVLAAGIVGLLL\n", source="x")
    base = RunRequest(inputs=["x.fasta"], output_uri="/tmp/o")
    pinned = RunRequest(inputs=["x.fasta"], output_uri="/tmp/o", db_versions={"uniref90": "2022_05"})
    assert make_run_id(base, records) != make_run_id(pinned, records)
    with pytest.raises(ValueError, match="db_versions"):
        RunRequest(inputs=["x.fasta"], output_uri="/tmp/o", db_versions={"../x": "v1"})
    with pytest.raises(ValueError, match="alphafold2 options"):
        RunRequest(inputs=["x.fasta"], output_uri="/tmp/o", engine="esmfold", db_versions={"uniref90": "v1"})


def test_db_build_to_s3_publishes_manifest_then_current(s3, tmp_path):  # noqa: F811 - the fixture
    """`foldstack db build --db s3://...`: files, then manifest.json, then CURRENT last;
    `db list` reads the bucket."""
    from foldstack.steps.db_build import build_database, list_databases
    from tests.steps.test_steps_refresh_db import BUCKET

    fasta = tmp_path / "mine.fasta"
    fasta.write_bytes(_luxc())
    root = f"s3://{BUCKET}/db"
    out = build_database(root, "mine", "v1", [fasta], index=False)
    assert out["action"] == "published" and out["path"] == f"{root}/mine/v1"
    writes = [k for k in s3.writes if k.startswith("db/mine/")]
    assert writes[-2:] == ["db/mine/v1/manifest.json", "db/mine/CURRENT"] and "db/mine/v1/mine.fasta" in writes
    (entry,) = list_databases(root)
    assert entry["name"] == "mine" and entry["current"] == "v1" and entry["versions"][0]["role"] == "uniref90"
