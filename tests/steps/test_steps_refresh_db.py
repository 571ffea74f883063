"""Database lifecycle: fetch a named version from a local source, verify
sha256s, publish (manifest.json, then CURRENT atomically); a mismatch publishes nothing."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from foldstack.core.errors import BadInputError
from foldstack.steps.databases import msa_databases, open_database
from foldstack.steps.refresh_db import refresh_database, run_refresh_db
from foldstack.steps.refresh_db_publish import cleanup_partials
from foldstack.steps.refresh_db_source import ChecksumMismatchError, parse_checksum_file, parse_spec
from tests.fake_aws import RecordedBucket, recorded_bucket_fixture

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
            "role": "uniref90", "sequences": "luxc.fasta", "max_hits": 100, "license": "CC BY 4.0",
            "mmseqs_index": False, **extra}


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
            "unpack": True, "role": "uniref90", "sequences": "luxc.fasta", "mmseqs_index": False}
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


@pytest.mark.slow
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


# ------------------------------------------------------------------ S3 destination (cloud)
# The database FSx file systems are import-only from the database bucket, so in the cloud
# the refresh publishes to s3://<bucket>/<prefix>; moto stands in for S3 here.

BUCKET = "foldstack-test-database"
S3_ROOT = f"s3://{BUCKET}/db"


s3 = recorded_bucket_fixture(BUCKET)


def import_like_fsx(bucket: RecordedBucket, dest: Path) -> Path:
    """Materialise the bucket's db/ prefix as the DB file system would show it."""
    for key, data in bucket.bodies("db/").items():
        path = dest / key[len("db/"):]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return dest


@pytest.mark.slow
def test_s3_publish_uploads_files_then_manifest_then_current_last(s3, source, tmp_path):
    big = source / "big.bin"  # above boto3's 8 MiB threshold: a managed multipart upload
    big.write_bytes(b"\x01" * (9 << 20))
    staging = tmp_path / "staging"
    out = refresh_database(parse_spec(spec_for(source)), S3_ROOT, RUN, staging_root=staging)
    assert out["action"] == "published" and out["path"] == f"{S3_ROOT}/luxc/v2"
    writes = s3.writes
    assert writes[-2:] == ["db/luxc/v2/manifest.json", "db/luxc/CURRENT"]  # CURRENT strictly last
    files = {"db/luxc/v2/README", "db/luxc/v2/big.bin", "db/luxc/v2/luxc.fasta"}
    assert files <= set(writes[:-2])
    assert s3.keys("db/") == sorted([*files, "db/luxc/v2/manifest.json", "db/luxc/CURRENT"])  # no marker left
    assert s3.body("db/luxc/CURRENT") == b"v2\n"
    assert list(staging.iterdir()) == []  # the local download is gone
    fsx = import_like_fsx(s3, tmp_path / "fsx-db")
    db = open_database(fsx, "luxc", verify=True)  # sizes + sha256 of what was uploaded
    assert db.manifest["source_files"] == spec_for(source)["files"]
    assert out["manifest_sha256"] == _sha(s3.body("db/luxc/v2/manifest.json"))


def test_s3_checksum_mismatch_uploads_nothing_and_keeps_current(s3, source, tmp_path, fasta_bytes):
    refresh_database(parse_spec(spec_for(source)), S3_ROOT, RUN, staging_root=tmp_path / "st")
    before = s3.bodies("db/")
    s3.writes.clear()
    bad = spec_for(source, version="v3")
    bad["files"]["luxc.fasta"] = _sha(b"what the publisher announced")
    with pytest.raises(ChecksumMismatchError, match="CURRENT still names 'v2'"):
        refresh_database(parse_spec(bad), S3_ROOT, RUN, staging_root=tmp_path / "st")
    assert s3.writes == []  # verified locally first: nothing of v3 reached the bucket
    assert s3.bodies("db/") == before
    assert list((tmp_path / "st").iterdir()) == []


@pytest.mark.parametrize("fail_on", ["upload", "CURRENT"])
def test_s3_failure_after_upload_removes_only_the_partial_version(s3, source, tmp_path, monkeypatch, fail_on):
    from foldstack import storage

    refresh_database(parse_spec(spec_for(source)), S3_ROOT, RUN, staging_root=tmp_path / "st")
    before = s3.bodies("db/")
    real_copy, real_write = storage.copy, storage.write_bytes
    copies = []

    def copy(src, dst, **kw):
        copies.append(dst)
        if fail_on == "upload" and len(copies) == 2:
            raise ConnectionError("network lost mid-upload")
        return real_copy(src, dst, **kw)

    def write_bytes(uri, data, **kw):
        if fail_on == "CURRENT" and uri.endswith("/CURRENT"):
            raise ConnectionError("PutObject CURRENT failed")
        return real_write(uri, data, **kw)

    monkeypatch.setattr(storage, "copy", copy)
    monkeypatch.setattr(storage, "write_bytes", write_bytes)
    s3.writes.clear()
    with pytest.raises(ConnectionError):
        refresh_database(parse_spec(spec_for(source, version="v3")), S3_ROOT, "run-2", staging_root=tmp_path / "st")
    assert any(k.startswith("db/luxc/v3/") for k in s3.writes)  # something of v3 was uploaded ...
    assert s3.bodies("db/") == before  # ... and removed again
    assert s3.keys("db/.refresh/") == []


@pytest.mark.slow
def test_s3_refuses_to_overwrite_the_current_version(s3, source, tmp_path):
    refresh_database(parse_spec(spec_for(source)), S3_ROOT, RUN, staging_root=tmp_path / "st")
    before = s3.bodies("db/")
    other = spec_for(source)
    other["files"]["luxc.fasta"] = "0" * 64
    with pytest.raises(BadInputError, match="refusing to replace a version in use"):
        refresh_database(parse_spec(other), S3_ROOT, RUN, staging_root=tmp_path / "st")
    assert s3.bodies("db/") == before


def test_s3_rerun_is_idempotent_and_rollback_only_moves_current(s3, source, tmp_path, fasta_bytes):
    st = tmp_path / "st"
    refresh_database(parse_spec(spec_for(source)), S3_ROOT, RUN, staging_root=st)
    s3.writes.clear()
    again = refresh_database(parse_spec(spec_for(source)), S3_ROOT, "again", staging_root=st)
    assert again["action"] == "already_current"
    assert s3.writes == []
    newer = tmp_path / "v3src"
    newer.mkdir()
    (newer / "luxc.fasta").write_bytes(fasta_bytes[: len(fasta_bytes) // 2].rsplit(b"\n>", 1)[0] + b"\n")
    refresh_database(parse_spec(spec_for(newer, version="v3")), S3_ROOT, RUN, staging_root=st)
    assert s3.body("db/luxc/CURRENT") == b"v3\n"
    s3.writes.clear()
    back = refresh_database(parse_spec(spec_for(source)), S3_ROOT, "rollback", staging_root=st)
    assert back["action"] == "republished" and back["previous"] == "v3"
    assert s3.writes == ["db/luxc/CURRENT"] and s3.body("db/luxc/CURRENT") == b"v2\n"


@pytest.mark.slow
def test_s3_step_and_cleanup_of_a_killed_job(s3, source, tmp_path):
    final = run_refresh_db(RUN, tmp_path / "scratch", S3_ROOT, json.dumps(spec_for(source)))
    assert json.loads((final / "published.json").read_text())["path"] == f"{S3_ROOT}/luxc/v2"
    assert sorted(p.name for p in (tmp_path / "scratch" / RUN / "refresh_db").iterdir()) == ["luxc"]
    client = s3.client
    # A job of this run killed mid-upload of v3: its marker and a partial v3 remain; another
    # run's marker, and a marker naming the CURRENT version, must not lead to deletions.
    for key in (f"db/.refresh/{RUN}/luxc/v3", "db/luxc/v3/luxc.fasta", "db/.refresh/other-run/luxc/v4",
                "db/luxc/v4/luxc.fasta", f"db/.refresh/{RUN}/pksi/v1", "db/pksi/CURRENT", "db/pksi/v1/x"):
        client.put_object(Bucket=BUCKET, Key=key, Body=b"v1\n" if key.endswith("CURRENT") else b"")
    removed = cleanup_partials(S3_ROOT, RUN)
    assert removed == [f"{S3_ROOT}/luxc/v3"]
    assert s3.keys("db/") == sorted(["db/.refresh/other-run/luxc/v4", "db/luxc/CURRENT", "db/luxc/v2/README",
                                   "db/luxc/v2/luxc.fasta", "db/luxc/v2/manifest.json", "db/luxc/v4/luxc.fasta",
                                   "db/pksi/CURRENT", "db/pksi/v1/x"])


# ------------------------------------------------------------------ reader: FSx import lag


@pytest.fixture
def half_imported(source, db_root, monkeypatch):
    """CURRENT imported, the version not (yet): what a job on FSx may see right after a
    publish. The full version is built aside in `complete`."""
    monkeypatch.setenv("FOLDSTACK_DB_IMPORT_RETRIES", "3")
    monkeypatch.setenv("FOLDSTACK_DB_IMPORT_INTERVAL_S", "0")
    complete = db_root.parent / "complete"
    complete.mkdir()
    refresh_database(parse_spec(spec_for(source)), complete, RUN)
    (db_root / "luxc").mkdir()
    (db_root / "luxc" / "CURRENT").write_text("v2\n")
    return complete / "luxc" / "v2"


def test_reader_fails_clearly_when_the_manifest_never_arrives(half_imported, db_root):
    from foldstack.steps.databases import DatabaseNotReadyError

    with pytest.raises(DatabaseNotReadyError, match=r"database 'luxc' version v2 .*after 3 retries.*manifest\.json"):
        open_database(db_root, "luxc")
    with pytest.raises(DatabaseNotReadyError):
        msa_databases(db_root)  # the msa step never searches a half-imported version


def test_reader_names_the_missing_file_when_only_the_manifest_arrived(half_imported, db_root):
    from foldstack.steps.databases import DatabaseNotReadyError

    (db_root / "luxc" / "v2").mkdir()
    (db_root / "luxc" / "v2" / "manifest.json").write_bytes((half_imported / "manifest.json").read_bytes())
    (db_root / "luxc" / "v2" / "README").write_bytes((half_imported / "README").read_bytes())
    with pytest.raises(DatabaseNotReadyError, match=r"missing \S*/luxc/v2/luxc\.fasta") as err:
        open_database(db_root, "luxc", verify=False)
    assert "README" not in str(err.value)


def test_reader_waits_for_the_import_then_succeeds(half_imported, db_root, monkeypatch):
    import shutil as _shutil

    from foldstack.steps import databases

    waits = []

    def sleep(seconds):  # the "import" lands during the second wait
        waits.append(seconds)
        if len(waits) == 2:
            _shutil.copytree(half_imported, db_root / "luxc" / "v2")

    monkeypatch.setenv("FOLDSTACK_DB_IMPORT_INTERVAL_S", "7")
    monkeypatch.setattr(databases.time, "sleep", sleep)
    db = open_database(db_root, "luxc", verify=True)
    assert db.version == "v2" and waits == [7.0, 7.0]
    assert [d.name for d in msa_databases(db_root)] == ["luxc"]
