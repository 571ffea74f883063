"""The refresh_databases workflow on the local engine: the rendered ASL, the jobs.yaml
commands as subprocesses, a local source directory standing in for https/s3."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from foldstack.local import LocalEngine
from foldstack.workflows.render import rendered_path
from foldstack.workflows.specs import load_workflow

REPO = Path(__file__).resolve().parents[2]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def workflow():
    return load_workflow("refresh_databases", REPO / "statemachines")


@pytest.fixture
def env(tmp_path, workflow):
    from foldstack.demo_data import pyhmmer_seqs_dir

    src = tmp_path / "mirror"
    for name, faa in (("luxc", "LuxC.faa"), ("pksi", "PKSI.faa")):
        (src / name).mkdir(parents=True)
        (src / name / f"{name}.fasta").write_bytes((pyhmmer_seqs_dir() / faa).read_bytes())
    (src / "pksi" / "SHA256SUMS").write_text(f"{_sha(src / 'pksi' / 'pksi.fasta')}  pksi.fasta\n")
    db = tmp_path / "db"
    db.mkdir()
    engine = LocalEngine(
        rendered_path(workflow).read_text(),
        jobs_yaml=workflow.directory / "jobs.yaml",
        # ${db_uri}: where the job publishes. On AWS s3://<database bucket>/<prefix> (the DB
        # file systems import it); locally the DB directory itself.
        placeholders={"scratch_mount": str(tmp_path / "scratch"), "db_mount": str(db), "weights_dir": "",
                      "db_uri": str(db)},
        log_dir=tmp_path / "logs",
    )
    return {"engine": engine, "src": src, "db": db}


def test_jobs_publish_to_the_db_uri_not_the_read_only_mount(workflow):
    """Both jobs get the database root from ${db_uri}: in the cloud the DB mount is
    read-only (FSx imports the database bucket), so nothing may write through it."""
    text = rendered_path(workflow).read_text()
    assert text.count('"db": "${db_uri}"') == 2 and "${db_mount}" not in text


def luxc(src: Path, version="v1", sha=None) -> dict:
    return {"name": "luxc", "version": version, "source": str(src / "luxc"),
            "files": {"luxc.fasta": sha or _sha(src / "luxc" / "luxc.fasta")},
            "role": "uniref90", "sequences": "luxc.fasta", "max_hits": 100, "mmseqs_index": False}


def pksi(src: Path) -> dict:
    return {"name": "pksi", "version": "v1", "source": f"file://{src / 'pksi'}", "checksums": "SHA256SUMS",
            "role": "mgnify", "sequences": "pksi.fasta", "max_hits": 501, "mmseqs_index": False}


def entered(execution) -> list[str]:
    return [e.state_name for e in execution.history() if e.type.endswith("StateEntered")]


@pytest.mark.slow
def test_refresh_publishes_every_database(env):
    execution = env["engine"].start_execution("refresh-ok", {"databases": [luxc(env["src"]), pksi(env["src"])]})
    assert execution.wait(120) == "SUCCEEDED", (execution.error, execution.cause)
    for name in ("luxc", "pksi"):
        assert (env["db"] / name / "CURRENT").read_text() == "v1\n"
        assert (env["db"] / name / "v1" / "manifest.json").is_file()
    assert "CleanupOnFailure" not in entered(execution)
    assert [j["job"]["status"] for j in execution.output["jobs"]] == ["SUCCEEDED", "SUCCEEDED"]
    from foldstack.steps.databases import msa_databases

    assert [d.name for d in msa_databases(env["db"])] == ["luxc", "pksi"]  # uniref90 role first


@pytest.mark.slow
def test_checksum_mismatch_fails_cleans_up_and_keeps_current(env):
    engine, src, db = env["engine"], env["src"], env["db"]
    assert engine.start_execution("refresh-v1", {"databases": [luxc(src)]}).wait(120) == "SUCCEEDED"
    # A job killed mid-download on an earlier attempt of this run left a partial dir behind.
    leftover = db / "luxc" / ".v2.partial-refresh-bad-deadbeef"
    leftover.mkdir()
    (leftover / "luxc.fasta").write_text(">partial\n")

    execution = engine.start_execution("refresh-bad", {"databases": [luxc(src, "v2", sha="0" * 64)]})
    assert execution.wait(120) == "FAILED"
    assert execution.error == "States.TaskFailed"
    states = entered(execution)
    assert "CleanupOnFailure" in states and "RefreshSucceeded" not in states
    assert not execution.runtime_errors
    assert (db / "luxc" / "CURRENT").read_text() == "v1\n"
    assert sorted(p.name for p in (db / "luxc").iterdir()) == ["CURRENT", "v1"]  # v2 never appeared
    cleanup = [j for j in execution.batch_jobs() if j["JobName"].endswith("-refresh-db-cleanup")]
    assert len(cleanup) == 1 and cleanup[0]["Status"] == "SUCCEEDED"


def test_request_without_databases_fails_fast(env):
    execution = env["engine"].start_execution("refresh-empty", {"databases": []})
    assert execution.wait(30) == "FAILED" and execution.error == "InvalidRefreshRequest"
    assert execution.batch_jobs() == []


@pytest.mark.skipif(__import__("shutil").which("mmseqs") is None, reason="Debian mmseqs2 not installed")
@pytest.mark.slow  # builds a real MMseqs2 index (~17 s, ~860 MB): `make test` only
def test_refresh_unpacks_a_tarball_and_publishes_the_mmseqs_index(env, tmp_path):
    """The workflow's job unpacks a .tar.gz, builds the MMseqs2 index into the version and
    publishes CURRENT after both; the index is listed in the manifest like any file."""
    import io
    import json
    import tarfile

    data = (env["src"] / "luxc" / "luxc.fasta").read_bytes()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("luxc/luxc.fasta")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    pub = tmp_path / "pub"
    pub.mkdir()
    (pub / "luxc.tar.gz").write_bytes(buf.getvalue())
    spec = {"name": "luxc", "version": "2024_01", "source": str(pub), "unpack": True,
            "files": {"luxc.tar.gz": hashlib.sha256(buf.getvalue()).hexdigest()},
            "role": "uniref90", "sequences": "luxc/luxc.fasta"}
    execution = env["engine"].start_execution("refresh-tar", {"databases": [spec]})
    assert execution.wait(300) == "SUCCEEDED", (execution.error, execution.cause)
    version = env["db"] / "luxc" / "2024_01"
    assert (env["db"] / "luxc" / "CURRENT").read_text() == "2024_01\n"
    manifest = json.loads((version / "manifest.json").read_text())
    index = manifest["indexes"]["mmseqs2"]["path"]
    assert (version / index / "BUILD.json").is_file() and f"{index}/BUILD.json" in manifest["files"]
    assert "luxc.tar.gz" not in manifest["files"] and (version / "luxc" / "luxc.fasta").read_bytes() == data
