"""Recorded (AWS-shaped) execution histories of runs of workflows other than fold, and a
backend that serves one to a `Run` handle, for tests of status, progress and failures
without executing anything.

`cryoem_history` follows the job contract of statemachines/cryoem/jobs.yaml (job
definitions named as Terraform names them, SubmitJob parameters as a definition passes
them); its state names are deliberately not the step names, so a test that passes shows
the steps come from the jobs, not from the template's naming.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from foldstack.client.backends import ExecutionInfo
from foldstack.client.run import Run, RunContext

ACCOUNT, REGION = "123456789012", "us-east-1"
RUN_ID = "demo-0123456789abcdef"
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def job_definition(workflow: str, job: str, size_class: str | None = None, revision: int = 3) -> str:
    """A job definition ARN as Terraform names it: <prefix>-<workflow>-<job, _ as ->[-<class>]."""
    name = f"foldstack-test-{workflow}-{job.replace('_', '-')}" + (f"-{size_class}" if size_class else "")
    return f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/{name}:{revision}"


class Recorder:
    """Builds a history event by event (ids in order; each event follows the previous one
    unless `prev` says otherwise, as AWS chains them)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def add(self, etype: str, details: dict[str, Any] | None = None, prev: int | None = None) -> int:
        from foldstack.client.history import details_key

        eid = len(self.events) + 1
        self.events.append({"id": eid, "previousEventId": eid - 1 if prev is None else prev, "type": etype,
                            "timestamp": T0 + timedelta(seconds=10 * eid), details_key(etype): details or {}})
        return eid

    def lambda_task(self, state: str, output: Any = None) -> None:
        self.add("TaskStateEntered", {"name": state, "input": "{}"})
        self.add("TaskScheduled", {"resourceType": "lambda", "resource": "invoke", "parameters": "{}"})
        self.add("TaskSucceeded", {"output": json.dumps({"Payload": output or {}})})
        self.add("TaskStateExited", {"name": state, "output": "{}"})

    def batch_task(self, state: str, definition: str, parameters: dict[str, str], job_id: str, *,
                   item: Any = None, fail: str | None = None) -> None:
        self.add("TaskStateEntered", {"name": state, "input": json.dumps(item if item is not None else {})})
        request = {"JobDefinition": definition, "JobName": f"{RUN_ID}-{state}", "JobQueue": "q",
                   "Parameters": parameters}
        self.add("TaskScheduled", {"resourceType": "batch", "resource": "submitJob.sync",
                                   "parameters": json.dumps(request)})
        self.add("TaskSubmitted", {"output": json.dumps({"JobId": job_id})})
        if fail is None:
            self.add("TaskSucceeded", {"output": json.dumps({"JobId": job_id, "Status": "SUCCEEDED"})})
            self.add("TaskStateExited", {"name": state, "output": "{}"})
            return
        cause = {"JobId": job_id, "Status": "FAILED", "StatusReason": "Essential container in task exited",
                 "Attempts": [{"Container": {"ExitCode": 3, "LogStreamName": f"cryoem/{job_id}"}}]}
        self.add("TaskFailed", {"error": fail, "cause": json.dumps(cause)})


def cryoem_history(*, fail_refine: bool = False, batches: int = 2) -> list[dict[str, Any]]:
    """ValidateInput, StageInputs, a Map over movie batches (cryoem_preprocess each), Curate,
    the GPU stages (cryoem_gpu small: class2d, initial_model, refine3d), PostProcess,
    CollectOutputs, Cleanup; `fail_refine`: refine3d fails out of memory and the run fails."""
    r = Recorder()
    r.add("ExecutionStarted", {"input": json.dumps({"run_id": RUN_ID, "workflow": "cryoem"})})
    r.lambda_task("ValidateInput")
    r.lambda_task("StageInputs")
    r.add("MapStateEntered", {"name": "MovieBatches", "input": "{}"})
    started = r.add("MapStateStarted", {"length": batches})
    for i in range(batches):
        r.add("MapIterationStarted", {"name": "MovieBatches", "index": i}, prev=started)
        batch = f"b{i:05d}"
        r.batch_task("MotionCtfPick", job_definition("cryoem", "cryoem_preprocess"),
                     {"run_id": RUN_ID, "batch": batch, "scratch": "/fsx/scratch"}, f"job-pre-{i}",
                     item={"run_id": RUN_ID, "batch": {"batch": batch, "movies": [f"m{i}.mrc"]}})
        r.add("MapIterationSucceeded", {"name": "MovieBatches", "index": i})
    r.add("MapStateSucceeded")
    r.add("MapStateExited", {"name": "MovieBatches", "output": "{}"})
    r.batch_task("Select", job_definition("cryoem", "cryoem_curate"), {"run_id": RUN_ID}, "job-curate")
    gpu = job_definition("cryoem", "cryoem_gpu", "small")
    r.batch_task("Classify_small", gpu, {"run_id": RUN_ID, "stage": "class2d", "name": ""}, "job-2d")
    r.batch_task("Denovo_small", gpu, {"run_id": RUN_ID, "stage": "initial_model", "name": ""}, "job-init")
    r.batch_task("GoldStandard_small", gpu, {"run_id": RUN_ID, "stage": "refine3d", "name": "main"}, "job-refine",
                 fail="States.TaskFailed" if fail_refine else None)
    if fail_refine:
        r.lambda_task("CleanupOnFailure")
        r.add("ExecutionFailed", {"error": "States.TaskFailed", "cause": "refine3d failed"})
        return r.events
    r.batch_task("Sharpen", job_definition("cryoem", "cryoem_postprocess"), {"run_id": RUN_ID}, "job-post")
    r.lambda_task("CollectOutputs")
    r.lambda_task("CleanupAfterSuccess")
    r.add("ExecutionSucceeded", {"output": "{}"})
    return r.events


class RecordedBackend:
    """Serves one recorded run (describe, history, logs) to `Run`; nothing else."""

    name = "test"

    def __init__(self, events: list[dict[str, Any]], *, workflow: str = "cryoem", status: str = "SUCCEEDED",
                 logs: dict[str, list[str]] | None = None) -> None:
        self.events, self.workflow, self.status, self.logs = events, workflow, status, logs or {}

    def describe(self, run_id: str) -> ExecutionInfo:
        return ExecutionInfo(run_id=run_id, status=self.status, start=T0, stop=T0 + timedelta(hours=1),
                             request={"output_uri": "s3://fs-results/runs"}, workflow=self.workflow,
                             error="States.TaskFailed" if self.status == "FAILED" else None)

    def workflow_of(self, run_id: str) -> str:
        return self.workflow

    def history(self, run_id: str) -> list[dict[str, Any]]:
        return self.events

    def log_lines(self, run_id: str, job_id: str) -> list[str]:
        return [f"==> cryoem/{job_id} <==", *self.logs.get(job_id, [])]

    def log_location(self, stream: str) -> str:
        return f"CloudWatch Logs /aws/batch/job {stream} ({REGION})"

    def read(self, uri: str) -> bytes | None:
        return None


def recorded_run(backend: RecordedBackend, run_id: str = RUN_ID, *, workflow: str | None = None) -> Run:
    return Run(RunContext(backend, time.monotonic, time.sleep, 0.01), run_id, workflow=workflow)
