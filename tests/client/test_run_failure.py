"""`Run.failure()` in the cloud (the offline deployment of conftest.py), the progress
summary behind the live table, and the configuration probe that fails in milliseconds."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import boto3
import pytest

from foldstack.client import Client
from foldstack.client.aws import check_configured, session_for
from foldstack.client.failure import split_code
from foldstack.client.history import Progress, StepState
from foldstack.core.errors import ConfigurationError
from tests.client.conftest import REGION, SEQ


@pytest.mark.slow
def test_a_failed_cloud_run_names_step_target_and_the_jobs_last_log_line(deployed):
    from botocore.stub import Stubber

    client = deployed.client()
    run = client.submit([("ok1", SEQ), ("boom1", SEQ[::-1])], engine="esmfold")
    assert run.wait(timeout=60) == "FAILED"
    step = next(s for s in run.steps() if s.status == "FAILED")

    # Batch has forgotten the job (moto knows no such job): the reason from the job description
    failure = client.run(run.run_id).failure()
    assert (failure.step, failure.state) == ("predict", step.state) and failure.code == "step_failed"
    assert failure.target == "boom1,ok1"  # one Predict job folded both; its log was not readable
    assert failure.message == "Essential container in task exited (exit 1)"
    assert failure.job_id == step.job_id and failure.exit_code == 1
    assert "JobId" not in str(failure) and str(failure).startswith(f"run {run.run_id} FAILED in predict")

    # The job's CloudWatch log: its last non-empty line is the message, the stream is the location
    logs = boto3.client("logs", region_name=REGION)
    logs.create_log_group(logGroupName="/aws/batch/job")
    logs.create_log_stream(logGroupName="/aws/batch/job", logStreamName="predict/default/abc")
    now = int(datetime.now(UTC).timestamp() * 1000)
    logs.put_log_events(logGroupName="/aws/batch/job", logStreamName="predict/default/abc", logEvents=[
        {"timestamp": now, "message": "[12:00:00] foldstack step predict [boom1] esmfold: loading"},
        {"timestamp": now + 1, "message": "[12:00:01] foldstack step predict [boom1] FAILED (out of memory, "
                                          "exit 3): [gpu_oom] 2,400 residues do not fit"},
        {"timestamp": now + 2, "message": "   "}])
    fresh = client.run(run.run_id)
    batch = client.api.client("batch")
    with Stubber(batch) as stub:
        stub.add_response("describe_jobs", {"jobs": [{
            "jobName": "x", "jobId": step.job_id, "jobQueue": "q", "status": "FAILED", "startedAt": 1,
            "jobDefinition": "d", "container": {"logStreamName": "predict/default/abc"}}]}, {"jobs": [step.job_id]})
        failure = fresh.failure()
    assert failure.target == "boom1"  # the line names it
    assert failure.code == "gpu_oom" and failure.message == "FAILED (out of memory, exit 3): 2,400 residues do not fit"
    assert failure.log.startswith("CloudWatch Logs /aws/batch/job ")
    doc = fresh.to_dict()
    assert doc["code"] == "gpu_oom" and doc["failure"]["target"] == "boom1" and "2,400 residues" in doc["message"]


@pytest.mark.slow
def test_a_lambda_failure_is_its_error_message(deployed, monkeypatch):
    client = deployed.client()
    run = client.submit([("t1", SEQ)], engine="esmfold")
    assert run.wait(timeout=60) == "SUCCEEDED"
    # A history whose Collect Outputs Lambda failed, as Step Functions records it.
    events = [
        {"id": 1, "type": "ExecutionStarted", "timestamp": datetime.now(UTC)},
        {"id": 2, "type": "TaskStateEntered", "stateEnteredEventDetails": {"name": "CollectOutputs"}},
        {"id": 3, "type": "TaskScheduled", "previousEventId": 2},
        {"id": 4, "type": "TaskFailed", "previousEventId": 3, "taskFailedEventDetails": {
            "error": "OutputIntegrityError", "cause": json.dumps({
                "errorMessage": "[output_integrity] t1/ranked_0.pdb does not match its done-file",
                "errorType": "OutputIntegrityError", "stackTrace": ["..."]})}},
        {"id": 5, "type": "ExecutionFailed", "previousEventId": 4},
    ]
    failed = client.run(run.run_id)
    monkeypatch.setattr(failed._backend, "history", lambda run_id: events)
    monkeypatch.setattr(failed._backend, "describe", lambda run_id: type(run.info)(
        run_id=run_id, status="FAILED", error="OutputIntegrityError", cause="..."))
    failure = failed.failure()
    assert (failure.step, failure.target, failure.code) == ("collectoutputs", None, "output_integrity")
    assert failure.message == "t1/ranked_0.pdb does not match its done-file" and failure.error == "OutputIntegrityError"
    assert failure.where == "CollectOutputs"


@pytest.mark.parametrize("line, code, message", [
    ("[12:00:00] foldstack step msa [a] FAILED (bad input, exit 2): [db_missing] no database",
     "db_missing", "FAILED (bad input, exit 2): no database"),
    ("[gap_character] in.fasta, line 1: bad", "gap_character", "in.fasta, line 1: bad"),
    ("RuntimeError: injected fault", None, "RuntimeError: injected fault"),
    ("[12:00:00] foldstack step predict [c3] done", None, "done"),
    ("list index [0] out of range", None, "list index [0] out of range"),
])
def test_codes_are_read_from_a_steps_line(line, code, message):
    assert split_code(line) == (code, message)


def test_progress_summary_counts_each_target_once_per_step():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    steps = [
        StepState("msa", "Msa", "a", status="SUCCEEDED", started=t0, stopped=t0.replace(second=5)),
        StepState("msa", "Msa", "b", status="SUCCEEDED", started=t0, stopped=t0.replace(second=9)),
        StepState("predict", "Predict_small", "a", status="FAILED", started=t0.replace(second=9)),  # OOM, retried
        StepState("predict", "Predict_medium", "a", status="RUNNING", started=t0.replace(second=20)),
        StepState("predict", "Predict_small", "b", status="SUCCEEDED", started=t0.replace(second=9),
                  stopped=t0.replace(second=30)),
        StepState("collectoutputs", "CollectOutputs"),  # run-level: not a row
    ]
    rows = Progress(steps=steps, n_targets=2).summary()
    assert [(r.step, r.done, r.running, r.failed) for r in rows] == [("msa", 2, 0, 0), ("predict", 1, 1, 0)]
    assert rows[0].stopped == t0.replace(second=9) and rows[1].stopped is None  # still running


def test_configuration_probe_is_fast_and_names_what_to_set(tmp_path, monkeypatch):
    for key in [k for k in __import__("os").environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as info:
        Client("prod")
    assert time.monotonic() - started < 2
    assert info.value.code == "no_credentials" and info.value.details["missing"] == ["region", "credentials"]
    monkeypatch.setenv("AWS_REGION", "eu-west-1")  # AWS_REGION counts, not only AWS_DEFAULT_REGION
    assert session_for().region_name == "eu-west-1"
    with pytest.raises(ConfigurationError) as info:
        check_configured(session_for())
    assert info.value.details["missing"] == ["credentials"] and "AWS_PROFILE" in info.value.details["hint"]
    monkeypatch.setenv("AWS_PROFILE", "nope")
    with pytest.raises(ConfigurationError) as info:
        Client("prod")
    assert info.value.code == "aws_profile"
    assert "AWS_EC2_METADATA_DISABLED" not in __import__("os").environ  # the probe's setting does not leak
