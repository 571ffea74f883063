"""The local engine: run a rendered Step Functions definition on one machine.

    engine = LocalEngine(definition_json, jobs_yaml=Path("statemachines/fold/jobs.yaml"),
                         lambda_env={...}, job_env={...},
                         placeholders={"scratch_mount": ..., "db_mount": ..., "weights_dir": ...},
                         log_dir=Path(".../logs"))
    execution = engine.start_execution("run-abc123", {"inputs": [...]})
    execution.wait(timeout=3600)          # -> "SUCCEEDED" | "FAILED" | ...
    execution.output / .error / .cause / .history()

The interpreter is moto's (see ``moto_adapter``); Lambda tasks call ``lambdas/<name>/
handler.py`` in-process (``lambdas``); Batch tasks run the jobs.yaml command as
subprocesses (``batch``), with Batch's retryStrategy (``batch_retry``).
Everything runs in this process on threads.
"""

from __future__ import annotations

import json
import re
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from foldstack.local import moto_adapter
from foldstack.local.batch import BatchJobInfo, LocalBatch, LocalJob
from foldstack.local.errors import (
    ExecutionAlreadyExists,
    ExecutionDoesNotExist,
    StatesRuntimeError,
)
from foldstack.local.jobs import ACCOUNT_ID, NAME_PREFIX, REGION
from foldstack.local.lambdas import LambdaRunner
from foldstack.local.placeholders import CALLER_SUPPLIED, find_placeholders, late_marker, local_values, substitute
from foldstack.workflows.specs import JobsFile

EXECUTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})


class Injector(Protocol):
    """Fault injection for reliability tests (seeded randomness lives in the test).

    ``before_batch_attempt`` is called once per job attempt (attempt 1 at SubmitJob time):
      * ``None``         run the command normally;
      * ``"spot_loss"``  attempt ends, no exit code, StatusReason
                         ``Host EC2 (instance i-...) terminated.`` (the retry rules decide);
      * ``"throttle"``   (attempt 1 only) SubmitJob fails with ``Batch.AWSBatchException``,
                         which the ASL Retry handles; ignored for later attempts;
      * ``"timeout"``    as if killed by the job timeout (never retried);
      * ``"crash"``      exit code 1 without running the command;
      * ``"pull_error"`` ``CannotPullContainerError`` container reason, no exit code.
    ``before_lambda`` may return an exception (instance or class): the invocation fails
    with it as if the handler had raised it.
    """

    def before_batch_attempt(self, job: BatchJobInfo, attempt: int) -> str | None: ...

    def before_lambda(self, name: str, event: Any) -> BaseException | None: ...


@dataclass(frozen=True)
class HistoryEvent:
    """One execution history event (moto's, annotated).

    ``state_name``: the state the event belongs to; ``map_path``: Map iteration indices
    from the outermost Map in (``()`` outside any Map); ``map_frames``: the same with the
    Map state names; ``details``: the event's details dict as on AWS (camelCase).
    """

    id: int
    previous_id: int
    type: str
    timestamp: datetime
    state_name: str | None
    map_path: tuple[int, ...]
    map_frames: tuple[tuple[str, int], ...]
    details: Mapping[str, Any]

    @property
    def error(self) -> str | None:
        return self.details.get("error")

    @property
    def cause(self) -> str | None:
        return self.details.get("cause")


class LocalExecution:
    """Handle on one execution (thread-safe; fields mirror DescribeExecution)."""

    def __init__(self, engine: LocalEngine, run: moto_adapter.MotoRun, input_value: Any):
        self._engine = engine
        self._run = run
        self.name = run.name
        self.execution_arn = run.execution_arn
        self.input = input_value

    # -- describe
    @property
    def status(self) -> str:
        return self._run.result.status

    @property
    def output(self) -> Any:
        return self._run.result.output

    @property
    def error(self) -> str | None:
        return self._run.result.error

    @property
    def cause(self) -> str | None:
        return self._run.result.cause

    @property
    def start_date(self) -> datetime:
        return self._run.start_time

    @property
    def stop_date(self) -> datetime | None:
        return self._run.stop_time

    @property
    def runtime_errors(self) -> list[str]:
        """Causes of any ``States.Runtime`` error (always fatal; should never happen)."""
        return self._run.runtime_errors

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "executionArn": self.execution_arn,
            "name": self.name,
            "status": self.status,
            "startDate": self.start_date,
            "input": json.dumps(self.input),
        }
        if self.stop_date:
            out["stopDate"] = self.stop_date
        if self.status == "SUCCEEDED":
            out["output"] = json.dumps(self.output)
        if self.error is not None:
            out["error"] = self.error
        if self.cause is not None:
            out["cause"] = self.cause
        return out

    # -- waiting
    def wait(self, timeout: float | None = None, *, raise_on_runtime_error: bool = True) -> str:
        """Block until the execution ends or ``timeout`` seconds pass; return the status.

        A ``States.Runtime`` error (an engine or definition bug, never catchable on AWS)
        raises StatesRuntimeError unless ``raise_on_runtime_error=False``.
        """
        self._run.join(timeout)
        status = self.status
        if raise_on_runtime_error and self.runtime_errors:
            raise StatesRuntimeError(f"execution {self.name}: States.Runtime: {self.runtime_errors[0]}")
        return status

    def done(self) -> bool:
        return self.status in TERMINAL

    def stop(self, error: str | None = None, cause: str | None = None) -> None:
        self._run.stop(error=error, cause=cause)

    # -- history
    def history(self) -> list[HistoryEvent]:
        return [HistoryEvent(**e) for e in self._run.history()]

    def positions(self) -> dict[tuple[int, ...], str]:
        """Map path -> name of the state it is in now (or was last in), for progress."""
        where: dict[tuple[int, ...], str] = {}
        for event in self._run.history():
            if event["type"].endswith("StateEntered") and event["state_name"]:
                where[event["map_path"]] = event["state_name"]
        return where

    def batch_jobs(self) -> list[dict[str, Any]]:
        """AWS-shaped descriptions of the Batch jobs this execution submitted."""
        return [h.describe() for h in list(self._run._batch_handles.values())]

    def __repr__(self) -> str:
        return f"LocalExecution(name={self.name!r}, status={self.status!r})"


class _Hooks:
    """Implements moto_adapter.EngineHooks for one engine."""

    def __init__(self, engine: LocalEngine):
        self._engine = engine
        self.wait_scale = engine.wait_scale
        self.poll_interval = engine.poll_interval

    def invoke_lambda(self, function_name: str, payload: Any) -> Any:
        return self._engine.lambdas.invoke(function_name, payload)

    def submit_batch_job(self, parameters: dict[str, Any], *, state_name: str) -> LocalJob:
        return self._engine.batch.submit(parameters, state_name=state_name)

    def read_s3_object(self, bucket: str, key: str) -> str:
        return self._engine.resolve_s3(bucket, key).read_text()

    def list_s3_objects(self, bucket: str, prefix: str) -> list[dict[str, Any]]:
        root = self._engine.resolve_s3(bucket, "")
        out = []
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            key = path.relative_to(root).as_posix()
            if key.startswith(prefix):
                st = path.stat()
                out.append({"Key": key, "Size": st.st_size, "LastModified": st.st_mtime, "ETag": ""})
        return out

    def on_history_event(self, event: dict[str, Any]) -> None:
        pass


class LocalEngine:
    """One state machine, run locally. Executions run concurrently on threads.

    Args:
        definition: the rendered ASL (JSON text), may contain ``${name}`` placeholders.
        jobs_yaml: the workflow's jobs.yaml (Batch job specs); required if the
            definition has Batch tasks.
        lambdas_dir: where ``<name>/handler.py`` live (default: ``$FOLDSTACK_LAMBDAS_DIR``
            or the repo's ``lambdas/``).
        lambda_env: environment variables applied while a handler runs.
        job_env: environment variables added to every Batch job (win over the others).
        placeholders: values for caller-supplied placeholders (``scratch_mount``,
            ``db_mount``, ``weights_dir``, ...) and overrides of computed ones.
        log_dir: Batch job logs go here (default: a new temp dir).
        wait_scale: factor applied to ASL Retry intervals (0 = retry at once).
        poll_interval: how often a ``.sync`` task re-checks its job (seconds, upper bound).
        injector: optional fault injector (see :class:`Injector`).
        s3_root: where ``s3://<bucket>/<key>`` ItemReader objects live locally
            (``<s3_root>/<bucket>/<key>``); an absolute-path Bucket is used as is.
        on_event: called with each new HistoryEvent (from engine threads).
        state_machine_name: name used in ARNs and ``$$.StateMachine.Name``.
        job_groups: records each Batch job attempt's process group
            (:class:`foldstack.local.driver.JobGroups`), so a dead driver's jobs can be found.
        task_log: the Lambda tasks' log lines (logger ``foldstack.task``) go to this file
            instead of the terminal.
    """

    def __init__(
        self,
        definition: str,
        *,
        jobs_yaml: Path | str | None = None,
        lambdas_dir: Path | str | None = None,
        lambda_env: Mapping[str, str] | None = None,
        job_env: Mapping[str, str] | None = None,
        placeholders: Mapping[str, object] | None = None,
        log_dir: Path | str | None = None,
        wait_scale: float = 0.0,
        poll_interval: float = 0.05,
        injector: Injector | None = None,
        s3_root: Path | str | None = None,
        on_event: Callable[[HistoryEvent], None] | None = None,
        state_machine_name: str | None = None,
        job_groups: Any = None,
        task_log: Path | str | None = None,
    ):
        self.jobs = JobsFile.load(jobs_yaml) if jobs_yaml is not None else None
        self.lambdas = LambdaRunner(
            Path(lambdas_dir) if lambdas_dir else None, lambda_env=lambda_env, injector=injector,
            task_log=Path(task_log) if task_log else None,
        )
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="foldstack-local-"))
        self.wait_scale = float(wait_scale)
        self.poll_interval = float(poll_interval)
        self.injector = injector
        self.s3_root = Path(s3_root) if s3_root else None
        self.on_event = on_event
        self.batch = LocalBatch(self.jobs, log_dir=self.log_dir, job_env=job_env, injector=injector,
                                groups=job_groups)
        late: dict[str, str] = {}
        template = definition
        if find_placeholders(definition):
            values = local_values(self.jobs, lambdas=self.lambdas.names(), extra=placeholders)
            # Per-run paths are filled after parsing, so runs of one workflow share a parse.
            late = {late_marker(name): values[name] for name in CALLER_SUPPLIED if name in values}
            template = substitute(definition, {**values, **{name: late_marker(name) for name in CALLER_SUPPLIED
                                                            if name in values}})
            definition = substitute(definition, values)
        self.definition = definition
        self._parsed = moto_adapter.parse_definition(template, late_values=late)
        workflow = self.jobs.workflow if self.jobs else "workflow"
        self.state_machine_name = state_machine_name or f"{NAME_PREFIX}-{workflow}"
        self.state_machine_arn = f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{self.state_machine_name}"
        self._executions: dict[str, LocalExecution] = {}
        self._lock = threading.Lock()

    # -- executions
    def start_execution(
        self, name: str, input: Any = None, *, on_event: Callable[[HistoryEvent], None] | None = None
    ) -> LocalExecution:
        """StartExecution. Same name + same input while RUNNING returns that execution;
        otherwise a reused name raises ExecutionAlreadyExists (``.execution`` is the
        existing one), as Step Functions does for Standard workflows."""
        if not EXECUTION_NAME.fullmatch(name or ""):
            raise ValueError(f"execution name {name!r} must be 1-80 of [A-Za-z0-9_-]")
        input_value = {} if input is None else json.loads(json.dumps(input))
        with self._lock:
            existing = self._executions.get(name)
            if existing is not None:
                same = _canonical(existing.input) == _canonical(input_value)
                if same and existing.status == "RUNNING":
                    return existing
                err = ExecutionAlreadyExists(
                    f"Execution Already Exists: '{existing.execution_arn}'"
                    + ("" if same else " (with a different input)")
                )
                err.execution = existing  # type: ignore[attr-defined]
                raise err
            callback = on_event or self.on_event
            run = moto_adapter.MotoRun(
                self._parsed,
                name=name,
                execution_arn=f"arn:aws:states:{REGION}:{ACCOUNT_ID}:execution:{self.state_machine_name}:{name}",
                state_machine_arn=self.state_machine_arn,
                state_machine_name=self.state_machine_name,
                input_value=input_value,
                hooks=_Hooks(self),
                on_event=(lambda e: callback(HistoryEvent(**e))) if callback else None,
            )
            execution = LocalExecution(self, run, input_value)
            self._executions[name] = execution
        run.start()
        return execution

    def get_execution(self, name: str) -> LocalExecution:
        with self._lock:
            try:
                return self._executions[name]
            except KeyError:
                raise ExecutionDoesNotExist(name) from None

    def list_executions(self) -> list[LocalExecution]:
        with self._lock:
            return list(self._executions.values())

    def stop_execution(self, name: str, *, error: str | None = None, cause: str | None = None) -> LocalExecution:
        """StopExecution: the execution ends ABORTED; its running Batch jobs are killed."""
        execution = self.get_execution(name)
        execution.stop(error=error, cause=cause)
        return execution

    # -- local S3 for Distributed Map ItemReader
    def resolve_s3(self, bucket: str, key: str) -> Path:
        """``Bucket``/``Key`` of an ItemReader -> local file.

        An absolute-path bucket (``/tmp/x``) or ``file://`` bucket is a directory;
        otherwise ``<s3_root>/<bucket>/<key>``. Keys never escape their bucket.
        """
        if bucket.startswith("file://"):
            bucket = bucket[len("file://") :]
        if bucket.startswith("/"):
            root = Path(bucket)
        elif self.s3_root is not None:
            root = self.s3_root / bucket
        else:
            raise FileNotFoundError(
                f"s3://{bucket}/{key}: no local S3 root (pass s3_root=, or use an absolute-path Bucket)"
            )
        path = (root / key).resolve() if key else root.resolve()
        if path != root.resolve() and root.resolve() not in path.parents:
            raise PermissionError(f"key {key!r} escapes bucket {bucket!r}")
        return path


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
