"""One execution of a local run, driven by this process (:class:`Drive`), and the cleanup
of a run that stopped before its workflow could clean up after itself (:func:`clean_up`).

A drive holds the run's lock (:class:`foldstack.local.driver.RunLock`) from before the
RUNNING record is written until after the terminal one is. While it runs, history
events go to ``events.jsonl``, job process groups to ``procs/``, the Lambda tasks' log
lines to ``logs/tasks.log``; a ``cancel.json`` in the run dir (written by
``LocalRunner.cancel`` from any process) stops it. However it ends:

* nothing it started outlives it: recorded job process groups still alive are killed;
* stopped (a signal, a cancel, the process exiting) or timed out, the workflow's
  Cleanup never ran: :func:`clean_up` keeps finished MSAs in the MSA cache, then runs
  Cleanup (scratch, and any unfinished results, removed) before ABORTED is recorded;
* the terminal record is written with bounded retries (a full disk may free up).
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from foldstack.core.manifest import execution_outcome
from foldstack.core.runid import execution_name
from foldstack.local import driver
from foldstack.local.errors import HomeNotWritable
from foldstack.local.lambdas import ENVIRON_LOCK, task_log_to
from foldstack.local.paths import LocalPaths
from foldstack.local.records import EventLog, event_dict, now, write_record, write_terminal

STOP_STATUSES = frozenset({"ABORTED", "TIMED_OUT"})


def clean_up(paths: LocalPaths, lambda_env: Mapping[str, str], run_id: str, request: Any, *,
             failed: bool = True) -> dict[str, Any]:
    """Keep what finished, then clean up as the workflow's Cleanup does.

    Each target whose MSA finished (``msa/<target>/msa.done.json``) and was looked up in
    the MSA cache is stored in the cache (the fill Collect Outputs does), so running
    the same request again finds it there and does not recompute it. Then the run's
    scratch is deleted (on a failure, all but the finished targets' step outputs, which the
    next attempt reuses: :func:`foldstack.tasks.cleanup.cleanup`) and, if `failed`,
    unfinished results under ``<output>/<run_id>/``."""
    from foldstack.tasks.cleanup import cleanup
    from foldstack.tasks.msa_cache import fill
    from foldstack.tasks.settings import TaskSettings

    settings = TaskSettings.from_env(lambda_env)
    scratch = paths.scratch / run_id
    finished = [p.parent.name for p in sorted((scratch / "msa").glob("*/msa.done.json"))]
    targets = [{"id": t} for t in finished if (scratch / "cache" / f"{t}.json").is_file()]
    with ENVIRON_LOCK, task_log_to(paths.tasks_log(run_id)):
        kept = fill(settings, run_id, targets) if targets and failed else {}
        result = cleanup(settings, run_id, request, failed=failed)
    return {"msa_cached": kept.get("stored", 0), "scratch_deleted": result["scratch_deleted"],
            "partial_outputs_deleted": result["partial_outputs_deleted"],
            "kept_targets": result.get("kept_targets", 0)}


def discard(paths: LocalPaths, lambda_env: Mapping[str, str], run_id: str, output: str | None) -> dict[str, Any]:
    """Before a rerun: forget the run's finished work. Its whole scratch goes (the kept
    step outputs of earlier attempts) and its published results are withdrawn
    (``manifest.json`` first, so nobody reads a half-deleted run), so the new execution
    recomputes every target and publishes afresh."""
    from foldstack import storage
    from foldstack.tasks.cleanup import cleanup
    from foldstack.tasks.settings import TaskSettings

    with ENVIRON_LOCK, task_log_to(paths.tasks_log(run_id)):
        result = cleanup(TaskSettings.from_env(lambda_env), run_id, None, failed=False)
    withdrawn = 0
    if output:
        published = Path(output) / run_id
        if (published / "manifest.json").is_file():
            storage.delete(str(published / "manifest.json"))
            withdrawn = 1
        if published.is_dir() and not published.is_symlink():  # and targets a failed attempt published
            withdrawn += storage.delete_prefix(str(published))
    return {"scratch_deleted": result["scratch_deleted"], "results_withdrawn": withdrawn}


def reap(runner: Any, run_id: str, record: dict[str, Any]) -> dict[str, Any]:
    """A run whose driver is gone (`runner` holds its lock): kill its orphaned jobs, keep
    finished work (:func:`clean_up`), and record it ABORTED (or SUCCEEDED if its results
    were published before the driver went)."""
    paths = runner.paths
    killed = driver.JobGroups(paths.procs(run_id), grace=runner.grace).kill_all()
    identity = driver.DriverIdentity.from_record(record.get("driver"))
    gone = identity is None or not identity.alive()
    request = record.get("request") or {}
    output = record.get("output")
    published = bool(output) and (Path(str(output)) / "manifest.json").is_file() \
        and execution_outcome((Path(str(output)) / "manifest.json").read_text()) != "failed"  # not over budget
    cleanup: dict[str, Any] = {"killed_groups": killed}
    try:
        cleanup.update(clean_up(paths, runner.lambda_env(str(request.get("output_uri") or "")), run_id,
                                request, failed=not published))
    except Exception as exc:  # noqa: BLE001 - recorded; the scratch stays for a later run
        cleanup["error"] = f"{type(exc).__name__}: {exc}"
    who = f"pid {identity.pid}" if identity else "unknown"
    cause = (f"interrupted: driver exited ({who})" if gone
             else f"interrupted: driver ({who}) stopped driving it")
    reaped = {**record, "stopped_at": now(), "cleanup": cleanup,
              **({"status": "SUCCEEDED", "note": f"results published before the driver stopped; {cause}"}
                 if published else {"status": "ABORTED", "error": "Interrupted", "cause": cause})}
    with contextlib.suppress(OSError):  # still reported as such; the next reader tries again
        write_record(paths.record(run_id), reaped)
    return reaped


class Drive:
    """One execution of `run`, in this process, under `lock` (already held)."""

    def __init__(self, runner: Any, run: Any, lock: driver.RunLock) -> None:
        # runner: the LocalRunner (its workflow, environment, home); run: the LocalRun
        self.runner, self.run, self.lock = runner, run, lock
        self.run_id = run.run_id
        self.paths = runner.paths
        self.execution: Any = None
        self.record: dict[str, Any] = {}
        self.final_status: str | None = None
        self.groups = driver.JobGroups(self.paths.procs(self.run_id), grace=runner.grace)
        self.events = EventLog(self.paths.events(self.run_id))
        self._stop: tuple[str, str] | None = None
        self._stop_lock = threading.Lock()
        self._done = threading.Event()

    # -- starting
    def start(self, record: dict[str, Any]) -> None:
        """Write the RUNNING `record` (this process as its driver) and start the execution."""
        from foldstack.local.engine import LocalEngine

        runner, run, paths = self.runner, self.run, self.paths
        with contextlib.suppress(OSError):
            paths.cancel(self.run_id).unlink()
        self.groups.kill_all()  # anything an earlier execution left (normally reaped already)
        engine = LocalEngine(
            runner._definition,
            jobs_yaml=runner.workflow.directory / "jobs.yaml",
            lambda_env=runner.lambda_env(run.request.output_uri),
            # Local databases are never half-imported (no FSx): fail at once, not after 5 minutes.
            job_env={"HF_HUB_OFFLINE": "1", "FOLDSTACK_DB_IMPORT_RETRIES": "0", **runner.job_env},
            placeholders=runner.placeholders(),
            log_dir=paths.logs(self.run_id),
            wait_scale=runner.wait_scale,
            injector=runner.injector,
            on_event=self._on_event,
            job_groups=self.groups,
            task_log=paths.tasks_log(self.run_id),
        )
        name = execution_name(self.run_id, int(record.get("execution") or 1))  # <run_id>[-a<N>]
        self.record = {**record, "execution_name": name, "driver": driver.DriverIdentity.current().to_dict()}
        self.events.reset()
        try:
            write_record(paths.record(self.run_id), self.record)
        except OSError as exc:
            raise HomeNotWritable(f"cannot write the run record under {paths.home}: {exc.strerror or exc}; "
                                  "nothing was started") from None
        driver.register(self)
        try:
            self.execution = engine.start_execution(
                name, {"run_id": self.run_id, "request": run.request.model_dump(mode="json")})
        except BaseException:
            driver.unregister(self)
            raise
        threading.Thread(target=self._watch, name=f"foldstack-run-{self.run_id}", daemon=True).start()

    def _on_event(self, event: Any) -> None:
        self.events.append(event_dict(event, self.run.target_ids, details=True))
        if self.runner.on_event is not None:
            self.runner.on_event(event_dict(event, self.run.target_ids))

    # -- stopping
    def stop(self, error: str, cause: str) -> None:
        """Stop the execution (its jobs are terminated); the watcher then cleans up."""
        with self._stop_lock:
            if self._stop is not None or self._done.is_set():
                return
            self._stop = (error, cause)
        if self.execution is not None:
            self.execution.stop(error=error, cause=cause)

    def interrupt(self, cause: str) -> None:
        self.stop("Interrupted", cause)

    def cancel(self, reason: str) -> None:
        self.stop("Cancelled", reason)

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    # -- the watcher thread
    def _watch(self) -> None:
        try:
            cancel = self.paths.cancel(self.run_id)
            while self.execution.wait(0.2, raise_on_runtime_error=False) == "RUNNING":
                if cancel.exists():
                    self.cancel(_cancel_reason(cancel))
            self.execution.wait(None, raise_on_runtime_error=False)
            self._finish()
        except BaseException as exc:  # never leave the run RUNNING with a live lock
            self._finish(crash=f"{type(exc).__name__}: {exc}")
        finally:
            driver.unregister(self)
            self.lock.release()
            self._done.set()

    def _finish(self, crash: str | None = None) -> None:
        execution, run = self.execution, self.run
        killed = self.groups.kill_all()  # nothing the execution started may outlive it
        status = "FAILED" if crash else execution.status
        record = {**self.record, "status": status, "stopped_at": now(), "error": execution.error,
                  "cause": execution.cause, "result": execution.output,
                  "runtime_errors": execution.runtime_errors}
        if crash:
            record.update(error="LocalEngineError", cause=f"the local driver failed: {crash}")
        with contextlib.suppress(Exception):
            record["history"] = [event_dict(e, run.target_ids) for e in execution.history()]
        if status in STOP_STATUSES or crash:
            try:
                record["cleanup"] = {"killed_groups": killed, **clean_up(
                    self.paths, self.runner.lambda_env(run.request.output_uri), self.run_id,
                    run.request.model_dump(mode="json"))}
            except Exception as exc:  # noqa: BLE001 - recorded; the next run cleans its own scratch
                record["cleanup"] = {"killed_groups": killed, "error": f"{type(exc).__name__}: {exc}"}
        self.record = record
        self.final_status = status
        write_terminal(self.paths.record(self.run_id), record)
        if self._stop is not None and self._stop[0] == "Interrupted":
            kept = (record.get("cleanup") or {}).get("kept_targets", 0)
            print(f"foldstack: run {self.run_id} {self._stop[1]}: recorded ABORTED, jobs stopped, scratch "
                  f"removed{f' but {kept} finished step output(s)' if kept else ''}. To resume, run the same "
                  f"command again (or `foldstack retry {self.run_id} --env local`): finished work is reused.",
                  file=sys.stderr, flush=True)


def _cancel_reason(path: Any) -> str:
    try:
        body = json.loads(path.read_text())
        return str(body.get("reason") or "cancelled")
    except (OSError, ValueError, AttributeError):
        return "cancelled"
