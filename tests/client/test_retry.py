"""Retry, rerun and cancel in the cloud, against the offline deployment (conftest.py: moto's
Step Functions executions run by the local engine, the real Lambda handlers, Batch jobs
as `fake_step.py`, which counts what it computes and skips targets whose done record is
valid, as the real steps do).

A retry starts `<run_id>-a2` with the same input; Cleanup on the failed attempt kept the
finished targets, so only the failed one is computed again; every read of the run follows
its latest attempt. A rerun discards the run's scratch and published results first and
computes everything. After a cancel, the Cleanup Lambda gets the event the EventBridge
rule of terraform/modules/workflow/cancel_cleanup.tf makes from the real status-change
event, and cleans the scratch."""

from __future__ import annotations

import json
import re
from datetime import UTC

import boto3
import pytest

from foldstack.client import RunStateError
from tests.client.conftest import REGION, SEQ, executions, keys
from tests.conftest import REPO, files_under
from tests.lambdas.test_handlers import load_handler

TARGETS = [("aa", SEQ[:20]), ("zz", SEQ)]  # one Predict batch, aa (shorter) first


@pytest.fixture
def counters(tmp_path, monkeypatch):
    path = tmp_path / "counters"
    path.mkdir()
    monkeypatch.setenv("FOLDSTACK_TEST_COUNTER_DIR", str(path))
    return path


def starts(counters) -> dict[str, int]:
    return {p.name: p.read_text().count("start") for p in sorted(counters.iterdir())}


@pytest.mark.slow
def test_retry_starts_attempt_2_which_recomputes_only_the_failed_target(deployed, counters, monkeypatch):
    monkeypatch.setenv("FOLDSTACK_TEST_FAIL", "predict:zz")
    client = deployed.client()
    run = client.submit(TARGETS, engine="alphafold2")
    assert run.wait(timeout=60) == "FAILED"
    assert starts(counters) == {"msa-aa": 1, "msa-zz": 1, "predict-aa": 1, "predict-zz": 1}
    scratch = deployed.scratch / run.run_id
    assert {"/".join(p.relative_to(scratch).parts[:2]) for p in files_under(scratch)} == {
        "msa/aa", "msa/zz", "predict/aa"}  # what Cleanup kept for the next attempt

    monkeypatch.delenv("FOLDSTACK_TEST_FAIL")
    assert run.retry() is run and run.existed is False
    assert sorted(e["name"] for e in executions(deployed.state_machine_arn)) == [run.run_id, f"{run.run_id}-a2"]
    assert run.wait(timeout=60) == "SUCCEEDED"
    assert starts(counters) == {"msa-aa": 1, "msa-zz": 1, "predict-aa": 1, "predict-zz": 2}
    assert (run.info.attempt, run.info.execution_name) == (2, f"{run.run_id}-a2")
    assert [r["id"] for r in run.metrics()] == ["aa", "zz"]

    # any handle follows the latest attempt: status, its history's steps, the listing
    doc = deployed.client().run(run.run_id).to_dict(steps=True)
    assert (doc["status"], doc["attempt"], doc["execution_name"]) == ("SUCCEEDED", 2, f"{run.run_id}-a2")
    assert {(s["step"], s["target"]) for s in doc["steps"] if s["status"] == "SUCCEEDED" and s["target"]} >= {
        ("msa", "aa"), ("msa", "zz")}  # (attempt 2's history: its jobs ran, and found the MSAs done)
    assert all(s["status"] != "FAILED" for s in doc["steps"] if s["step"] == "predict")
    assert [(r.run_id, r.info.attempt) for r in client.runs()] == [(run.run_id, 2)]
    assert client.runs(status="FAILED") == []  # attempt 1 failed, but the run did not

    # an ordinary resubmit stays idempotent; a succeeded run has nothing to retry
    same = client.submit(TARGETS, engine="alphafold2")
    assert same.existed is True and same.status == "SUCCEEDED"
    assert len(executions(deployed.state_machine_arn)) == 2
    with pytest.raises(RunStateError) as err:
        run.retry()
    assert err.value.code == "nothing_to_retry"


@pytest.mark.slow
def test_retry_of_a_partial_run_recomputes_only_its_failed_target(deployed, counters, monkeypatch):
    """A run that SUCCEEDED partial (zz failed within its failure budget) is retried in the
    cloud as `<run_id>-a2`: CleanupAfterPartial kept the finished targets, so only zz is
    computed again, and the retry's manifest has both."""
    monkeypatch.setenv("FOLDSTACK_TEST_FAIL", "predict:zz")
    client = deployed.client()
    run = client.submit(TARGETS, engine="alphafold2", max_failed_fraction=0.5)
    assert run.wait(timeout=60) == "SUCCEEDED" and run.outcome() == "partial"
    assert [f.target for f in run.failures()] == ["zz"]
    assert starts(counters) == {"msa-aa": 1, "msa-zz": 1, "predict-aa": 1, "predict-zz": 1}

    monkeypatch.delenv("FOLDSTACK_TEST_FAIL")
    assert run.retry() is run and run.existed is False
    assert sorted(e["name"] for e in executions(deployed.state_machine_arn)) == [run.run_id, f"{run.run_id}-a2"]
    assert run.wait(timeout=60) == "SUCCEEDED"
    assert starts(counters) == {"msa-aa": 1, "msa-zz": 1, "predict-aa": 1, "predict-zz": 2}  # only zz again
    assert run.outcome() == "succeeded" and run.failures() == []
    assert [r["id"] for r in run.metrics()] == ["aa", "zz"]


@pytest.mark.slow
def test_rerun_recomputes_every_target_and_replaces_the_results(deployed, counters):
    client = deployed.client()
    run = client.submit(TARGETS, engine="esmfold")
    assert run.wait(timeout=60) == "SUCCEEDED"
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket="fs-scratch", Key=f"{run.run_id}/predict/zz/kept.txt", Body=b"an earlier attempt's")
    s3.put_object(Bucket="fs-results", Key=f"runs/{run.run_id}/stale.txt", Body=b"not of this publish")

    again = client.submit(TARGETS, engine="esmfold", rerun=True)
    assert again.run_id == run.run_id and again.existed is False
    assert again.wait(timeout=60) == "SUCCEEDED"
    assert starts(counters) == {"predict-aa": 2, "predict-zz": 2}
    assert again.info.execution_name == f"{run.run_id}-a2"
    assert keys("fs-scratch", run.run_id) == []  # the run's scratch was discarded first
    published = keys("fs-results", f"runs/{run.run_id}/")
    assert f"runs/{run.run_id}/manifest.json" in published and f"runs/{run.run_id}/stale.txt" not in published
    assert [r["id"] for r in again.metrics()] == ["aa", "zz"]


@pytest.mark.slow
def test_retry_and_rerun_refuse_a_running_run(deployed):
    client = deployed.client()
    run = client.submit([("slow1", SEQ)], engine="esmfold")
    for start in (run.retry, lambda: client.submit([("slow1", SEQ)], engine="esmfold", rerun=True)):
        with pytest.raises(RunStateError) as err:
            start()
        assert err.value.code == "run_running"
    assert run.cancel() == "ABORTED"


def transformed(event: dict) -> dict:
    """What the rule's input transformer (cancel_cleanup.tf) makes of `event`."""
    text = (REPO / "terraform/modules/workflow/cancel_cleanup.tf").read_text()
    paths = dict(re.findall(r'(\w+)\s*=\s*"\$\.detail\.(\w+)"', text))
    template = json.loads(re.search(r"input_template = (\".*\")\n", text).group(1))
    template = template.replace("${var.workflow_name}", "fold")  # Terraform fills it: this is fold's rule
    for var, field in paths.items():
        template = template.replace(f"<{var}>", str(event["detail"][field]))
    return json.loads(template)


@pytest.mark.slow
def test_cancel_then_the_rules_cleanup_event_cleans_the_scratch(deployed, monkeypatch):
    client = deployed.client()
    run = client.submit([("done1", SEQ[:20]), ("slow1", SEQ)], engine="esmfold")  # one batch: done1 first
    scratch = deployed.scratch / run.run_id
    for _ in range(400):
        if (scratch / "predict" / "done1" / "predict.done.json").exists():
            break
        client._sleep(0.02)
    assert run.cancel("enough") == "ABORTED"
    assert (scratch / "input").is_dir()  # StopExecution ran no Cleanup state

    d = boto3.client("stepfunctions", region_name=REGION).describe_execution(executionArn=run.info.arn)
    event = {  # "Step Functions Execution Status Change", as EventBridge delivers it
        "version": "0", "source": "aws.states", "detail-type": "Step Functions Execution Status Change",
        "detail": {"executionArn": d["executionArn"], "stateMachineArn": d["stateMachineArn"], "name": d["name"],
                   "status": d["status"], "startDate": int(d["startDate"].timestamp() * 1000),
                   "stopDate": int(d["stopDate"].astimezone(UTC).timestamp() * 1000) + 1000,
                   "input": d["input"], "inputDetails": {"included": True}}}
    for key, value in {"FOLDSTACK_SCRATCH_ROOT": str(deployed.scratch),
                       "FOLDSTACK_ALLOWED_INPUT_PREFIXES": deployed.params["allowed_input_prefixes"],
                       "FOLDSTACK_ALLOWED_OUTPUT_PREFIXES": deployed.params["output_prefix"],
                       "FOLDSTACK_SIZE_CLASSES": deployed.params["size_classes"]}.items():
        monkeypatch.setenv(key, value)
    result = load_handler("cleanup")(transformed(event))
    assert result["run_id"] == run.run_id and result["kept_targets"] == 1
    assert {"/".join(p.relative_to(scratch).parts[:2]) for p in files_under(scratch)} == {"predict/done1"}
