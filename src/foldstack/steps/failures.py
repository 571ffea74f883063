"""A target's failure record: what a step writes for a target it gave up on while its job
goes on (a batched predict job's other targets), at
``<scratch>/<run_id>/<step>/<target>/<step>.failed.json``.

Publish Batch (:mod:`foldstack.tasks.publish_batch`) reads it into the run's failures
(manifest ``failures``, ``failures.tsv``). It never makes a step skip the target: the next
attempt computes it again, and a success replaces the folder (the step contract moves an
unfinished final folder aside before promoting its attempt).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from foldstack.core.clock import utcnow
from foldstack.core.errors import EXIT_BAD_INPUT, EXIT_INPUTS_NOT_READY, EXIT_OUT_OF_MEMORY
from foldstack.steps.common import check_ids, exit_code_for, step_dirs, write_json
from foldstack.steps.ran_on import batch_log_stream, ran_on

FAILED_SUFFIX = ".failed.json"
FAILURE_MESSAGE_MAX = 500
JOB_LOG_ENV = "FOLDSTACK_JOB_LOG"  # where this job's output goes (set by the local engine)
_CODE_BY_EXIT = {EXIT_BAD_INPUT: "bad_input", EXIT_OUT_OF_MEMORY: "out_of_memory",
                 EXIT_INPUTS_NOT_READY: "inputs_not_ready"}


def failed_path(final_dir: Path, step: str) -> Path:
    return final_dir / f"{step}{FAILED_SUFFIX}"


def failure_code(exc: BaseException) -> str:
    """A stable code for a step's failure: the error's own ``code`` where it has one
    (``damaged_file``, ``inputs_not_ready``), else by its exit code (``bad_input``,
    ``out_of_memory``), else ``crash`` (an unexpected exception)."""
    own = getattr(exc, "code", None)
    if isinstance(own, str) and own:
        return own
    code = exit_code_for(exc)
    return _CODE_BY_EXIT.get(code, "step_failed") if code is not None else "crash"


def log_location(job_id: str | None) -> str | None:
    """Where this job's output is: the local engine's log file (``FOLDSTACK_JOB_LOG``); in
    the cloud the Batch job's log stream (:func:`foldstack.steps.ran_on.batch_log_stream`,
    the same name DescribeJobs gives as ``logStreamName``), else ``batch-job:<job id>``
    (DescribeJobs on it names the stream); None outside a job."""
    local = os.environ.get(JOB_LOG_ENV)
    if local:
        return local
    return batch_log_stream() or (f"batch-job:{job_id}" if job_id else None)


def write_failure(scratch: Path | str, run_id: str, step: str, target: str, exc: BaseException) -> Path:
    """Record that `step` failed for `target` (atomically; see FAILED_SUFFIX)."""
    check_ids(run_id, target)
    _parent, final_dir = step_dirs(Path(scratch), run_id, step, target)
    final_dir.mkdir(parents=True, exist_ok=True)
    message = " ".join(f"{type(exc).__name__}: {exc}".split())[:FAILURE_MESSAGE_MAX]
    where = ran_on() or {}
    record = {"step": step, "run_id": run_id, "target": target, "code": failure_code(exc), "message": message,
              "exit_code": exit_code_for(exc), "failed_at": utcnow(), "job_id": where.get("job_id"),
              "log": log_location(where.get("job_id"))}
    path = failed_path(final_dir, step)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    write_json(tmp, record)
    os.replace(tmp, path)
    return path
