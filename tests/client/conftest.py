"""A deployed foldstack, offline: moto serves SSM, S3, Step Functions (and Logs); every
StartExecution moto accepts is *run* by the local engine on the real rendered ASL (the
real Lambda handlers in-process, Batch jobs as `fake_step.py` subprocesses), so
DescribeExecution / GetExecutionHistory / StopExecution answer from a real execution.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto.stepfunctions.models import Execution, StateMachine

from tests.conftest import REPO
from tests.fake_aws import fake_aws
from tests.jobspecs import size_classes_json

REGION = "us-east-1"
ACCOUNT = "123456789012"
ENV = "test"
FAKE_STEP = Path(__file__).with_name("fake_step.py")
SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"


@dataclass
class Deployment:
    env: str
    params: dict[str, str]
    state_machine_arn: str
    scratch: Path
    engines: list[Any] = field(default_factory=list)

    def client(self, **kwargs: Any):
        from foldstack.client import Client

        kwargs.setdefault("poll_interval", 0.05)
        return Client(self.env, region=REGION, **kwargs)


@pytest.fixture
def aws(monkeypatch):
    with fake_aws(monkeypatch, REGION):
        yield


def fake_jobs_yaml(tmp: Path) -> Path:
    """The real jobs.yaml with each command replaced by fake_step.py (same arguments)."""
    data = yaml.safe_load((REPO / "statemachines/fold/jobs.yaml").read_text())
    for job in data["jobs"].values():
        job["command"] = ["python", str(FAKE_STEP), *job["command"][2:]]
    path = tmp / "jobs.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def install_fake_data(home: Path) -> Path:
    """What `Client.check_installed` looks for (presence only): esmfold and alphafold2
    weight files and one sequence database, all empty (the fake steps read none)."""
    esm = home / "weights" / "esmfold"
    esm.mkdir(parents=True, exist_ok=True)
    (esm / "config.json").write_text("{}")
    (esm / "model.safetensors").write_bytes(b"")
    af2 = home / "weights" / "alphafold2"
    af2.mkdir(parents=True, exist_ok=True)
    (af2 / "params_model_1_ptm.npz").write_bytes(b"")
    db = home / "db" / "fake_uniref"
    db.mkdir(parents=True, exist_ok=True)
    (db / "CURRENT").write_text("1\n")
    return home


def fake_local_client(tmp_path: Path, *, home: Path | None = None, output: Path | None = None,
                      install: bool = True, job_env: dict[str, str] | None = None, **limits: Any):
    """`Client.local` over the real rendered fold workflow with `fake_step.py` as every
    Batch job (milliseconds per step), the fake weights/databases installed."""
    import shutil

    from foldstack.client import Client
    from foldstack.core.fasta import FastaLimits
    from foldstack.local.runner import LocalRunner
    from foldstack.workflows.specs import Workflow

    wf = tmp_path / "wf" / "fold"
    if not wf.exists():
        shutil.copytree(REPO / "statemachines" / "fold", wf)
        shutil.copy(fake_jobs_yaml(tmp_path), wf / "jobs.yaml")
    home = home or tmp_path / "home"
    if install:
        install_fake_data(home)
    runner = LocalRunner(home, workflow=Workflow(directory=wf),
                         job_env={"PYTHONPATH": str(REPO / "src"), **(job_env or {})},
                         limits=FastaLimits(**limits) if limits else None)
    return Client.local(runner=runner, output=output or tmp_path / "out")


def _from_engine(read: Callable[[Any], Any]) -> property:
    """A field moto's Execution keeps, read from the local-engine execution instead; what
    moto writes to it is dropped."""
    return property(lambda self: read(self._fs), lambda self, value: None)


class BridgedExecution(Execution):
    """moto's Execution, answered from a local-engine execution."""

    _fs: Any

    status = _from_engine(lambda fs: fs.status)
    stop_date = _from_engine(lambda fs: fs.stop_date)
    output = _from_engine(lambda fs: json.dumps(fs.output) if fs.status == "SUCCEEDED" else None)
    error = _from_engine(lambda fs: fs.error)
    cause = _from_engine(lambda fs: fs.cause)

    def stop(self, *args, **kwargs):
        self._fs.stop(error=kwargs.get("error") or None, cause=kwargs.get("cause") or None)
        deadline = time.monotonic() + 10
        while self._fs.status == "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.01)

    def get_execution_history(self, roleArn):
        from foldstack.client.history import from_engine

        events = from_engine(self._fs.history())
        for e in events:
            e.pop("_map_path", None)  # AWS has no such field: the client must use previousEventId
        return events


@pytest.fixture
def deployed(aws, tmp_path, monkeypatch) -> Deployment:
    """Deployed, with executions run by the local engine."""
    deployment = deploy(tmp_path, monkeypatch, engine=True)
    yield deployment
    for execution in deployment.engines[0].list_executions():
        if execution.status == "RUNNING":
            execution.stop(error="TestEnded")
            execution.wait(10, raise_on_runtime_error=False)


@pytest.fixture
def deployed_plain(aws, tmp_path, monkeypatch) -> Deployment:
    """Deployed, executions are moto's plain records (stay RUNNING): for volume tests."""
    return deploy(tmp_path, monkeypatch, engine=False)


def deploy(tmp_path: Path, monkeypatch, *, engine: bool) -> Deployment:
    from foldstack.local import LocalEngine

    s3 = boto3.client("s3", region_name=REGION)
    for bucket in ("fs-inputs", "fs-results", "fs-scratch", "fs-db"):
        s3.create_bucket(Bucket=bucket)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    definition = (REPO / "statemachines/rendered/fold.asl.json").read_text()
    jobs_yaml = fake_jobs_yaml(tmp_path)
    sfn = boto3.client("stepfunctions", region_name=REGION)
    from foldstack.local import local_values, substitute

    concrete = substitute(definition, local_values(jobs_yaml, scratch_mount=scratch, db_mount=tmp_path / "db",
                                                   weights_dir=tmp_path / "weights"))
    sm_arn = sfn.create_state_machine(name="foldstack-test-fold", definition=concrete,
                                      roleArn=f"arn:aws:iam::{ACCOUNT}:role/foldstack-sfn")["stateMachineArn"]
    params = {
        "state_machine_arn": sm_arn,
        "input_prefix": "s3://fs-inputs/uploads",
        "allowed_input_prefixes": "s3://fs-inputs/uploads,s3://fs-inputs/shared",
        "output_prefix": "s3://fs-results/runs",
        "scratch_bucket": "fs-scratch",
        "region": REGION,
        "log_group_batch": "/aws/batch/job",
        "queues": json.dumps({"cpu-spot": f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/cpu-spot"}),
        "msa_cache_uri": "s3://fs-scratch/cache",
        "size_classes": size_classes_json(),
        "db_uri": "s3://fs-db/db",
    }
    ssm = boto3.client("ssm", region_name=REGION)
    for name, value in params.items():
        ssm.put_parameter(Name=f"/foldstack/{ENV}/{name}", Value=value,
                          Type="StringList" if name == "allowed_input_prefixes" else "String")
    deployment = Deployment(ENV, params, sm_arn, scratch)
    if not engine:
        return deployment
    lambda_env = {
        "FOLDSTACK_SCRATCH_ROOT": str(scratch),
        "FOLDSTACK_ALLOWED_INPUT_PREFIXES": params["allowed_input_prefixes"],
        "FOLDSTACK_ALLOWED_OUTPUT_PREFIXES": params["output_prefix"],
        "FOLDSTACK_SIZE_CLASSES": params["size_classes"],
    }
    local_engine = LocalEngine(definition, jobs_yaml=jobs_yaml, lambda_env=lambda_env,
                         job_env={"PYTHONPATH": str(REPO / "src")},
                         placeholders={"scratch_mount": str(scratch), "db_mount": str(tmp_path / "db"),
                                       "weights_dir": str(tmp_path / "weights")},
                         log_dir=tmp_path / "logs", wait_scale=0.0, poll_interval=0.02)
    deployment.engines.append(local_engine)
    original = StateMachine.start_execution

    def start_execution(self, region_name, account_id, execution_name, execution_input):
        before = len(self.executions)
        execution = original(self, region_name, account_id, execution_name, execution_input)
        if len(self.executions) > before and self.arn == sm_arn:
            execution._fs = local_engine.start_execution(execution_name, json.loads(execution_input))
            execution.__class__ = BridgedExecution
        return execution

    monkeypatch.setattr(StateMachine, "start_execution", start_execution)
    return deployment


def put_input(key: str, text: str, bucket: str = "fs-inputs") -> str:
    boto3.client("s3", region_name=REGION).put_object(Bucket=bucket, Key=key, Body=text.encode())
    return f"s3://{bucket}/{key}"


def keys(bucket: str, prefix: str = "") -> list[str]:
    s3 = boto3.client("s3", region_name=REGION)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for p in pages for o in p.get("Contents", []))


def executions(arn: str) -> list[dict]:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    return [e for p in sfn.get_paginator("list_executions").paginate(stateMachineArn=arn) for e in p["executions"]]




def deploy_workflow(deployment: Deployment, name: str) -> str:
    """A state machine for workflow `name` (one Pass state: its executions are records)
    named in the SSM `workflows` map beside fold's; returns its ARN."""
    sfn = boto3.client("stepfunctions", region_name=REGION)
    definition = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})
    arn = sfn.create_state_machine(name=f"foldstack-test-{name}", definition=definition,
                                   roleArn=f"arn:aws:iam::{ACCOUNT}:role/foldstack-sfn")["stateMachineArn"]
    workflows = {"fold": deployment.state_machine_arn, **json.loads(deployment.params.get("workflows", "{}")),
                 name: arn}
    boto3.client("ssm", region_name=REGION).put_parameter(Name=f"/foldstack/{ENV}/workflows", Type="String",
                                                          Value=json.dumps(workflows), Overwrite=True)
    deployment.params["workflows"] = json.dumps(workflows)
    return arn


@pytest.fixture
def deployed_toy(deployed_plain, tmp_path, monkeypatch) -> Deployment:
    """`deployed_plain` with a second client workflow: the toy workload of
    tests/onboarding registered (FOLDSTACK_STATEMACHINES_DIR) and deployed (its own state
    machine, named in the SSM `workflows` map beside fold's)."""
    from tests.onboarding.toy_workload import WORKFLOW, write_statemachines

    monkeypatch.setenv("FOLDSTACK_STATEMACHINES_DIR", str(write_statemachines(tmp_path / "registry")))
    deploy_workflow(deployed_plain, WORKFLOW)
    return deployed_plain
