"""The four Lambda handlers against local paths and against moto's S3."""

from __future__ import annotations

import hashlib
import importlib.util
import json

import boto3
import pytest
from moto import mock_aws
from tests.conftest import REPO, files_under

from foldstack import storage
from foldstack.core.errors import AccessDeniedError, InputValidationError, OutputsNotReadyError, StagingError
from foldstack.core.fasta import parse_fasta
from foldstack.core.request import RunRequest
from foldstack.core.runid import make_run_id

SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"


def load_handler(name):
    spec = importlib.util.spec_from_file_location(f"handler_{name}", REPO / "lambdas" / name / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler


validate, stage, collect, cleanup = (
    load_handler(n) for n in ("validate_input", "stage_inputs", "collect_outputs", "cleanup")
)


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

    with pytest.raises(OutputsNotReadyError):
        collect({**event, "targets": validated["targets"]})
    assert list(local_env["outputs"].iterdir()) == []  # nothing half-published

    for t in ("t1", "t2"):
        fake_step_outputs(str(local_env["scratch"]), run_id, t, "predict",
                          {"ranked_0.pdb": b"ATOM\n", "metrics.json": b'{"mean_plddt": 50}', "plots/plddt.png": b"png"})
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


@pytest.fixture
def s3_env(monkeypatch, size_classes):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(k, "testing")
    with mock_aws():
        storage.reset_clients()
        s3 = boto3.client("s3")
        for b in ("lake", "scratch"):
            s3.create_bucket(Bucket=b)
        monkeypatch.setenv("FOLDSTACK_SCRATCH_ROOT", "s3://scratch")
        monkeypatch.setenv("FOLDSTACK_ALLOWED_INPUT_PREFIXES", "s3://lake/inputs")
        monkeypatch.setenv("FOLDSTACK_ALLOWED_OUTPUT_PREFIXES", "s3://lake/results")
        monkeypatch.setenv("FOLDSTACK_SIZE_CLASSES", json.dumps({k: v.model_dump() for k, v in size_classes.items()}))
        yield s3
        storage.reset_clients()


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
        collect({**event, "targets": targets})
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
    """A storage error midway through Collect is a PublishError (retried by the ASL) and
    leaves nothing under the output prefix."""
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
        collect({**event, "targets": targets})
    assert info.value.code == "publish_failed" and str(info.value).startswith("[publish_failed]")
    assert files_under(local_env["outputs"]) == []
    monkeypatch.setattr(storage, "write_bytes", real_write)
    assert collect({**event, "targets": targets})["targets"] == 2  # the retry publishes everything
