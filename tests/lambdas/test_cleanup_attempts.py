"""Cleanup on a failure path keeps finished targets for the run's next attempt, and takes
the event the EventBridge rule sends for an ABORTED or TIMED_OUT execution (its input
transformer: execution name, status, stopDate): the run id is the name without its
attempt suffix, and scratch written after the stop (a retry that started at once) stays.
Locally and against moto's S3."""

from __future__ import annotations

import hashlib
import json
import os
import time

import boto3
import pytest
from moto import mock_aws
from tests.conftest import files_under
from tests.lambdas.test_handlers import load_handler

from foldstack import storage

RUN = "alpha-2-0123456789abcdef"
cleanup = load_handler("cleanup")


def step_outputs(root: str, step: str, target: str, files: dict[str, bytes], *, sizes: bool = True,
                 **fields: object) -> None:
    """A finished step folder, as `run_step` leaves it (done record written last)."""
    base = f"{root}/{RUN}/{step}/{target}"
    for rel, data in files.items():
        storage.write_bytes(f"{base}/{rel}", data)
    done = {"step": step, "run_id": RUN, "target": target,
            "outputs": {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()},
            **({"output_sizes": {rel: len(data) for rel, data in files.items()}} if sizes else {}), **fields}
    storage.write_bytes(f"{base}/{step}.done.json", json.dumps(done).encode())


def leave_a_failed_attempt(root: str) -> None:
    """Scratch of an attempt that failed: two targets' MSAs and one prediction finished;
    staged inputs, an attempt dir, a prediction without its done record, cache records,
    a done record whose output is gone, one with a wrong size, one of another run."""
    step_outputs(root, "msa", "a", {"msa.a3m": b">a\nMKT\n", "features.npz": b"npz"})
    step_outputs(root, "msa", "b", {"msa.a3m": b">b\nMKV\n", "features.npz": b"npz"})
    step_outputs(root, "predict", "b", {"ranked_0.pdb": b"ATOM\n", "metrics.json": b"{}"})
    storage.write_bytes(f"{root}/{RUN}/input/targets/a.fasta", b">a\nMKT\n")
    storage.write_bytes(f"{root}/{RUN}/input/request.json", b"{}")
    storage.write_bytes(f"{root}/{RUN}/predict/.a.attempt-123-abc/ranked_0.pdb", b"half")
    storage.write_bytes(f"{root}/{RUN}/predict/a/ranked_0.pdb", b"no done record")
    storage.write_bytes(f"{root}/{RUN}/cache/a.json", b"{}")
    step_outputs(root, "msa", "c", {"msa.a3m": b"x"})
    storage.delete(f"{root}/{RUN}/msa/c/msa.a3m")
    step_outputs(root, "msa", "d", {"msa.a3m": b"xyz"})
    storage.write_bytes(f"{root}/{RUN}/msa/d/msa.a3m", b"xy")  # truncated: size differs
    step_outputs(root, "msa", "e", {"msa.a3m": b"x"}, run_id="another-run")


KEPT = ["msa/a/features.npz", "msa/a/msa.a3m", "msa/a/msa.done.json", "msa/b/features.npz", "msa/b/msa.a3m",
        "msa/b/msa.done.json", "predict/b/metrics.json", "predict/b/predict.done.json", "predict/b/ranked_0.pdb"]


def local_files(local_env) -> list[str]:
    root = local_env["scratch"] / RUN
    return [str(p.relative_to(root)) for p in files_under(root)]


def test_a_failure_keeps_only_finished_targets_and_a_success_removes_all(local_env):
    root = str(local_env["scratch"])
    leave_a_failed_attempt(root)
    (local_env["scratch"] / "other-run").mkdir()
    result = cleanup({"run_id": RUN, "request": None, "failed": True})
    assert result["kept_targets"] == 3 and result["scratch_deleted"] == 10
    assert local_files(local_env) == KEPT
    assert sorted(p.name for p in (local_env["scratch"] / RUN).iterdir()) == ["msa", "predict"]  # empty dirs go
    assert cleanup({"run_id": RUN, "request": None, "failed": True})["scratch_deleted"] == 0  # twice: no-op

    result = cleanup({"run_id": RUN, "request": None, "failed": False})
    assert result == {"run_id": RUN, "scratch_deleted": 9, "partial_outputs_deleted": 0, "kept_targets": 0}
    assert not (local_env["scratch"] / RUN).exists() and (local_env["scratch"] / "other-run").exists()


def test_a_kept_folder_that_is_a_symlink_is_removed_as_a_link(local_env, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    step_outputs(str(local_env["scratch"]), "msa", "a", {"msa.a3m": b"x"})
    (local_env["scratch"] / RUN / "predict").mkdir()
    os.symlink(outside, local_env["scratch"] / RUN / "predict" / "b")
    cleanup({"run_id": RUN, "failed": True})
    assert local_files(local_env) == ["msa/a/msa.a3m", "msa/a/msa.done.json"]
    assert (outside / "precious").read_text() == "keep me"


def eventbridge_event(name: str, stopped_ms: int, status: str = "ABORTED") -> dict:
    """What the rule's input transformer (terraform/modules/workflow/cancel_cleanup.tf)
    makes of a "Step Functions Execution Status Change" event."""
    return {"execution_name": name, "status": status, "stopped_at": stopped_ms, "failed": True}


def test_the_eventbridge_shape_cleans_the_run_of_the_stopped_attempt(local_env):
    root = str(local_env["scratch"])
    leave_a_failed_attempt(root)
    partial = local_env["outputs"] / RUN / "a"
    partial.mkdir(parents=True)
    (partial / "ranked_0.pdb").write_text("a later attempt may be publishing this")
    stopped = time.time() + 1
    later = local_env["scratch"] / RUN / "input" / "targets" / "b.fasta"  # a retry staged it after the stop
    later.write_text(">b\nMKV\n")
    os.utime(later, (stopped + 5, stopped + 5))

    result = cleanup(eventbridge_event(f"{RUN}-a2", int(stopped * 1000), "TIMED_OUT"))
    assert result["run_id"] == RUN and result["kept_targets"] == 3
    assert local_files(local_env) == sorted([*KEPT, "input/targets/b.fasta"])
    assert (partial / "ranked_0.pdb").exists()  # published results are not touched on this path


@pytest.mark.parametrize("name", ["../x", "", "a/b", "x-a2/.."])
def test_a_malformed_execution_name_cleans_nothing(local_env, name):
    (local_env["scratch"] / "x").mkdir()
    result = cleanup({"execution_name": name, "status": "ABORTED", "failed": True})
    assert result["run_id"] is None and result["scratch_deleted"] == 0
    assert (local_env["scratch"] / "x").exists()


@pytest.fixture
def s3_scratch(monkeypatch, local_env):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(k, "testing")
    with mock_aws():
        storage.reset_clients()
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="scratch")
        monkeypatch.setenv("FOLDSTACK_SCRATCH_ROOT", "s3://scratch")
        yield s3
        storage.reset_clients()


def s3_keys(s3) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="scratch")
    return sorted(o["Key"] for p in pages for o in p.get("Contents", []))


def test_on_s3_the_aborted_path_keeps_finished_targets_and_their_directory_markers(s3_scratch):
    s3 = s3_scratch
    for marker in (f"{RUN}/", f"{RUN}/msa/", f"{RUN}/predict/", f"{RUN}/input/"):  # Stage Inputs' (FSx owners)
        s3.put_object(Bucket="scratch", Key=marker, Body=b"")
    leave_a_failed_attempt("s3://scratch")
    s3.put_object(Bucket="scratch", Key="other-run/x", Body=b"x")
    stopped = time.time() + 60  # every object above was written before the execution stopped
    result = cleanup(eventbridge_event(f"{RUN}-a3", int(stopped * 1000)))
    assert result["run_id"] == RUN and result["kept_targets"] == 3
    assert s3_keys(s3) == sorted(["other-run/x", f"{RUN}/", f"{RUN}/msa/", f"{RUN}/predict/",
                                  *(f"{RUN}/{k}" for k in KEPT)])

    s3.put_object(Bucket="scratch", Key=f"{RUN}/input/request.json", Body=b"{}")  # a newer attempt's
    cleanup(eventbridge_event(RUN, int((time.time() - 3600) * 1000)))  # an old event, delivered late
    assert f"{RUN}/input/request.json" in s3_keys(s3)

    cleanup({"run_id": RUN, "failed": False})
    assert s3_keys(s3) == ["other-run/x"]
