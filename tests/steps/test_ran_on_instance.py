"""Where a job ran, as the step records it: the instance type and purchase option
from the EC2 instance metadata (IMDSv2, a fake server on 127.0.0.1 here), and the log location
a failure the step records itself carries (cloud: the Batch job's log stream; local: the
job's log file)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from foldstack.core.errors import BadInputError
from foldstack.steps import ran_on
from foldstack.steps.failures import JOB_LOG_ENV, write_failure

TOKEN = "tok-123"


class FakeMetadata(BaseHTTPRequestHandler):
    """IMDSv2 (token, then instance-type / instance-life-cycle with it) and the ECS task
    metadata endpoint v4 (``/v4/abc/task``)."""

    life_cycle = "spot"
    calls: list[str] = []

    def do_PUT(self):  # noqa: N802 - http.server's name
        self.calls.append(f"PUT {self.path}")
        ok = self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
        self._reply(200 if ok else 400, TOKEN)

    def do_GET(self):  # noqa: N802
        self.calls.append(f"GET {self.path}")
        if self.path == "/v4/abc/task":
            return self._reply(200, json.dumps({
                "AvailabilityZone": "eu-west-1a",
                "TaskARN": "arn:aws:ecs:eu-west-1:123456789012:task/cluster-x/0f1e2d3c4b5a"}))
        if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
            return self._reply(401, "")  # IMDSv2 only: no token, no answer
        answers = {"/latest/meta-data/instance-type": "g6e.4xlarge",
                   "/latest/meta-data/instance-life-cycle": self.life_cycle}
        return self._reply(200, answers[self.path]) if self.path in answers else self._reply(404, "")

    def _reply(self, status, body):
        self.send_response(status)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def metadata(monkeypatch):
    FakeMetadata.calls = []
    server = HTTPServer(("127.0.0.1", 0), FakeMetadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for name in ("AWS_BATCH_JQ_NAME", "AWS_BATCH_JOB_ID", "AWS_BATCH_CE_NAME", "AWS_BATCH_JOB_ATTEMPT",
                 ran_on.SIZE_CLASS_ENV, "ECS_CONTAINER_METADATA_URI_V4", ran_on.IMDS_ENDPOINT_ENV,
                 "AWS_EC2_METADATA_DISABLED", JOB_LOG_ENV, "FOLDSTACK_JOB_DEFINITION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_BATCH_JOB_ID", "job-9")
    monkeypatch.setenv("AWS_BATCH_JQ_NAME", "foldstack-prod-gpu-medium")
    ran_on.instance_metadata.cache_clear()
    ran_on._task_metadata.cache_clear()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    ran_on.instance_metadata.cache_clear()
    ran_on._task_metadata.cache_clear()


def test_the_instance_type_and_purchase_come_from_imdsv2(metadata, monkeypatch):
    monkeypatch.setenv(ran_on.IMDS_ENDPOINT_ENV, metadata)
    where = ran_on.ran_on()
    assert where["instance_type"] == "g6e.4xlarge" and where["purchase"] == "spot"
    assert FakeMetadata.calls[0] == "PUT /latest/api/token"  # a session token first (v2)
    FakeMetadata.life_cycle = "on-demand"
    ran_on.instance_metadata.cache_clear()
    try:
        assert ran_on.ran_on()["purchase"] == "on_demand"
    finally:
        FakeMetadata.life_cycle = "spot"


def test_without_instance_metadata_nothing_is_recorded_and_it_is_quick(metadata, monkeypatch):
    import time

    assert "instance_type" not in ran_on.ran_on()  # locally: no ECS endpoint, so IMDS is not asked
    assert FakeMetadata.calls == []
    monkeypatch.setenv(ran_on.IMDS_ENDPOINT_ENV, "http://127.0.0.1:9")  # nothing listens there
    start = time.monotonic()
    assert "instance_type" not in ran_on.ran_on() and time.monotonic() - start < 3
    monkeypatch.setenv(ran_on.IMDS_ENDPOINT_ENV, metadata)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert "instance_type" not in ran_on.ran_on() and FakeMetadata.calls == []


def test_a_failure_the_step_records_names_the_batch_log_stream(metadata, monkeypatch, tmp_path):
    """Cloud: ``<job definition name>/default/<ECS task id>``, as Batch names the stream."""
    monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", f"{metadata}/v4/abc")
    monkeypatch.setenv("FOLDSTACK_JOB_DEFINITION",
                       "arn:aws:batch:eu-west-1:123456789012:job-definition/foldstack-prod-predict-medium:7")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    path = write_failure(tmp_path, "run1", "predict", "t1", BadInputError("bad target"))
    record = json.loads(path.read_text())
    assert record["log"] == "foldstack-prod-predict-medium/default/0f1e2d3c4b5a"
    assert record["job_id"] == "job-9" and record["code"] == "bad_input"

    # no task metadata: the job id, from which DescribeJobs names the stream
    monkeypatch.delenv("ECS_CONTAINER_METADATA_URI_V4")
    record = json.loads(write_failure(tmp_path, "run1", "predict", "t2", BadInputError("x")).read_text())
    assert record["log"] == "batch-job:job-9"

    # the local engine: the job's log file
    monkeypatch.setenv(JOB_LOG_ENV, str(tmp_path / "logs" / "job-9.log"))
    record = json.loads(write_failure(tmp_path, "run1", "predict", "t3", BadInputError("x")).read_text())
    assert record["log"] == str(tmp_path / "logs" / "job-9.log")

    # the step's record reaches the run's failures with it (Publish Batch reads it)
    from foldstack.tasks.outcomes import recorded_failure

    failure = recorded_failure(str(tmp_path / "run1"), "predict", "t1")
    assert failure.log == "foldstack-prod-predict-medium/default/0f1e2d3c4b5a"
