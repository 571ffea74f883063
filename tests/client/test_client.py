"""The SDK against a deployed foldstack simulated offline (see conftest.py)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from foldstack.client import AwsError, Client
from foldstack.core.errors import AccessDeniedError, ConfigurationError, InputValidationError
from tests.client.conftest import ENV, REGION, SEQ, executions, keys, put_input


def fasta(tmp_path, text, name="in.fasta"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# --------------------------------------------------------------------------- configuration


def test_configuration_discovered_from_ssm(deployed):
    config = deployed.client().config
    assert config.state_machine_arn == deployed.state_machine_arn
    assert config.allowed_input_prefixes == ("s3://fs-inputs/uploads", "s3://fs-inputs/shared")
    assert config.output_prefixes == ("s3://fs-results/runs",)
    assert config.queues["cpu-spot"].endswith("job-queue/cpu-spot")
    assert set(config.size_classes) == {"small", "medium", "large"}


@pytest.mark.slow
def test_missing_configuration_lists_every_missing_parameter(deployed):
    ssm = boto3.client("ssm", region_name=REGION)
    ssm.delete_parameters(Names=[f"/foldstack/{ENV}/state_machine_arn", f"/foldstack/{ENV}/log_group_batch"])
    with pytest.raises(ConfigurationError) as err:
        deployed.client()
    message = str(err.value)
    assert f"/foldstack/{ENV}/state_machine_arn" in message and f"/foldstack/{ENV}/log_group_batch" in message
    assert err.value.details["missing"] == ["state_machine_arn", "log_group_batch"]
    with pytest.raises(ConfigurationError, match="missing SSM parameters"):
        Client("nowhere", region=REGION)


# --------------------------------------------------------------------------- the happy path


@pytest.mark.slow
def test_submit_wait_outputs_download_and_idempotent_resubmit(deployed, tmp_path):
    path = fasta(tmp_path, f">t1\n{SEQ}\n>t22\n{SEQ[::-1]}\n")
    client = deployed.client()
    run = client.submit(path, engine="alphafold2", tags={"project": "demo"})
    assert run.existed is False
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    assert keys("fs-inputs") == [f"uploads/{digest}/in.fasta"]

    again = client.submit(path, engine="alphafold2", tags={"project": "other"})  # tags don't change the id
    assert again.run_id == run.run_id and again.existed is True
    assert len(executions(deployed.state_machine_arn)) == 1

    assert run.wait(timeout=60) == "SUCCEEDED" and run.is_done
    steps = {(s.step, s.target): s for s in run.steps() if s.target}
    assert set(steps) == {("lookupmsacache", "t1"), ("lookupmsacache", "t22"), ("msa", "t1"), ("msa", "t22"),
                          ("predict", "t1"), ("predict", "t22")}
    assert all(s.status == "SUCCEEDED" for s in steps.values())
    assert all(s.job_id for (step, _t), s in steps.items() if step in ("msa", "predict"))  # Batch steps
    assert steps[("predict", "t1")].size_class == "small"
    assert steps[("predict", "t1")].job_id == steps[("predict", "t22")].job_id  # one batched Predict job

    files = {f.path for f in run.outputs()}
    assert {"manifest.json", "t1/ranked_0.pdb", "t1/metrics.json", "t22/msa/msa.a3m"} <= files
    root = run.download(tmp_path / "results")
    assert (root / "t22" / "ranked_0.pdb").read_text().startswith("REMARK fake structure of t22")
    assert json.loads((root / "manifest.json").read_text())["run_id"] == run.run_id
    rows = run.metrics()
    assert [(r["id"], r["size_class"], r["mean_plddt"]) for r in rows] == [("t1", "small", 42.0),
                                                                          ("t22", "small", 43.0)]

    done = client.submit(path, engine="alphafold2")  # after it finished: still the same run
    assert done.existed is True and done.status == "SUCCEEDED"
    assert len(executions(deployed.state_machine_arn)) == 1
    assert client.run(run.run_id).to_dict(steps=True)["steps"]


@pytest.mark.slow
def test_inline_records_and_s3_inputs_under_the_allowed_prefix(deployed):
    uri = put_input("shared/lib.fasta", f">s1\n{SEQ}\n")
    run = deployed.client().submit([uri, {"id": "inline1", "sequence": SEQ[:20]}], engine="esmfold")
    assert run.wait(timeout=60) == "SUCCEEDED"
    assert [r["id"] for r in run.metrics()] == ["s1", "inline1"]
    assert not any(s.step == "msa" for s in run.steps())  # esmfold: predict only
    assert keys("fs-inputs", "uploads") == []  # nothing needed uploading


@pytest.mark.slow
def test_failed_run_reports_the_failing_step(deployed):
    run = deployed.client().submit([("boom1", SEQ)], engine="esmfold")
    assert run.wait(timeout=60) == "FAILED"
    # (run.info.error is the Fail state's ErrorPath: "States.TaskFailed" on AWS)
    failed = [s for s in run.steps() if s.status == "FAILED"]
    # the target's predict job failed; the run then failed on its failure budget (1 of 1)
    assert [(s.step, s.target) for s in failed] == [("predict", "boom1"), ("collectoutputs", None)]
    assert run.failure().step == "predict" and run.failure().target == "boom1"  # why: the target's own
    assert run.outcome() == "failed" and [(f.target, f.code) for f in run.failures()] == [("boom1", "crash")]
    assert not [f for f in run.outputs() if f.target]  # nothing folded: only the run's own files


def _cancel_slow_run(deployed):
    client = deployed.client()
    run = client.submit([("slow1", SEQ)], engine="esmfold")
    for _ in range(400):
        step = run.progress().find("predict", "slow1")
        if step is not None and step.job_id:
            break
        client._sleep(0.01)
    assert run.status == "RUNNING"
    return client, run, run.cancel("no longer needed")


@pytest.mark.slow
def test_cancel_stops_a_running_run(deployed):
    client, run, status = _cancel_slow_run(deployed)
    assert client.api.calls["stepfunctions:stop_execution"] == 1
    assert run.is_done and status in ("ABORTED", "FAILED")
    assert run.cancel() == status  # cancelling a finished run is a no-op
    assert client.api.calls["stepfunctions:stop_execution"] == 1


@pytest.mark.slow
def test_cancelled_run_is_aborted(deployed):
    _client, run, status = _cancel_slow_run(deployed)
    assert status == "ABORTED"


@pytest.mark.slow
def test_logs_of_a_step_come_from_its_batch_job_log_stream(deployed):
    from botocore.stub import Stubber

    client = deployed.client()
    run = client.submit([("t1", SEQ)], engine="esmfold")
    assert run.wait(timeout=60) == "SUCCEEDED"
    job_id = run.progress().find("predict", "t1").job_id
    now = int(datetime.now(UTC).timestamp() * 1000)
    logs = boto3.client("logs", region_name=REGION)
    logs.create_log_group(logGroupName="/aws/batch/job")
    logs.create_log_stream(logGroupName="/aws/batch/job", logStreamName="predict/default/abc")
    logs.put_log_events(logGroupName="/aws/batch/job", logStreamName="predict/default/abc",
                        logEvents=[{"timestamp": now, "message": "loading weights"},
                                   {"timestamp": now + 1, "message": "pLDDT 87.1"}])
    batch = client.api.client("batch")
    with Stubber(batch) as stub:
        stub.add_response("describe_jobs", {"jobs": [{
            "jobName": "x", "jobId": job_id, "jobQueue": "q", "status": "SUCCEEDED", "startedAt": 1,
            "jobDefinition": "d", "container": {"logStreamName": "predict/default/abc"}}]}, {"jobs": [job_id]})
        lines = run.logs("predict", "t1")
    assert lines == ["==> predict/default/abc <==", "loading weights", "pLDDT 87.1"]


# --------------------------------------------------------------------------- listing


@pytest.mark.slow
def test_listing_follows_every_page(deployed):
    sfn = boto3.client("stepfunctions", region_name=REGION)
    names = [f"junk-{i}" for i in range(5)]
    for name in names:  # invalid requests: each run fails fast in ValidateInput
        sfn.start_execution(stateMachineArn=deployed.state_machine_arn, name=name,
                            input=json.dumps({"run_id": name, "request": {}}))
    client = deployed.client()
    for name in names:
        client.run(name).wait(timeout=30)
    client._backend.page_size = 2
    before = client.api.calls["stepfunctions:list_executions"]
    runs = client.runs()
    assert sorted(r.run_id for r in runs) == names
    assert client.api.calls["stepfunctions:list_executions"] - before == 3  # 2 + 2 + 1
    assert {r.status for r in client.runs(status="failed")} == {"FAILED"}
    assert client.runs(status="SUCCEEDED") == []
    assert client.runs(since=datetime.now(UTC) + timedelta(hours=1)) == []
    assert len(client.runs(since="1h")) == 5


# --------------------------------------------------------------------------- errors


def test_input_outside_the_allowed_prefixes_is_refused_before_anything_happens(deployed, tmp_path):
    outside = put_input("elsewhere/x.fasta", f">a\n{SEQ}\n", bucket="fs-results")
    client = deployed.client()
    with pytest.raises(AccessDeniedError, match="outside the allowed prefixes"):
        client.submit([outside, fasta(tmp_path, f">b\n{SEQ}\n")])
    with pytest.raises(AccessDeniedError, match="output_uri"):
        client.submit([("a", SEQ)], output="s3://fs-inputs/not-for-results")
    assert keys("fs-inputs") == [] and executions(deployed.state_machine_arn) == []


def test_invalid_fasta_uploads_nothing_and_starts_nothing(deployed, tmp_path):
    bad = fasta(tmp_path, f">ok\n{SEQ}\n>bad\nMKT-AYIAKQRQISFVKSHF\n")
    client = deployed.client()
    with pytest.raises(InputValidationError) as err:
        client.submit(bad, engine="esmfold")
    assert err.value.code == "gap_character" and "line 3" in str(err.value) and "'bad'" in str(err.value)
    with pytest.raises(InputValidationError, match="does not exist"):
        client.submit(str(tmp_path / "missing.fasta"))
    assert keys("fs-inputs") == [] and executions(deployed.state_machine_arn) == []
    assert "s3:put_object" not in client.api.calls and "stepfunctions:start_execution" not in client.api.calls


def _inject(client, service, operation, responses):
    """Answer the next calls of `operation` with canned HTTP errors (status, code, message)."""
    queue = list(responses)
    event = f"before-send.{client.api.client(service).meta.service_model.endpoint_prefix}.{operation}"

    def reply(request, **kwargs):
        if not queue:
            return None
        status, code, message = queue.pop(0)
        body = json.dumps({"__type": code, "message": message}).encode()
        return AWSResponse(request.url, status, {"x-amzn-query-error": f"{code};Sender"}, _Raw(body))

    client.api.client(service).meta.events.register_first(event, reply)
    return queue


class _Raw:
    def __init__(self, body):
        self._body = body

    def stream(self, **kwargs):
        yield self._body

    def read(self, *args, **kwargs):
        body, self._body = self._body, b""
        return body


@pytest.mark.slow
def test_throttling_and_5xx_are_retried_with_backoff(deployed):
    slept = []
    client = deployed.client(sleep=slept.append)
    pending = _inject(client, "stepfunctions", "StartExecution",
                      [(400, "ThrottlingException", "Rate exceeded"), (503, "ServiceUnavailable", "try later")])
    run = client.submit([("t1", SEQ)], engine="esmfold")
    assert pending == [] and client.api.retries == 2
    assert len(slept) == 2 and all(0 <= s <= 20 for s in slept)
    assert client.api.calls["stepfunctions:start_execution"] == 3
    assert run.wait(timeout=60, poll=0) == "SUCCEEDED"


def test_access_denied_surfaces_at_once_with_the_aws_message(deployed):
    slept = []
    client = deployed.client(sleep=slept.append)
    _inject(client, "stepfunctions", "StartExecution",
            [(400, "AccessDeniedException", "User: arn:aws:iam::123456789012:user/x is not authorized to "
              "perform: states:StartExecution")])
    with pytest.raises(AwsError) as err:
        client.submit([("t1", SEQ)], engine="esmfold")
    assert err.value.code == "aws_access_denied" and err.value.aws_code == "AccessDeniedException"
    assert "is not authorized to perform: states:StartExecution" in str(err.value)
    assert slept == [] and client.api.calls["stepfunctions:start_execution"] == 1
