"""`Client.rerun(manifest)` (a fresh run pinned to the database versions a run searched,
refused when one is gone) and `Run.download` of the run-level files, all or nothing.

Local runs use the fake steps (`fake_step.py`); the cloud ones the offline deployment
(conftest.py: moto, the local engine running the real rendered workflow)."""

from __future__ import annotations

import json
import shutil

import boto3
import pytest

from foldstack.core.errors import DatabaseVersionMissingError, InputValidationError
from tests.client.conftest import REGION, SEQ, executions, fake_local_client
from tests.conftest import files_under


def _install_version(home, name="fake_uniref", version="1"):
    path = home / "db" / name / version
    path.mkdir(parents=True, exist_ok=True)
    (path / "manifest.json").write_text(json.dumps({"name": name, "version": version}))
    return path


def _searched(manifest_dict: dict, versions: dict[str, str]) -> dict:
    """The manifest as if each target's msa step had searched `versions` (the fake steps
    record no databases)."""
    out = json.loads(json.dumps(manifest_dict))
    for t in out["targets"]:
        t["provenance"]["msa"]["databases"] = dict(versions)
    return out


def _done_run(client, tmp_path, name="x.fasta"):
    fasta = tmp_path / name
    fasta.write_text(f">a1\n{SEQ}\n>b2\n{SEQ[:25]}\n")
    run = client.submit(str(fasta), engine="alphafold2")
    assert run.wait(timeout=60) == "SUCCEEDED"
    return run


@pytest.mark.slow
def test_local_rerun_pins_the_searched_versions_and_refuses_when_one_is_gone(tmp_path):
    client = fake_local_client(tmp_path)
    home = tmp_path / "home"
    version_dir = _install_version(home)
    run = _done_run(client, tmp_path)
    manifest = _searched(run.manifest().to_dict(), {"fake_uniref": "1"})
    assert manifest["provenance"]["collected_by"]["git_commit"]  # Collect Outputs recorded the run's provenance
    del manifest["provenance"]  # as a manifest written before run provenance existed: from the targets
    path = tmp_path / "saved" / "manifest.json"
    path.parent.mkdir()
    path.write_text(json.dumps(manifest))

    again = client.rerun(path)
    assert again.request["db_versions"] == {"fake_uniref": "1"} and again.request["rerun_of"] == run.run_id
    assert {k: v for k, v in again.request.items() if k not in ("db_versions", "rerun_of")} == \
        {k: v for k, v in run.request.items() if k not in ("db_versions", "rerun_of")}  # same inputs and parameters
    assert again.run_id != run.run_id
    assert again.wait(timeout=60) == "SUCCEEDED"
    assert [r["id"] for r in again.metrics()] == ["a1", "b2"]

    # its own manifest (by run id): the request already pins them, so only rerun_of makes the
    # rerun a run of its own -- the run it reruns keeps its published results, untouched
    published = tmp_path / "out" / again.run_id
    before = {p.relative_to(published): p.read_bytes() for p in files_under(published)}
    third = client.rerun(again.run_id)
    assert third.run_id not in (run.run_id, again.run_id) and third.request["rerun_of"] == again.run_id
    assert third.wait(timeout=60) == "SUCCEEDED" and third.info.attempt == 1
    assert {p.relative_to(published): p.read_bytes() for p in files_under(published)} == before
    assert client.run(again.run_id).info.attempt == 1  # never a new attempt of the old run
    # the same run rerun again: the next rerun (rerun_of <run_id>.2), not the first one again
    fourth = client.rerun(again.run_id)
    assert fourth.request["rerun_of"] == f"{again.run_id}.2"
    assert fourth.run_id not in (run.run_id, again.run_id, third.run_id) and fourth.wait(timeout=60) == "SUCCEEDED"

    shutil.rmtree(version_dir)  # the pinned version is gone: refused, nothing submitted
    runs_before, inputs_before = len(client.runs()), files_under(home / "inputs")
    with pytest.raises(DatabaseVersionMissingError) as refused:
        client.rerun(path.parent)  # the results folder works too
    assert refused.value.code == "db_version_missing" and refused.value.details["missing"] == {"fake_uniref": "1"}
    assert "fake_uniref=1" in str(refused.value) and str(home / "db") in str(refused.value)
    assert len(client.runs()) == runs_before and files_under(home / "inputs") == inputs_before


@pytest.mark.slow
def test_two_reruns_racing_for_one_run_id_get_two_runs(tmp_path, monkeypatch):
    """The second rerun found the first rerun's run id free (it looked before the first one
    started): its start answers that the run existed, so it takes the next one, never
    sharing the first rerun's run."""
    client = fake_local_client(tmp_path)
    run = client.submit([("aa", SEQ)], engine="esmfold")
    assert run.wait(timeout=60) == "SUCCEEDED"
    first = client.rerun(run.run_id)
    assert first.request["rerun_of"] == run.run_id and not first.existed
    monkeypatch.setattr(client, "_run_exists", lambda run_id, output_uri: False)  # the check that raced
    second = client.rerun(run.run_id)
    assert not second.existed and second.request["rerun_of"] == f"{run.run_id}.2"
    assert second.run_id not in (run.run_id, first.run_id)
    assert first.wait(timeout=60) == second.wait(timeout=60) == "SUCCEEDED"


@pytest.mark.slow
def test_rerun_reads_run_provenance_first_and_refuses_mixed_versions(tmp_path):
    from foldstack.core.provenance import run_provenance

    client = fake_local_client(tmp_path)
    _install_version(tmp_path / "home", "fake_uniref", "2")
    run = _done_run(client, tmp_path)
    raw = _searched(run.manifest().to_dict(), {"fake_uniref": "1"})
    raw["targets"][1]["provenance"]["msa"]["databases"] = {"fake_uniref": "2"}
    raw["provenance"] = run_provenance(raw["targets"])  # what Collect Outputs would have recorded
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps(raw))
    with pytest.raises(InputValidationError) as err:
        client.rerun(mixed)
    assert err.value.code == "db_versions_mixed" and "fake_uniref: 1, 2" in str(err.value)

    raw["provenance"] = {**raw["provenance"], "databases": {"fake_uniref": "2"}}
    raw["provenance"].pop("databases_mixed")
    chosen = tmp_path / "chosen.json"
    chosen.write_text(json.dumps(raw))
    again = client.rerun(chosen)  # the run-level record wins over the targets'
    assert again.request["db_versions"] == {"fake_uniref": "2"} and again.wait(timeout=60) == "SUCCEEDED"

    with pytest.raises(InputValidationError) as nothing:
        client.rerun(tmp_path / "nowhere" / "manifest.json")
    assert nothing.value.code == "manifest_not_found"


@pytest.mark.slow
def test_cloud_rerun_checks_the_database_prefix_before_submitting(deployed, tmp_path):
    client = deployed.client()
    run = client.submit([("t1", SEQ)], engine="alphafold2")
    assert run.wait(timeout=60) == "SUCCEEDED"
    s3 = boto3.client("s3", region_name=REGION)
    raw = _searched(run.manifest().to_dict(), {"uniref90": "2024_01"})
    del raw["provenance"]
    s3.put_object(Bucket="fs-results", Key="saved/manifest.json", Body=json.dumps(raw).encode())
    before = len(executions(deployed.state_machine_arn))

    with pytest.raises(DatabaseVersionMissingError) as refused:
        client.rerun("s3://fs-results/saved/manifest.json")
    assert refused.value.details == {"missing": {"uniref90": "2024_01"}, "where": "s3://fs-db/db",
                                     "hint": refused.value.details["hint"]}
    assert len(executions(deployed.state_machine_arn)) == before  # nothing started

    s3.put_object(Bucket="fs-db", Key="db/uniref90/2024_01/manifest.json", Body=b"{}")
    again = client.rerun("s3://fs-results/saved")  # the run's prefix works too
    assert again.request["db_versions"] == {"uniref90": "2024_01"} and again.run_id != run.run_id
    assert again.wait(timeout=60) == "SUCCEEDED"

    # no databases recorded (fake steps): pins change nothing, rerun_of makes it a run of its own
    published = run._manifest_bytes()[0]
    same = client.rerun(run.run_id)
    assert same.run_id not in (run.run_id, again.run_id) and same.request["rerun_of"] == run.run_id
    assert same.wait(timeout=60) == "SUCCEEDED" and same.info.execution_name == same.run_id
    assert client.run(run.run_id).info.execution_name == run.run_id  # the old run: no new attempt
    assert [e["name"] for e in executions(deployed.state_machine_arn) if e["name"].startswith(run.run_id)] == \
        [run.run_id]
    assert run.manifest().run_id == run.run_id and run.download(tmp_path / "old").is_dir()  # still published
    assert run._manifest_bytes()[0] == published


# --------------------------------------------------------------------------- downloads


@pytest.mark.slow
def test_download_fetches_the_run_level_files_and_is_all_or_nothing(tmp_path):
    client = fake_local_client(tmp_path)
    run = _done_run(client, tmp_path)
    run_files = set(run.manifest().run_files)
    assert {"summary.tsv", "index.html"} <= run_files
    listed = {f.path: f.target for f in run.outputs()}
    # a target's own (its best model in structures/, its target.json) belong to it
    assert all(listed[rel] is None for rel in run_files
               if not rel.startswith("structures/") and not rel.endswith("/target.json"))
    assert listed["a1/target.json"] == "a1"

    dest = tmp_path / "dl"
    root = run.download(dest, targets=["a1"])
    assert (root / "summary.tsv").read_text().startswith("target\tstatus")
    assert (root / "index.html").is_file() and (root / "manifest.json").is_file()
    assert all((root / rel).is_file() for rel in run_files
               if rel.split("/")[0] not in ("structures", "b2") or "/a1." in rel)
    assert (root / "a1" / "ranked_0.pdb").is_file() and not (root / "b2").exists()
    before = {p.relative_to(root): p.read_bytes() for p in files_under(root)}

    original = run._backend.download

    def flaky(uri, path):
        if uri.endswith("/index.html"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"<html>half")  # as a broken transfer might leave it
            raise OSError("connection reset")
        original(uri, path)

    run._backend.download = flaky
    with pytest.raises(OSError, match="connection reset"):
        run.download(dest)  # every target now: fails part-way
    assert {p.relative_to(root): p.read_bytes() for p in files_under(root)} == before  # the earlier one, intact
    assert sorted(p.name for p in dest.iterdir()) == [run.run_id]  # no staging left behind
    with pytest.raises(OSError):
        run.download(tmp_path / "fresh")
    assert not (tmp_path / "fresh" / run.run_id).exists()

    run._backend.download = original
    full = run.download(dest)
    assert (full / "b2" / "ranked_0.pdb").is_file() and (full / "summary.tsv").is_file()
