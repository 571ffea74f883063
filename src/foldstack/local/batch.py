"""AWS Batch, locally: a submitted job is the jobs.yaml command run as a subprocess.

Each job runs on its own thread: attempt after attempt, with Batch's retryStrategy
(``batch_retry``), the job's ``timeout_seconds`` (attemptDurationSeconds; a timed-out
attempt is killed and never retried) and an optional fault injector. Its state is
reported as an AWS-shaped job description in PascalCase, as Step Functions returns it
from ``batch:submitJob.sync``.

Every attempt gets ``AWS_BATCH_JOB_ID``, ``AWS_BATCH_JOB_ATTEMPT``, ``AWS_BATCH_JQ_NAME``
and ``AWS_BATCH_CE_NAME`` in its environment (as on Batch), plus ``FOLDSTACK_SIZE_CLASS``
for a job definition with a size class, so steps use attempt-scoped temp dirs and record
where they ran (``ran_on``); ``FOLDSTACK_INPUT_WAIT_S`` defaults to 0 (nothing imports late). Output
goes to ``<log_dir>/<job name>-<job id>-<attempt>.log`` (``LogStreamName``). Each attempt runs
in its own session; with ``groups`` (:class:`foldstack.local.driver.JobGroups`) its process group
is recorded while it runs, and what the leader leaves behind is killed when it exits.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foldstack.core.provenance import JOB_DEFINITION_ENV
from foldstack.local.batch_retry import (
    OOM_EXIT_CODE,
    OOM_REASON,
    TIMEOUT_STATUS_REASON,
    AttemptOutcome,
    RetryStrategy,
    decide,
)
from foldstack.local.errors import BatchApiError
from foldstack.local.jobs import (
    ACCOUNT_ID,
    REGION,
    JobsSpecError,
    build_argv,
    job_definition_arn,
    queue_arn,
    resolve_job_definition,
    resolve_queue,
)
from foldstack.local.lambdas import environ_snapshot
from foldstack.steps.failures import JOB_LOG_ENV
from foldstack.workflows.specs import JobsFile, JobSpec

EXIT_STATUS_REASON = "Essential container in task exited"
FAULTS = ("spot_loss", "throttle", "timeout", "crash", "pull_error", "oom_kill")


@dataclass(frozen=True)
class BatchJobInfo:
    """What a fault injector is told about a job attempt."""

    job_id: str
    job_name: str
    job: str  # jobs.yaml key
    size_class: str | None
    queue: str  # queue key
    parameters: Mapping[str, str]
    state_name: str = ""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _spot_reason() -> str:
    return f"Host EC2 (instance i-{secrets.token_hex(8)[:17]}) terminated."


@dataclass
class _Attempt:
    started_at: int
    stopped_at: int | None = None
    exit_code: int | None = None
    status_reason: str | None = None
    reason: str | None = None
    log_stream: str | None = None
    timed_out: bool = False

    def to_aws(self) -> dict[str, Any]:
        container: dict[str, Any] = {"LogStreamName": self.log_stream}
        if self.exit_code is not None:
            container["ExitCode"] = self.exit_code
        if self.reason:
            container["Reason"] = self.reason
        out: dict[str, Any] = {"Container": container, "StartedAt": self.started_at, "StatusReason": self.status_reason}
        if self.stopped_at is not None:
            out["StoppedAt"] = self.stopped_at
        return out

    def outcome(self) -> AttemptOutcome:
        return AttemptOutcome(
            exit_code=self.exit_code, status_reason=self.status_reason, reason=self.reason, timed_out=self.timed_out
        )


@dataclass
class LocalJob:
    """One submitted job; implements the adapter's BatchJobHandle."""

    info: BatchJobInfo
    spec: JobSpec
    argv: list[str]
    env: dict[str, str]
    retry: RetryStrategy
    timeout_seconds: int | None
    job_queue_arn: str
    job_definition_arn: str
    log_dir: Path
    injector: Any = None
    first_fault: str | None = None
    on_change: Callable[[LocalJob], None] | None = None
    groups: Any = None  # driver.JobGroups: where each attempt's process group is recorded
    created_at: int = field(default_factory=_now_ms)
    status: str = "SUBMITTED"
    status_reason: str | None = None
    attempts: list[_Attempt] = field(default_factory=list)
    _done: threading.Event = field(default_factory=threading.Event)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _proc: subprocess.Popen | None = None
    _terminate_reason: str | None = None

    # -- BatchJobHandle
    @property
    def job_id(self) -> str:
        return self.info.job_id

    @property
    def job_name(self) -> str:
        return self.info.job_name

    @property
    def job_arn(self) -> str:
        return f"arn:aws:batch:{REGION}:{ACCOUNT_ID}:job/{self.info.job_id}"

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def terminate(self, reason: str) -> None:
        with self._lock:
            if self._done.is_set():
                return
            self._terminate_reason = reason
            proc = self._proc
        if proc is not None:
            _kill(proc)

    def describe(self) -> dict[str, Any]:
        with self._lock:
            last = self.attempts[-1] if self.attempts else None
            image = f"local/{self.spec.image}"
            container: dict[str, Any] = {"Command": list(self.argv), "Image": image}
            if last is not None:
                container.update(last.to_aws()["Container"])
            desc: dict[str, Any] = {
                "JobArn": self.job_arn,
                "JobId": self.info.job_id,
                "JobName": self.info.job_name,
                "JobQueue": self.job_queue_arn,
                "JobDefinition": self.job_definition_arn,
                "Status": self.status,
                "Attempts": [a.to_aws() for a in self.attempts if a.stopped_at is not None],
                "Container": container,
                "Parameters": dict(self.info.parameters),
                "CreatedAt": self.created_at,
                "DependsOn": [],
                "Tags": {},
                "PlatformCapabilities": ["EC2"],
                "RetryStrategy": {"Attempts": self.retry.attempts},
            }
            if self.status_reason is not None:
                desc["StatusReason"] = self.status_reason
            if self.timeout_seconds:
                desc["Timeout"] = {"AttemptDurationSeconds": self.timeout_seconds}
            if self.attempts:
                desc["StartedAt"] = self.attempts[-1].started_at
                if self.attempts[-1].stopped_at is not None and self.done():
                    desc["StoppedAt"] = self.attempts[-1].stopped_at
            return desc

    # -- running
    def start(self) -> None:
        threading.Thread(target=self._run, name=f"batch-{self.info.job_name}", daemon=True).start()

    def _set(self, status: str, reason: str | None = None) -> None:
        with self._lock:
            self.status = status
            if reason is not None:
                self.status_reason = reason
        if self.on_change is not None:
            with contextlib.suppress(Exception):
                self.on_change(self)

    def _run(self) -> None:
        try:
            self._set("RUNNABLE")
            attempt_no = 0
            while True:
                attempt_no += 1
                if attempt_no == 1:
                    fault = self.first_fault
                elif self.injector is not None and hasattr(self.injector, "before_batch_attempt"):
                    fault = self.injector.before_batch_attempt(self.info, attempt_no)
                else:
                    fault = None
                if fault == "throttle":  # only the SubmitJob call can be throttled
                    fault = None
                if self._terminate_reason:
                    self._set("FAILED", self._terminate_reason)
                    return
                self._set("STARTING")
                attempt = self._run_attempt(attempt_no, fault)
                if self._terminate_reason:
                    self._set("FAILED", self._terminate_reason)
                    return
                outcome = attempt.outcome()
                if outcome.succeeded:
                    self._set("SUCCEEDED", attempt.status_reason)
                    return
                decision = decide(self.retry, outcome, attempt_no)
                if not decision.retry:
                    self._set("FAILED", attempt.status_reason)
                    return
                self._set("RUNNABLE", attempt.status_reason)
        except Exception as err:  # never leave a job hanging
            with self._lock:
                if self.attempts and self.attempts[-1].stopped_at is None:
                    self.attempts[-1].stopped_at = _now_ms()
            self._set("FAILED", f"local engine error: {type(err).__name__}: {err}")
        finally:
            self._done.set()
            if self.on_change is not None:
                with contextlib.suppress(Exception):
                    self.on_change(self)

    def _run_attempt(self, attempt_no: int, fault: str | None) -> _Attempt:
        log_path = self.log_dir / f"{self.info.job_name}-{self.info.job_id}-{attempt_no}.log"
        attempt = _Attempt(started_at=_now_ms(), log_stream=str(log_path))
        with self._lock:
            self.attempts.append(attempt)
        if fault is not None:
            self._set("RUNNING")
            with open(log_path, "w") as fh:
                fh.write(f"[foldstack local engine] injected fault on attempt {attempt_no}: {fault}\n")
            if fault == "spot_loss":
                attempt.status_reason = _spot_reason()
            elif fault == "timeout":
                attempt.status_reason = TIMEOUT_STATUS_REASON
                attempt.timed_out = True
            elif fault == "crash":
                attempt.exit_code = 1
                attempt.status_reason = EXIT_STATUS_REASON
            elif fault == "oom_kill":  # as Batch reports a container killed for memory
                attempt.exit_code, attempt.reason, attempt.status_reason = OOM_EXIT_CODE, OOM_REASON, EXIT_STATUS_REASON
            elif fault == "pull_error":
                attempt.status_reason = "Task failed to start"
                attempt.reason = "CannotPullContainerError: pull image manifest has been retried 5 time(s)"
            else:
                raise ValueError(f"unknown injected fault {fault!r}; expected one of {FAULTS}")
            attempt.stopped_at = _now_ms()
            return attempt
        env = dict(self.env)
        env["AWS_BATCH_JOB_ID"] = self.info.job_id
        env["AWS_BATCH_JOB_ATTEMPT"] = str(attempt_no)
        env["AWS_BATCH_JQ_NAME"] = self.job_queue_arn.rsplit("/", 1)[-1]
        env["AWS_BATCH_CE_NAME"] = f"{env['AWS_BATCH_JQ_NAME']}-local"  # Terraform: <prefix>-<queue>-<suffix>
        env.pop("FOLDSTACK_SIZE_CLASS", None)  # the job definition's size class, if it has one (steps/ran_on.py)
        if self.info.size_class:
            env["FOLDSTACK_SIZE_CLASS"] = self.info.size_class
        env[JOB_LOG_ENV] = str(log_path)  # a step's failure records name it (steps/failures.py)
        env.setdefault("FOLDSTACK_INPUT_WAIT_S", "0")  # no FSx import locally: an absent input will not appear
        with open(log_path, "wb") as fh:
            fh.write(f"$ {' '.join(self.argv)}\n".encode())
            fh.flush()
            with self._lock:
                if self._terminate_reason:
                    attempt.stopped_at = _now_ms()
                    return attempt
                try:
                    proc = subprocess.Popen(  # noqa: S603 - argv from jobs.yaml, no shell
                        self.argv,
                        stdout=fh,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        env=env,
                        start_new_session=True,
                    )
                except OSError as err:
                    attempt.status_reason = "Task failed to start"
                    attempt.reason = f"CannotStartContainerError: {err}"
                    attempt.stopped_at = _now_ms()
                    return attempt
                self._proc = proc
                if self.groups is not None:
                    self.groups.add(proc.pid, self.info.job_name)
            self._set("RUNNING")
            deadline = time.monotonic() + self.timeout_seconds if self.timeout_seconds else None
            while True:
                try:
                    proc.wait(timeout=0.05)
                    break
                except subprocess.TimeoutExpired:
                    if deadline is not None and time.monotonic() >= deadline:
                        _kill(proc)
                        attempt.timed_out = True
                        break
            if self.groups is not None:
                self.groups.ended(proc.pid)
        with self._lock:
            self._proc = None
        attempt.stopped_at = _now_ms()
        if attempt.timed_out:
            attempt.status_reason = TIMEOUT_STATUS_REASON
        else:
            # A process killed by signal N reports -N; containers report 128 + N.
            attempt.exit_code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
            attempt.status_reason = self._terminate_reason or EXIT_STATUS_REASON
            if attempt.exit_code == OOM_EXIT_CODE and not self._terminate_reason:  # SIGKILL, not by us: as Batch
                attempt.reason = OOM_REASON
        return attempt


def _kill(proc: subprocess.Popen, grace: float = 2.0) -> None:
    """SIGTERM the job's process group, SIGKILL after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


def _env_list(value: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in value or []:
        if not isinstance(item, Mapping):
            continue
        name = item.get("Name", item.get("name"))
        if name is not None:
            out[str(name)] = str(item.get("Value", item.get("value", "")))
    return out


class LocalBatch:
    """The engine's Batch service: ``submit`` is SubmitJob."""

    def __init__(
        self,
        jobs: JobsFile | None,
        *,
        log_dir: Path,
        job_env: Mapping[str, str] | None = None,
        injector: Any = None,
        on_change: Callable[[LocalJob], None] | None = None,
        groups: Any = None,
    ):
        self.jobs = jobs
        self.groups = groups
        self.log_dir = Path(log_dir)
        self.job_env = dict(job_env or {})
        self.injector = injector
        self.on_change = on_change
        self._jobs: dict[str, LocalJob] = {}
        self._lock = threading.Lock()

    def submit(self, parameters: Mapping[str, Any], *, state_name: str = "") -> LocalJob:
        if self.jobs is None:
            raise BatchApiError("ClientException", "the local engine was started without a jobs.yaml")
        job_name = str(parameters.get("JobName", ""))
        if not _JOB_NAME.match(job_name):
            raise BatchApiError(
                "ClientException", f"JobName {job_name!r}: 1-128 letters, digits, '-' or '_', starting alphanumeric"
            )
        try:
            spec, size_class = resolve_job_definition(self.jobs, str(parameters.get("JobDefinition", "")))
            queue = resolve_queue(self.jobs, str(parameters.get("JobQueue", "")))
        except JobsSpecError as err:
            raise BatchApiError("ClientException", str(err)) from err
        submitted = parameters.get("Parameters") or {}
        if not isinstance(submitted, Mapping):
            raise BatchApiError("ClientException", "Parameters must be a map of strings")
        bad = [k for k, v in submitted.items() if not isinstance(v, str)]
        if bad:
            raise BatchApiError(
                "ClientException", f"Parameters {bad} must be strings (use States.Format or a string JSONPath)"
            )
        merged = {**spec.parameters, **{str(k): v for k, v in submitted.items()}}
        overrides = parameters.get("ContainerOverrides") or {}
        command = overrides.get("Command") or list(spec.command)
        argv = build_argv(command, merged)

        retry = RetryStrategy.from_model(spec.retry)
        if parameters.get("RetryStrategy"):  # SubmitJob's override: AWS-shaped, checked the same way
            rs = parameters["RetryStrategy"]
            retry = RetryStrategy.from_spec(
                {
                    "attempts": rs.get("Attempts", rs.get("attempts", 1)),
                    "evaluate_on_exit": rs.get("EvaluateOnExit", rs.get("evaluateOnExit", [])),
                }
            )
        timeout = spec.timeout_seconds
        if parameters.get("Timeout"):
            t = parameters["Timeout"]
            timeout = int(t.get("AttemptDurationSeconds", t.get("attemptDurationSeconds", timeout)))

        env = {**environ_snapshot(), **_env_list(overrides.get("Environment")), **self.job_env}  # no Lambda's
        if JOB_DEFINITION_ENV in env:  # the workflow passed the made-up local ARN: name what ran instead
            env[JOB_DEFINITION_ENV] = "/".join(["local:" + self.jobs.workflow, spec.name, *filter(None, [size_class])])
        info = BatchJobInfo(
            job_id=str(uuid.uuid4()),
            job_name=job_name,
            job=spec.name,
            size_class=size_class,
            queue=queue,
            parameters=merged,
            state_name=state_name,
        )
        first_fault = None
        if self.injector is not None and hasattr(self.injector, "before_batch_attempt"):
            first_fault = self.injector.before_batch_attempt(info, 1)
        if first_fault == "throttle":
            raise BatchApiError("AWSBatchException", "Too Many Requests", 429)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        job = LocalJob(
            info=info,
            spec=spec,
            argv=argv,
            env=env,
            retry=retry,
            timeout_seconds=timeout,
            job_queue_arn=queue_arn(queue),
            job_definition_arn=job_definition_arn(spec.name, size_class),
            log_dir=self.log_dir,
            injector=self.injector,
            first_fault=first_fault,
            on_change=self.on_change,
            groups=self.groups,
        )
        with self._lock:
            self._jobs[job.job_id] = job
        job.start()
        return job

    def all_jobs(self) -> list[LocalJob]:
        with self._lock:
            return list(self._jobs.values())

    def terminate_all(self, reason: str) -> None:
        for job in self.all_jobs():
            job.terminate(reason)
