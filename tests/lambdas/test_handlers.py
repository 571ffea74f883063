"""The Lambda handlers of a run's life (validate, stage, publish batch, collect, cleanup)
against local paths and against moto's S3."""

from __future__ import annotations

import hashlib
import json

import pytest
from tests.conftest import files_under, load_handler
from tests.fake_aws import fail_writes_to

from foldstack import storage
from foldstack.core.errors import AccessDeniedError, InputValidationError, OutputsNotReadyError, StagingError
from foldstack.core.fasta import parse_fasta
from foldstack.core.request import RunRequest
from foldstack.core.runid import make_run_id

SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"


validate, stage, publish, collect, cleanup = (
    load_handler(n) for n in ("validate_input", "stage_inputs", "publish_batch", "collect_outputs", "cleanup")
)


def one_batch(targets, batch="b00000"):
    """The targets as one Plan Batches batch (all of one size class here)."""
    return {"batch": batch, "size_class": targets[0]["size_class"], "target_ids": ",".join(t["id"] for t in targets),
            "targets": [{k: t[k] for k in ("id", "sha256", "length", "chains")} for t in targets]}


def publish_batch(event, targets, *, predict=None, msa=()):
    """Publish Batch as the workflow calls it at the end of the batch (Predict succeeded)."""
    return publish({"run_id": event["run_id"], "request": event["request"], "batch": one_batch(targets),
                    "msa": list(msa), "predict": predict or {"failed": False}})


def event_for(fasta_uri, out_uri, data, **options):
    request = {"inputs": [fasta_uri], "output_uri": out_uri, "engine": "esmfold", **options}
    run_id = make_run_id(RunRequest.model_validate(request), parse_fasta(data))
    return {"run_id": run_id, "request": request}


def fake_step_outputs(scratch_root: str, run_id: str, target: str, step: str, files: dict[str, bytes]):
    """What a step leaves in scratch: its files and a done-file with their checksums."""
    base = f"{scratch_root.rstrip('/')}/{run_id}/{step}/{target}"
    outputs = {}
    for rel, data in files.items():
        storage.write_bytes(f"{base}/{rel}", data)
        outputs[rel] = hashlib.sha256(data).hexdigest()
    storage.write_bytes(f"{base}/{step}.done.json", json.dumps({"step": step, "outputs": outputs}).encode())


def test_happy_path_local(local_env):
    data = f">t1 first\n{SEQ}\n>t2\n{SEQ[::-1]}\n"
    fasta = local_env["inputs"] / "x.fasta"
    fasta.write_text(data)
    event = event_for(str(fasta), str(local_env["outputs"]), data)
    run_id = event["run_id"]

    validated = validate(event)
    assert [t["id"] for t in validated["targets"]] == ["t1", "t2"]
    assert validated["targets"][0]["size_class"] == "small"
    assert files_under(local_env["scratch"]) == []  # validation writes nothing

    staged = stage({**event, "targets": validated["targets"]})
    run_scratch = local_env["scratch"] / run_id
    assert staged["staged"] == 2
    assert (run_scratch / "input/targets/t1.fasta").read_text() == f">t1 first\n{SEQ}\n"
    assert (run_scratch / "input/sources/000-x.fasta").read_text() == data
    assert stage({**event, "targets": validated["targets"]}) == staged  # re-run is harmless

    with pytest.raises(OutputsNotReadyError):  # Predict succeeded but its outputs are not visible yet
        publish_batch(event, validated["targets"])
    assert files_under(local_env["outputs"]) == []  # nothing half-published

    for t in ("t1", "t2"):
        fake_step_outputs(str(local_env["scratch"]), run_id, t, "predict",
                          {"ranked_0.pdb": b"ATOM\n", "metrics.json": b'{"mean_plddt": 50}', "plots/plddt.png": b"png"})
    assert publish_batch(event, validated["targets"])["published"] == 2
    assert (local_env["outputs"] / run_id / "t1" / "target.json").is_file()  # published as its batch finished
    assert not (local_env["outputs"] / run_id / "manifest.json").exists()  # the run: not yet
    result = collect({**event, "targets": validated["targets"]})
    out = local_env["outputs"] / run_id
    assert result["output"] == str(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [t["id"] for t in manifest["targets"]] == ["t1", "t2"]
    assert manifest["targets"][0]["files"]["plots/plddt.png"]["sha256"] == hashlib.sha256(b"png").hexdigest()
    assert (out / "t2" / "ranked_0.pdb").read_bytes() == b"ATOM\n"
    assert [p.name for p in local_env["outputs"].iterdir()] == [run_id]  # no partial dirs left

    assert collect({**event, "targets": validated["targets"]})["output"] == str(out)  # idempotent
    assert cleanup({"run_id": run_id, "request": event["request"], "failed": False})["scratch_deleted"] > 0
    assert not run_scratch.exists()
    assert (out / "manifest.json").exists()  # cleanup never touches complete results


def test_invalid_fasta_names_line_and_writes_nothing(local_env):
    data = f">ok\n{SEQ}\n>bad\nMKT-AYI\n"
    fasta = local_env["inputs"] / "x.fasta"
    fasta.write_text(data)
    event = {"run_id": "x-1-0000000000000000",
             "request": {"inputs": [str(fasta)], "output_uri": str(local_env["outputs"]), "engine": "esmfold"}}
    with pytest.raises(InputValidationError) as info:
        validate(event)
    assert info.value.code == "gap_character" and info.value.details["line"] == 3
    assert "record 'bad'" in str(info.value)
    assert files_under(local_env["scratch"]) == [] and files_under(local_env["outputs"]) == []


def test_prefixes_enforced(local_env, tmp_path):
    outside = tmp_path / "elsewhere.fasta"
    outside.write_text(f">a\n{SEQ}\n")
    with pytest.raises(AccessDeniedError):
        validate({"run_id": "a-1-x", "request": {"inputs": [str(outside)], "output_uri": str(local_env["outputs"])}})
    inside = local_env["inputs"] / "a.fasta"
    inside.write_text(f">a\n{SEQ}\n")
    with pytest.raises(AccessDeniedError):
        validate({"run_id": "a-1-x", "request": {"inputs": [str(inside)], "output_uri": str(tmp_path / "o")}})


def test_run_id_must_match_request(local_env):
    fasta = local_env["inputs"] / "a.fasta"
    fasta.write_text(f">a\n{SEQ}\n")
    with pytest.raises(InputValidationError) as info:
        request = {"inputs": [str(fasta)], "output_uri": str(local_env["outputs"])}
        validate({"run_id": "someone-elses-run", "request": request})
    assert info.value.code == "run_id_mismatch"


def test_stage_detects_changed_inputs(local_env):
    data = f">a\n{SEQ}\n"
    fasta = local_env["inputs"] / "a.fasta"
    fasta.write_text(data)
    event = event_for(str(fasta), str(local_env["outputs"]), data)
    targets = validate(event)["targets"]
    fasta.write_text(f">a\n{SEQ[::-1]}\n")
    with pytest.raises((StagingError, InputValidationError)):
        stage({**event, "targets": targets})
    assert not (local_env["scratch"] / event["run_id"]).exists()


def test_failed_cleanup_removes_partial_outputs_but_not_other_runs(local_env):
    data = f">a\n{SEQ}\n"
    fasta = local_env["inputs"] / "a.fasta"
    fasta.write_text(data)
    event = event_for(str(fasta), str(local_env["outputs"]), data)
    run_id = event["run_id"]
    (local_env["outputs"] / run_id / "a").mkdir(parents=True)
    (local_env["outputs"] / run_id / "a" / "ranked_0.pdb").write_text("partial")
    (local_env["outputs"] / f".{run_id}.partial-abc").mkdir()
    other = local_env["outputs"] / "other-run" / "x.pdb"
    other.parent.mkdir()
    other.write_text("keep")
    (local_env["scratch"] / run_id).mkdir()
    (local_env["scratch"] / "other-run").mkdir()
    result = cleanup({**event, "failed": True})
    assert result["partial_outputs_deleted"] >= 1
    assert sorted(p.name for p in local_env["outputs"].iterdir()) == ["other-run"]
    assert sorted(p.name for p in local_env["scratch"].iterdir()) == ["other-run"]


def test_cleanup_with_malformed_run_id_touches_nothing(local_env):
    (local_env["scratch"] / "keep").mkdir()
    for bad in ("..", "../x", "", None, "a/b"):
        assert cleanup({"run_id": bad, "failed": True})["scratch_deleted"] == 0
    assert (local_env["scratch"] / "keep").exists()


def test_missing_configuration_is_a_clear_error(monkeypatch):
    from foldstack.core.errors import ConfigurationError

    monkeypatch.delenv("FOLDSTACK_SCRATCH_ROOT", raising=False)
    with pytest.raises(ConfigurationError, match="FOLDSTACK_SCRATCH_ROOT"):
        validate({"run_id": "x", "request": {}})


def keys(s3, bucket):
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_happy_path_s3(s3_env):
    s3 = s3_env
    data = f">t1\n{SEQ}\n"
    s3.put_object(Bucket="lake", Key="inputs/a.fasta", Body=data.encode())
    event = event_for("s3://lake/inputs/a.fasta", "s3://lake/results", data)
    run_id = event["run_id"]
    targets = validate(event)["targets"]
    assert keys(s3, "scratch") == []
    stage({**event, "targets": targets})
    assert f"{run_id}/input/targets/t1.fasta" in keys(s3, "scratch")
    assert f"{run_id}/input/sources/000-a.fasta" in keys(s3, "scratch")
    fake_step_outputs("s3://scratch", run_id, "t1", "predict", {"ranked_0.pdb": b"ATOM\n", "metrics.json": b"{}"})
    publish_batch(event, targets)
    collect({**event, "targets": targets})
    published = keys(s3, "lake")
    assert f"results/{run_id}/manifest.json" in published and f"results/{run_id}/t1/ranked_0.pdb" in published
    cleanup({"run_id": run_id, "request": event["request"], "failed": False})
    assert keys(s3, "scratch") == []


def test_s3_collect_integrity_failure_publishes_nothing(s3_env):
    s3 = s3_env
    data = f">t1\n{SEQ}\n"
    s3.put_object(Bucket="lake", Key="inputs/a.fasta", Body=data.encode())
    event = event_for("s3://lake/inputs/a.fasta", "s3://lake/results", data)
    targets = validate(event)["targets"]
    outputs = {"ranked_0.pdb": b"ATOM\n", "metrics.json": b"{}"}
    fake_step_outputs("s3://scratch", event["run_id"], "t1", "predict", outputs)
    s3.put_object(Bucket="scratch", Key=f"{event['run_id']}/predict/t1/ranked_0.pdb", Body=b"tampered")
    from foldstack.core.errors import OutputIntegrityError

    with pytest.raises(OutputIntegrityError):
        publish_batch(event, targets)
    assert [k for k in keys(s3, "lake") if k.startswith("results/")] == []


def test_s3_staging_sets_fsx_posix_ownership_for_the_job_user(s3_env, monkeypatch):
    """FSx imports x-amz-meta-file-* as POSIX metadata: jobs (uid 1000) must own their dirs."""
    s3 = s3_env
    monkeypatch.setenv("FOLDSTACK_SCRATCH_OWNER", "1000:1000")
    data = f">t1\n{SEQ}\n"
    s3.put_object(Bucket="lake", Key="inputs/a.fasta", Body=data.encode())
    event = event_for("s3://lake/inputs/a.fasta", "s3://lake/results", data)
    run_id = event["run_id"]
    stage({**event, "targets": validate(event)["targets"]})
    for key in (f"{run_id}/", f"{run_id}/msa/", f"{run_id}/predict/", f"{run_id}/input/targets/"):
        meta = s3.head_object(Bucket="scratch", Key=key)["Metadata"]
        assert meta == {"file-owner": "1000", "file-group": "1000", "file-permissions": "0040775"}, key
    for key in (f"{run_id}/input/targets/t1.fasta", f"{run_id}/input/sources/000-a.fasta"):
        assert s3.head_object(Bucket="scratch", Key=key)["Metadata"]["file-permissions"] == "0100664"
    cleanup({"run_id": run_id, "failed": False})
    assert keys(s3, "scratch") == []  # directory markers go too


def test_scratch_owner_must_not_be_root(local_env, monkeypatch):
    from foldstack.core.errors import ConfigurationError

    monkeypatch.setenv("FOLDSTACK_SCRATCH_OWNER", "0:0")
    with pytest.raises(ConfigurationError, match="non-root"):
        validate({"run_id": "x", "request": {}})


def test_storage_failure_while_publishing_is_typed_and_rolled_back(local_env, monkeypatch):
    """A storage error midway through Publish Batch is a PublishError (retried by the ASL)
    and leaves nothing of the target it was publishing under the output prefix."""
    from foldstack.core.errors import PublishError

    data = f">t1\n{SEQ}\n>t2\n{SEQ[::-1]}\n"
    fasta = local_env["inputs"] / "x.fasta"
    fasta.write_text(data)
    event = event_for(str(fasta), str(local_env["outputs"]), data)
    targets = validate(event)["targets"]
    for t in ("t1", "t2"):
        fake_step_outputs(str(local_env["scratch"]), event["run_id"], t, "predict",
                          {"ranked_0.pdb": b"ATOM\n", "metrics.json": b"{}"})
    real_write, calls = storage.write_bytes, []

    def flaky_write(uri, data, **kwargs):
        calls.append(uri)
        if len(calls) == 3:
            raise ConnectionResetError("connection reset by peer")
        return real_write(uri, data, **kwargs)

    monkeypatch.setattr(storage, "write_bytes", flaky_write)
    with pytest.raises(PublishError, match="ConnectionResetError") as info:
        publish_batch(event, targets)
    assert info.value.code == "publish_failed" and str(info.value).startswith("[publish_failed]")
    assert files_under(local_env["outputs"]) == []
    monkeypatch.setattr(storage, "write_bytes", real_write)
    assert publish_batch(event, targets)["published"] == 2  # the retry publishes everything
    assert collect({**event, "targets": targets})["targets"] == 2


def test_a_failed_runs_cleanup_keeps_every_published_target(local_env):
    """t1 folded and is published by its batch; t2 failed (its failure record). On the
    failure path Cleanup removes an unfinished target publish (no target.json) and staging
    leftovers, never a published target; the batch summary names both outcomes."""
    data = f">t1\n{SEQ}\n>t2\n{SEQ[::-1]}\n"
    fasta = local_env["inputs"] / "x.fasta"
    fasta.write_text(data)
    event = event_for(str(fasta), str(local_env["outputs"]), data)
    run_id, targets = event["run_id"], validate(event)["targets"]
    fake_step_outputs(str(local_env["scratch"]), run_id, "t1", "predict",
                      {"ranked_0.pdb": b"ATOM\n", "ranked_0.cif": b"data_t1\n", "metrics.json": b"{}"})
    failed = local_env["scratch"] / run_id / "predict" / "t2" / "predict.failed.json"
    failed.parent.mkdir(parents=True)
    failed.write_text(json.dumps({"target": "t2", "code": "bad_input", "message": "BadInputError: no",
                                  "job_id": "j-2", "log": "/logs/j-2.log"}))
    assert publish_batch(event, targets) == {"published": 1, "failed": 1, "summary": str(
        local_env["scratch"] / run_id / "collect" / "b00000.json")}
    root = local_env["outputs"] / run_id
    (root / "t3").mkdir()  # a publish that died midway (no target.json), and its staging
    (root / "t3" / "ranked_0.pdb").write_text("half")
    (root / ".t4.partial-abc").mkdir()
    (root / "structures" / "t3.cif").write_text("orphan")
    kept = sorted(str(p.relative_to(root)) for p in files_under(root / "t1")) + ["structures/t1.cif"]
    result = cleanup({**event, "failed": True})
    assert result["partial_outputs_deleted"] >= 3
    assert sorted(p.name for p in root.iterdir()) == ["structures", "t1"]
    assert sorted(str(p.relative_to(root)) for p in files_under(root)) == sorted(kept)
    assert "target.json" in {p.name for p in (root / "t1").iterdir()}


def test_a_failing_collect_is_retried_and_never_deletes_results(s3_env, monkeypatch):
    """Collect Outputs writes only run-level files: a storage failure there is a typed
    PublishError (retried by the workflow); the published targets stay through it and
    through the failure-path cleanup after its retries, and the run's next attempt reuses
    them (Publish Batch finds them published) and writes the manifest."""
    from foldstack.core.errors import PublishError

    s3 = s3_env
    data = f">t1\n{SEQ}\n>t2\n{SEQ[::-1]}\n"
    s3.put_object(Bucket="lake", Key="inputs/a.fasta", Body=data.encode())
    event = event_for("s3://lake/inputs/a.fasta", "s3://lake/results", data)
    targets = validate(event)["targets"]
    for t in ("t1", "t2"):
        fake_step_outputs("s3://scratch", event["run_id"], t, "predict",
                          {"ranked_0.pdb": b"ATOM\n", "metrics.json": b"{}"})
    publish_batch(event, targets)
    published = [k for k in keys(s3, "lake") if k.startswith("results/")]
    assert f"results/{event['run_id']}/t1/target.json" in published
    real_write = storage.write_bytes
    fail_writes_to(monkeypatch, "summary.tsv", ConnectionResetError("connection reset by peer"))
    with pytest.raises(PublishError):
        collect({**event, "targets": targets})
    monkeypatch.setattr(storage, "write_bytes", real_write)
    assert set(published) <= set(keys(s3, "lake"))
    cleanup({"run_id": event["run_id"], "request": event["request"], "failed": True})
    assert set(published) <= set(keys(s3, "lake"))  # the failure path kept every published target
    assert publish_batch(event, targets)["published"] == 2  # the next attempt: reused, not republished
    assert collect({**event, "targets": targets})["outcome"] == "succeeded"
    assert f"results/{event['run_id']}/manifest.json" in keys(s3, "lake")
