"""Why a target did not fold: one :class:`~foldstack.core.manifest.TargetFailure` per target,
with a stable code, from what the step recorded or, failing that, from how its job ended.

Two sources, the first that exists wins:

* the step's own failure record (``<step>/<target>/<step>.failed.json``,
  :mod:`foldstack.steps.failures`): its code (``bad_input``, ``damaged_file``, ``crash``,
  ``out_of_memory``...), message, job id and log;
* the workflow's Catch of the target's job (``error`` and ``cause``; for a failed Batch job
  the cause is its job description as JSON): :func:`job_failure` maps its exit code and
  reasons to a code (:data:`JOB_CODES`) and names the job id and log stream.

This module runs inside the Lambda zips: it imports only ``foldstack.core`` and storage.
"""

from __future__ import annotations

import json
from typing import Any

from foldstack import storage
from foldstack.core.errors import FoldstackError
from foldstack.core.manifest import TargetFailure

RECORD_MAX_BYTES = 1 << 16
MESSAGE_MAX = 500

#: The codes a job's end maps to (a step's own record may carry others, e.g. damaged_file).
JOB_CODES = {
    "out_of_memory": "out of memory on the largest class it may use (exit 3 or 137, or Batch's OutOfMemoryError)",
    "bad_input": "the step refused its input (exit 2)",
    "inputs_not_ready": "another step's outputs never became visible (exit 75, retries used up)",
    "timeout": "the job ran past its timeout",
    "capacity_lost": "the instance was reclaimed or lost on every attempt (Spot, host failure)",
    "image_pull_failed": "the container image could not be pulled",
    "crash": "the step failed unexpectedly",
    "job_failed": "the job failed for another reason (see its log)",
}
OOM_EXIT_CODES = (3, 137)


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())[:MESSAGE_MAX]


def _job_description(error: str | None, cause: str | None) -> dict[str, Any] | None:
    if error != "States.TaskFailed" or not cause:
        return None
    try:
        job = json.loads(cause)
    except ValueError:
        return None
    return job if isinstance(job, dict) else None


def job_code(exit_code: Any, reason: str, status_reason: str) -> str:
    """The stable code of a Batch job's end (see :data:`JOB_CODES`)."""
    if exit_code in OOM_EXIT_CODES or "OutOfMemoryError" in reason or "OutOfMemoryError" in status_reason:
        return "out_of_memory"
    if exit_code == 2:
        return "bad_input"
    if exit_code == 75:
        return "inputs_not_ready"
    if status_reason.startswith("Job attempt duration exceeded timeout"):
        return "timeout"
    if status_reason.startswith("Host EC2"):
        return "capacity_lost"
    if reason.startswith("CannotPullContainerError"):
        return "image_pull_failed"
    if exit_code == 1:
        return "crash"
    return "job_failed"


def job_failure(target: str, step: str, error: str | None, cause: str | None) -> TargetFailure:
    """The failure of `target` from the Catch of its (or its batch's) job."""
    job = _job_description(error, cause)
    if job is None:
        code = "timeout" if error == "States.Timeout" else "job_failed"
        return TargetFailure(target=target, step=step, code=code,
                             message=_one_line(f"{error or 'error'}: {cause or ''}".rstrip(": ")))
    container = job.get("Container") if isinstance(job.get("Container"), dict) else {}
    exit_code = container.get("ExitCode")
    reason, status_reason = str(container.get("Reason") or ""), str(job.get("StatusReason") or "")
    code = job_code(exit_code, reason, status_reason)
    told = "; ".join(x for x in (f"exit {exit_code}" if exit_code is not None else "", reason, status_reason) if x)
    return TargetFailure(target=target, step=step, code=code, message=_one_line(f"{JOB_CODES[code]}: {told}"),
                         job_id=job.get("JobId"), log=container.get("LogStreamName"))


def recorded_failure(run_root: str, step: str, target: str) -> TargetFailure | None:
    """The step's own failure record for `target`, or None (absent or unreadable)."""
    uri = storage.safe_join(run_root, step, target, f"{step}.failed.json")
    try:
        if not storage.exists(uri):
            return None
        record = json.loads(storage.read_bytes(uri, max_bytes=RECORD_MAX_BYTES))
    except (OSError, ValueError, FoldstackError):
        return None
    if not isinstance(record, dict) or record.get("target") != target:
        return None
    return TargetFailure(target=target, step=step, code=str(record.get("code") or "job_failed"),
                         message=_one_line(record.get("message") or ""), job_id=record.get("job_id"),
                         log=record.get("log"))


def not_published(target: str) -> TargetFailure:
    """A target in no batch summary: its batch's Publish Batch failed after its retries (or
    the batch itself failed); `foldstack retry` publishes it."""
    return TargetFailure(target=target, step="publish", code="not_published",
                         message="its batch was not published (see the execution's history for PublishBatch); "
                                 "`foldstack retry` publishes it")
