"""Local mode: run a rendered workflow (fold, or any registered one) on this machine, durably.

The same rendered ASL as in the cloud runs on the local engine (moto's interpreter);
Lambda tasks call the real handlers, Batch tasks run the jobs.yaml commands as
subprocesses. Like the cloud client, local files are first copied under an input prefix
(``<home>/inputs/``), and the run id names the execution.

Which workflow: ``LocalRunner(workflow=...)``, a registered name or a workflow folder
(default fold); what differs per workload is in :mod:`foldstack.local.workloads`.

One execution per run id, across processes: the driving process holds the run's lock
(:mod:`foldstack.local.driver`). Submitting a request:

* SUCCEEDED before: the recorded run is returned (nothing runs again);
* RUNNING in another process (or another runner): the caller attaches and follows it;
* a RUNNING record nobody drives (its driver was killed): the run is recorded ABORTED
  (orphaned jobs killed, finished MSAs kept, scratch cleaned), then started again;
* ABORTED, FAILED or TIMED_OUT before: a new execution of the same run id starts and
  reuses finished work (the finished targets' step outputs Cleanup kept in scratch, and
  the MSA cache); within one runner, submitting the same request again while it runs or
  after it failed returns that same run (duplicate submissions are not retries).

Each execution is an attempt, named ``<run_id>`` then ``<run_id>-a<N>``
(:func:`foldstack.core.runid.execution_name`; N is the record's ``execution``).
:meth:`LocalRunner.retry` starts the next attempt of a FAILED, ABORTED or TIMED_OUT run, or
of a partial one (SUCCEEDED with some targets failed; reusing finished targets);
``submit(..., rerun=True)`` starts one even after a success, having discarded the run's
finished work and withdrawn its results, so every target is recomputed. Neither starts while
the run is running (``[run_running]``).

Every read of a run (`describe`, `list_runs`, `LocalRun.wait`, `cancel`) finds a dead
driver the same way, so nothing waits on a run nobody drives.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from foldstack.core.errors import InputValidationError
from foldstack.core.fasta import FastaLimits
from foldstack.core.manifest import execution_outcome
from foldstack.core.request import RunRequest
from foldstack.core.targets import Target
from foldstack.core.uris import parse_uri
from foldstack.local import workloads
from foldstack.local.driver import DriverIdentity, RunLock
from foldstack.local.errors import CorruptRecord, DriverError, LocalRunNotFound, RunStateConflict
from foldstack.local.execution import Drive, discard, reap
from foldstack.local.inputs import copy_path, is_local, local_path, read_inputs, store_inputs
from foldstack.local.paths import LocalPaths, check_output, default_home, home_description
from foldstack.local.records import (
    TERMINAL,
    UNKNOWN,
    event_dict,
    new_record,
    now,
    read_events,
    read_record,
    unknown_record,
    write_record,
)
from foldstack.tasks.validate import validate_run
from foldstack.workflows.render import dumps, render_definition
from foldstack.workflows.specs import Workflow, load_workflow

ATTACH_WAIT_S = 30.0  # how long a second submitter waits for the first one's RUNNING record
CANCEL_WAIT_S = 60.0
RETRYABLE = frozenset({"FAILED", "ABORTED", "TIMED_OUT"})


@dataclass
class LocalRun:
    """A handle on one local run; the record is read (and a dead driver found) on demand."""

    run_id: str
    runner: LocalRunner
    request: RunRequest
    target_ids: tuple[str, ...] | tuple[tuple[str, ...], ...] = ()
    existed: bool = False  # the run was recorded or running before this submission
    _drive: Drive | None = field(default=None, repr=False)

    @property
    def paths(self) -> LocalPaths:
        return self.runner.paths

    @property
    def record_path(self) -> Path:
        return self.paths.record(self.run_id)

    @property
    def _execution(self) -> Any:
        """The engine execution, if this process drives the run."""
        return self._drive.execution if self._drive is not None else None

    def record(self) -> dict[str, Any]:
        return self.runner.describe(self.run_id)

    @property
    def status(self) -> str:
        return self.record()["status"]

    @property
    def output(self) -> Path:
        return Path(self.request.output_uri) / self.run_id

    def wait(self, timeout: float | None = None, *, poll: float = 0.2) -> str:
        """Until the run ends (or `timeout`); a run driven elsewhere is followed through
        its record, and one whose driver died is recorded ABORTED, so this returns."""
        if self._drive is not None:
            self._drive.wait(timeout)
            return self.status
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.status
            if status in TERMINAL or status == UNKNOWN:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                return status
            time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))

    def history(self) -> list[dict[str, Any]]:
        return [e if isinstance(e, dict) else event_dict(e, self.target_ids) for e in
                self.runner.history(self.run_id)]

    def cancel(self, reason: str = "cancelled by the user") -> str:
        return self.runner.cancel(self.run_id, reason)


@dataclass(frozen=True)
class Submission:
    request: RunRequest  # inputs as their copies under <home>/inputs, output resolved
    targets: list[Target]
    run_id: str
    items: tuple[str, ...] = ()  # another workload's Map items (history events name them)


class LocalRunner:
    """Submits runs to the local engine and reads them back. One engine per execution
    keeps each run's Lambda environment (its allowed prefixes) exact."""

    def __init__(
        self,
        home: Path | str | None = None,
        *,
        workflow: Workflow | str | None = None,
        wait_scale: float = 0.0,
        injector: Any = None,
        on_event: Any = None,
        job_env: dict[str, str] | None = None,
        limits: FastaLimits | None = None,
        grace: float = 5.0,
    ) -> None:
        self._home_arg = home
        self.paths = LocalPaths((Path(home).expanduser() if home else default_home()).resolve()).ensure()
        self.workflow = load_workflow(workflow) if isinstance(workflow, str) else workflow or load_workflow("fold")
        self._tasks = workloads.tasks_module(self.workflow)
        self.wait_scale = wait_scale
        self.injector = injector
        self.on_event = on_event  # called with event_dict(...) of each history event
        self.job_env = job_env or {}
        self.limits = limits or FastaLimits()
        self.grace = grace  # seconds between TERM and KILL of a job's process group
        self._definition = dumps(render_definition(self.workflow))
        self._drives: dict[str, Drive] = {}
        self._lock = threading.RLock()

    def home_description(self) -> str:
        return home_description(self._home_arg)

    # -- configuration the engine needs -------------------------------------------------
    def parse_request(self, raw: Any) -> Any:
        """A recorded request as this workflow's request model."""
        return workloads.parse_request(self.workflow, self._tasks, raw)

    def lambda_env(self, output_uri: str) -> dict[str, str]:
        classes = workloads.lambda_size_classes(self.workflow)
        return {
            "FOLDSTACK_SCRATCH_ROOT": str(self.paths.scratch),
            "FOLDSTACK_CACHE_ROOT": str(self.paths.cache),  # <home>/cache/msa/..., <home>/cache/cryoem/...
            "FOLDSTACK_DB_ROOT": str(self.paths.db),
            "FOLDSTACK_ALLOWED_INPUT_PREFIXES": str(self.paths.inputs),
            "FOLDSTACK_ALLOWED_OUTPUT_PREFIXES": output_uri,
            "FOLDSTACK_SIZE_CLASSES": json.dumps(classes),
            "FOLDSTACK_LIMITS": self.limits.model_dump_json(),
        }

    def placeholders(self) -> dict[str, str]:
        from foldstack.local.placeholders import local_values

        return local_values(
            self.workflow.directory / "jobs.yaml",
            scratch_mount=str(self.paths.scratch), db_mount=str(self.paths.db),
            weights_dir=str(self.paths.weights),
        )

    # -- submission ---------------------------------------------------------------------
    def prepare(self, request: RunRequest) -> tuple[RunRequest, list[str], str]:
        """Check paths, validate exactly as Validate Input will, then copy local inputs
        under the input prefix. Returns (request as submitted, target ids, run id)."""
        sub = self._prepare(request)
        return sub.request, [t.id for t in sub.targets], sub.run_id

    def _prepare(self, request: RunRequest) -> Submission:
        raw = request.output_uri
        output = Path(parse_uri(raw if raw.startswith("file://") else os.path.expanduser(raw)).key).resolve()
        check_output(output, self.paths)  # before anything is read or written
        if self._tasks is not None:  # another workload: its own submission
            submitted, run_id, items = self._tasks.prepare_local(request, output=output, inputs_dir=self.paths.inputs)
            return Submission(submitted, [], run_id, tuple(items))
        files = read_inputs(request.inputs, self.limits.max_bytes)
        by_path = {f.path: f for f in files}

        def reader(uri: str, max_bytes: int) -> bytes:
            file = by_path.get(uri)
            if file is None:
                raise InputValidationError(f"input {uri} is not a local file", code="input_not_found")
            if len(file.data) > max_bytes:
                raise InputValidationError(f"file is larger than {max_bytes} bytes", code="too_large", source=uri,
                                           hint="split it into several requests")
            return file.data

        spelled = request.model_copy(update={
            "inputs": tuple(local_path(i) if is_local(i) else i for i in request.inputs),  # type: ignore[arg-type]
            "output_uri": str(output)})
        allowed = tuple(sorted({str(Path(f.path).parent) for f in files})) or (str(self.paths.inputs),)
        _, _, targets, run_id = validate_run(
            spelled, allowed_input_prefixes=allowed, allowed_output_prefixes=(str(output),),
            size_classes=self.workflow.jobs.size_classes, limits=self.limits, reader=reader,
        )
        store_inputs(files, self.paths.inputs)
        inputs = tuple(str(copy_path(self.paths.inputs, by_path[local_path(i)])) if is_local(i) else i
                       for i in request.inputs)  # type: ignore[arg-type]
        return Submission(request.model_copy(update={"inputs": inputs, "output_uri": str(output)}), targets, run_id)

    def submit(self, request: RunRequest, *, force: bool = False, detach: bool = False,
               rerun: bool = False) -> LocalRun:
        """Start the run, attach to it, or return it (see the module docstring).

        `detach`: the run is driven by a new background process (it outlives this one;
        `wait`/`describe` from any process follow it); otherwise by this process, on
        threads (SIGINT/SIGTERM stop it cleanly). `force`: start again even if it
        SUCCEEDED (a run driven elsewhere is still only attached to). `rerun`: a fresh
        attempt that recomputes every target (finished work discarded, published results
        withdrawn); `[run_running]` while the run runs."""
        sub = self._prepare(request)
        return self._launch(sub, "rerun" if rerun else "submit", force=force, detach=detach)

    def retry(self, run_id: str, *, detach: bool = False) -> LocalRun:
        """The next attempt of a FAILED, ABORTED, TIMED_OUT or partial run: a new execution
        (``<run_id>-a<N>``) that reuses every finished target and recomputes the rest.
        `[run_running]` while it runs, `[nothing_to_retry]` after a full success."""
        record = self.describe(run_id)
        self._check_retry(run_id, record)
        sub = self._prepare(self.parse_request(record["request"]))  # its inputs, copied under the home
        if sub.run_id != run_id:
            raise RunStateConflict(f"run {run_id}: its inputs changed since it ran (they now make run "
                                   f"{sub.run_id})", code="nothing_to_retry", run_id=run_id)
        return self._launch(sub, "retry", detach=detach)

    @staticmethod
    def _check_retry(run_id: str, record: dict[str, Any] | None) -> None:
        status = (record or {}).get("status")
        if status == "RUNNING":
            raise RunStateConflict(f"run {run_id} is running: wait for it or cancel it first", code="run_running",
                                   run_id=run_id, status=status)
        partial = execution_outcome((record or {}).get("result")) == "partial"  # failures within the budget
        if (status not in RETRYABLE and not partial) or not (record or {}).get("request"):
            how = "submit it with --rerun to compute it again" if status == "SUCCEEDED" else "submit it again"
            raise RunStateConflict(f"run {run_id} is {status}: there is nothing to retry", code="nothing_to_retry",
                                   run_id=run_id, status=status, hint=how)

    def _launch(self, sub: Submission, intent: str, *, force: bool = False, detach: bool = False) -> LocalRun:
        """Start (or for a plain submit, attach to or return) `sub`'s run under its lock.
        `intent`: ``submit`` (the module docstring's rules), ``retry`` or ``rerun``."""
        if detach and (self.injector is not None or self.on_event is not None):
            raise ValueError("a detached run cannot use an in-process injector or on_event callback")
        run = LocalRun(sub.run_id, self, sub.request, sub.items or self._batch_layout(sub.targets) or
                       tuple(t.id for t in sub.targets))
        plain = intent == "submit"
        with self._lock:
            mine = self._drives.get(run.run_id)
            if plain and mine is not None and not force and mine.final_status not in ("ABORTED", "TIMED_OUT"):
                return replace(mine.run, existed=True)  # the same request again, from this runner
            deadline = time.monotonic() + ATTACH_WAIT_S
            while True:
                record = self._fresh(run.run_id)
                if plain and record is not None and record["status"] == "SUCCEEDED" and not force:
                    return replace(run, existed=True)
                lock = RunLock(self.paths.lock(run.run_id))
                if lock.try_acquire():
                    try:
                        record = self._read_locked(run.run_id)
                        if plain and record is not None and record["status"] == "SUCCEEDED" and not force:
                            lock.release()
                            return replace(run, existed=True)
                        if intent == "retry":
                            self._check_retry(run.run_id, record)
                        discarded = discard(self.paths, self.lambda_env(run.request.output_uri), run.run_id,
                                            run.request.output_uri) if intent == "rerun" else None
                        if detach:
                            self._spawn(run, lock, record, intent, discarded)
                        else:
                            self._start(run, lock, record, intent=intent, discarded=discarded)
                    except BaseException:
                        lock.release()
                        raise
                    return run
                # another process (or runner) holds the lock: it is starting or driving the run
                if not plain:
                    raise RunStateConflict(f"run {run.run_id} is running: wait for it or cancel it first",
                                           code="run_running", run_id=run.run_id)
                if record is not None and record["status"] == "RUNNING" or time.monotonic() >= deadline:
                    return replace(run, existed=True)
                time.sleep(0.05)

    def _batch_layout(self, targets: list[Target]) -> tuple[tuple[str, ...], ...]:
        """The fold workflow's Map layout (Plan Batches' batches, computed the same way),
        so history events can name their target."""
        from foldstack.tasks.plan import plan_batches

        if self._tasks is not None:
            return ()
        knobs = self.workflow.knobs.get("batching") or {}
        threshold = (self.workflow.knobs.get("bulk") or {}).get("threshold_targets", 0)
        if "max_targets_per_job" not in knobs or threshold < 1 or len(targets) > threshold:
            return ()  # (above the threshold: a Distributed Map, whose children's events are not here)
        batches = plan_batches([t.model_dump() for t in targets], list(self.workflow.jobs.size_classes),
                               int(knobs["max_targets_per_job"]))
        return tuple(tuple(t["id"] for t in b["targets"]) for b in batches)

    def _record_for(self, run: LocalRun, previous: dict[str, Any] | None, *, detached: bool,
                    intent: str = "submit", discarded: dict[str, Any] | None = None) -> dict[str, Any]:
        if previous is not None and previous.get("status") == UNKNOWN:
            previous = {"status": UNKNOWN, "cause": previous.get("cause")}
        record = new_record(run.run_id, run.request.model_dump(mode="json"), str(run.output),
                            DriverIdentity.current().to_dict(), previous, detached=detached)
        return {**record, "trigger": intent, "workflow": self.workflow.name,
                **({"discarded": discarded} if discarded is not None else {})}

    def _start(self, run: LocalRun, lock: RunLock | None = None, previous: dict[str, Any] | None = None,
               record: dict[str, Any] | None = None, *, intent: str = "submit",
               discarded: dict[str, Any] | None = None) -> None:
        """Drive `run` in this process (the lock is held)."""
        assert lock is not None and lock.held
        drive = Drive(self, run, lock)
        self._drives[run.run_id] = drive
        try:
            drive.start(record or self._record_for(run, previous, detached=False, intent=intent, discarded=discarded))
        except BaseException:
            self._drives.pop(run.run_id, None)
            raise
        run._drive = drive

    def _spawn(self, run: LocalRun, lock: RunLock, previous: dict[str, Any] | None, intent: str = "submit",
               discarded: dict[str, Any] | None = None) -> None:
        """Hand `run` to a new background driver process, which inherits the held lock."""
        assert lock.fd is not None
        record = self._record_for(run, previous, detached=True, intent=intent, discarded=discarded)
        spec = {"record": record, "request": run.request.model_dump(mode="json"),
                "target_ids": [list(t) if isinstance(t, tuple) else t for t in run.target_ids],
                "workflow": str(self.workflow.directory), "wait_scale": self.wait_scale,
                "job_env": self.job_env, "limits": self.limits.model_dump(mode="json"), "grace": self.grace}
        write_record(self.paths.driver_spec(run.run_id), spec)
        write_record(self.paths.record(run.run_id), record)  # RUNNING from now on (the lock is held)
        log = self.paths.driver_log(run.run_id).open("ab")
        try:
            proc = subprocess.Popen(  # noqa: S603 - our own module, no shell
                [sys.executable, "-m", "foldstack.local", "drive", str(self.paths.home), run.run_id, str(lock.fd)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                pass_fds=(lock.fd,), cwd=str(self.paths.home),
            )
        except OSError as exc:
            write_record(self.paths.record(run.run_id), {**record, "status": "FAILED", "stopped_at": now(),
                                                         "error": "DriverError", "cause": str(exc)})
            raise DriverError(f"could not start the background driver: {exc}") from None
        finally:
            log.close()
        lock.release()  # the driver holds it now (the same open lock)
        # reap it when it exits, so it leaves no zombie while this process lives on
        threading.Thread(target=proc.wait, name=f"foldstack-detached-{run.run_id}", daemon=True).start()

    # -- reading runs -------------------------------------------------------------------
    def _fresh(self, run_id: str) -> dict[str, Any] | None:
        """The record, after recording a run nobody drives any more as ABORTED."""
        path = self.paths.record(run_id)
        try:
            record = read_record(path)
        except CorruptRecord as exc:
            return unknown_record(run_id, exc.message)
        if record is None or record["status"] != "RUNNING":
            return record
        drive = self._drives.get(run_id)
        if drive is not None and not drive.finished:
            return record  # driven here
        if drive is not None and drive.final_status is not None and drive.record.get("execution") == \
                record.get("execution"):
            with contextlib.suppress(OSError):  # driven here, but its end could not be written: now
                write_record(self.paths.record(run_id), drive.record)
            return drive.record
        lock = RunLock(self.paths.lock(run_id))
        if not lock.try_acquire():
            return record  # driven (or being cleaned up) by another process or runner
        try:
            return self._read_locked(run_id)
        finally:
            lock.release()

    def _read_locked(self, run_id: str) -> dict[str, Any] | None:
        """The record, read while holding the lock: RUNNING means nobody drives it."""
        try:
            record = read_record(self.paths.record(run_id))
        except CorruptRecord as exc:
            return unknown_record(run_id, exc.message)
        if record is not None and record["status"] == "RUNNING":
            record = reap(self, run_id, record)
        return record

    def describe(self, run_id: str) -> dict[str, Any]:
        """The run's record (status ``UNKNOWN`` with the reason if it is corrupt)."""
        record = self._fresh(run_id)
        if record is None:
            raise LocalRunNotFound(f"no local run {run_id!r} under {self.paths.home}", run_id=run_id)
        return record

    def list_runs(self) -> list[dict[str, Any]]:
        """Every recorded run (a corrupt record is listed as UNKNOWN, the others as usual)."""
        runs = []
        for path in sorted(self.paths.runs.glob("*/run.json")):
            try:
                record = self._fresh(path.parent.name)
            except Exception as exc:  # noqa: BLE001 - one bad run never hides the others
                record = unknown_record(path.parent.name, f"{type(exc).__name__}: {exc}")
            if record is not None:
                runs.append(record)
        return runs

    def history(self, run_id: str) -> list[Any]:
        """History events: the engine's own while this process drives the run, else what
        the driver wrote as it went (events.jsonl), else the record's summary."""
        drive = self._drives.get(run_id)
        if drive is not None and drive.execution is not None:
            return list(drive.execution.history())
        events = read_events(self.paths.events(run_id))
        if events:
            return events
        try:
            record = read_record(self.paths.record(run_id)) or {}
        except CorruptRecord:
            record = {}
        return [e for e in record.get("history") or [] if isinstance(e, dict)]

    def attach(self, run_id: str) -> LocalRun:
        """A handle on a recorded run (to wait for, follow or cancel)."""
        record = self.describe(run_id)
        drive = self._drives.get(run_id)
        if drive is not None:
            return replace(drive.run, existed=True)
        request = self.parse_request(record["request"]) if record.get("request") else None
        if request is None:
            raise LocalRunNotFound(f"local run {run_id!r} has no usable record", run_id=run_id)
        return LocalRun(run_id, self, request, existed=True)

    def cancel(self, run_id: str, reason: str = "cancelled by the user", *, timeout: float = CANCEL_WAIT_S) -> str:
        """Stop a run wherever it is driven (it is cleaned up and recorded ABORTED);
        returns its status (a finished run is left as it is)."""
        drive = self._drives.get(run_id)
        if drive is not None and not drive.finished:
            drive.cancel(reason)
            drive.wait(timeout)
            return self.describe(run_id)["status"]
        record = self.describe(run_id)
        if record["status"] != "RUNNING":
            return record["status"]
        write_record(self.paths.cancel(run_id), {"reason": reason, "at": now()})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.describe(run_id)["status"]
            if status != "RUNNING":
                return status
            time.sleep(0.1)
        return self.describe(run_id)["status"]
