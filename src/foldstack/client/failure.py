"""Why a run did not succeed, in the failing step's own words (`Run.failure()`).

The failing step and target come from the run's history (`foldstack.client.history`):
a target's latest step that failed (the first to stop), else a failed run-level step
(ValidateInput, CollectOutputs, ...). Its message is, for a Batch job, the last
non-empty line of the job's last attempt's log (local: `<home>/runs/<run_id>/logs/`;
cloud: CloudWatch), falling back to the job's status reason and exit code when the log
cannot be read; for a Lambda task, its error message. Never the Batch job description
Step Functions records as the cause. A step's stable code is the `[code]` in that line,
else one derived from the step contract's exit code (2 `bad_input`, 3 `out_of_memory`)
or the run's status.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from foldstack.client import history as _history
from foldstack.core.errors import EXIT_BAD_INPUT, EXIT_OUT_OF_MEMORY, FoldstackError

BAD_STATUSES = ("FAILED", "TIMED_OUT", "ABORTED")
_STEP_LOG_PREFIX = re.compile(r"^\[\d\d:\d\d:\d\d\] foldstack step \S+ \[([^\]]*)\] ")
_CODE = re.compile(r"(?:^|: )\[([a-z][a-z0-9_]*)\] ")


@dataclass(frozen=True)
class Failure:
    """Why a run did not succeed, in the failing step's own words."""

    run_id: str
    status: str  # FAILED | TIMED_OUT | ABORTED
    # the step's stable code (its "[code]"), else step_failed | bad_input | out_of_memory |
    # timed_out | aborted | run_failed
    code: str
    message: str  # the failing step's last error line (its log's last non-empty line, or its error message)
    step: str | None = None  # msa | predict | validateinput | ... (None: the run itself)
    state: str | None = None  # the ASL state, e.g. Predict_small
    target: str | None = None  # several, joined by ',', when one job served a batch and its log names none
    error: str | None = None  # the Step Functions error name, e.g. States.TaskFailed
    job_id: str | None = None  # the Batch job, for steps that are Batch jobs
    log: str | None = None  # where the job's full log is: a local path, or a CloudWatch group and stream
    exit_code: int | None = None

    @property
    def where(self) -> str:
        if self.step and self.target:
            return f"{self.step} of target{'s' if ',' in self.target else ''} {self.target}"
        if self.step and self.job_id:  # a Batch step of the run as a whole (cryoem's refine3d): what it ran
            return self.step
        return self.state or self.step or "the run"

    def __str__(self) -> str:
        return f"run {self.run_id} {self.status} in {self.where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_code(text: str) -> tuple[str | None, str]:
    """("gap_character", "…message…") from "…: [gap_character] …message…" (a step's log
    prefix `[hh:mm:ss] foldstack step <step> [<target>] ` is dropped first)."""
    text = _STEP_LOG_PREFIX.sub("", text.strip())
    m = _CODE.search(text)
    if m is None:
        return None, text
    return m.group(1), (text[:m.start()] + (": " if m.start() else "") + text[m.end():]).strip()


def log_sections(lines: Sequence[str]) -> list[tuple[str | None, list[str]]]:
    """`log_lines` output ("==> name <==" then that log's lines) as (name, lines) pairs."""
    sections: list[tuple[str | None, list[str]]] = []
    for line in lines:
        if line.startswith("==> ") and line.endswith(" <=="):
            sections.append((line[4:-4], []))
        elif sections:
            sections[-1][1].append(line)
        else:
            sections.append((None, [line]))
    return sections


def _job_facts(job: Any) -> tuple[str | None, int | None, str | None]:
    """(log stream, exit code, reason) of a Batch job description's last attempt."""
    if not isinstance(job, Mapping):
        return None, None, None
    attempts = [a for a in job.get("Attempts") or [] if isinstance(a, Mapping)]
    last = attempts[-1] if attempts else {}
    container = last.get("Container") or job.get("Container") or {}
    whole = job.get("Container") or {}
    stream = container.get("LogStreamName") or whole.get("LogStreamName")
    exit_code = container.get("ExitCode", whole.get("ExitCode"))
    reason = container.get("Reason") or last.get("StatusReason") or job.get("StatusReason")
    return stream, exit_code if isinstance(exit_code, int) else None, reason


def failing_step(progress: _history.Progress) -> _history.StepState | None:
    """The step that made the run fail: a target's latest step that failed (the first to
    stop), else a target's step that failed and never succeeded later (the run went on
    without that target and failed on the failure budget: the first such target tells
    why), else a failed run-level step (ValidateInput, CollectOutputs, ...)."""
    latest = progress.targets()
    failed = [s for s in latest.values() if s.status in BAD_STATUSES]
    if not failed:
        recovered = {(s.step, s.target) for s in progress.steps if s.target and s.status == "SUCCEEDED"}
        failed = [s for s in progress.steps if s.target and s.status in BAD_STATUSES
                  and (s.step, s.target) not in recovered]
    if not failed:
        failed = [s for s in progress.steps if s.target is None and s.status in BAD_STATUSES]
    if not failed:
        return None
    real = [s for s in failed if s.status != "ABORTED"] or failed
    return min(real, key=lambda s: (s.stopped is None, s.stopped or datetime.max.replace(tzinfo=UTC)))


def last_log_line(backend: Any, run_id: str, job_id: str) -> tuple[str | None, str | None]:
    """(last non-empty line of the job's last attempt, that log's name), or Nones when the
    log cannot be read (Batch forgot the job, no access, no file)."""
    try:
        lines = backend.log_lines(run_id, job_id)
    except (FoldstackError, OSError):
        return None, None
    for name, body in reversed(log_sections(lines)):
        last = next((ln.strip() for ln in reversed(body) if ln.strip()), None)
        if last is not None:
            return last, name
    return None, None


def explain(run_id: str, info: Any, progress: _history.Progress, backend: Any) -> Failure:
    """The `Failure` of a run whose status (`info.status`) is in BAD_STATUSES."""
    default = {"TIMED_OUT": "timed_out", "ABORTED": "aborted"}.get(info.status)
    step = failing_step(progress) if info.status != "ABORTED" else None
    if step is None:  # the run itself: cancelled, or failed outside any task
        cause = _history.json_field(info.cause)
        text = cause.get("errorMessage") if isinstance(cause, Mapping) else None
        first = str(text or info.cause or info.error or f"the run {info.status}").splitlines() or [""]
        code, message = split_code(first[0])
        return Failure(run_id, info.status, code or default or "run_failed", message[:500], error=info.error)
    cause = _history.json_field(step.cause)
    job = cause if isinstance(cause, Mapping) and ("Attempts" in cause or "JobId" in cause) else None
    if step.job_id or job is not None:  # a Batch job: its log's last line
        stream, exit_code, reason = _job_facts(job)
        line, section = last_log_line(backend, run_id, step.job_id) if step.job_id else (None, None)
        code, message = split_code(line) if line else (None, "")
        # One Predict job folds a batch of targets: name the one its log names, else all of them.
        served = {t for s in progress.steps if s.job_id and s.job_id == step.job_id and s.target
                  for t in s.target.split(",")} | set((step.target or "").split(",")) - {""}
        named = _STEP_LOG_PREFIX.match(line or "")
        target = named.group(1) if named and named.group(1) in served else ",".join(sorted(served)) or None
        if not message:
            message = (reason or f"the {step.step} job failed") + (f" (exit {exit_code})" if exit_code else "")
        code = code or {EXIT_BAD_INPUT: "bad_input", EXIT_OUT_OF_MEMORY: "out_of_memory"}.get(exit_code or 0)
        stream = stream or section
        where = getattr(backend, "log_location", None)
        return Failure(run_id, info.status, code or default or "step_failed", message[:500], step=step.step,
                       state=step.state, target=target, error=step.error, job_id=step.job_id,
                       log=where(stream) if (where and stream) else stream, exit_code=exit_code)
    # a Lambda task: its error message
    text = cause.get("errorMessage") if isinstance(cause, Mapping) else step.cause
    error = (cause.get("errorType") if isinstance(cause, Mapping) else None) or step.error
    first = next((ln for ln in str(text or "").splitlines() if ln.strip()), "") or str(error or "failed")
    code, message = split_code(first)
    return Failure(run_id, info.status, code or default or "step_failed", message[:500], step=step.step,
                   state=step.state, target=step.target, error=error)
