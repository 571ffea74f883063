"""Local mode: the fold workflow on one machine (the local engine, and the durable runner
around it).

The engine: moto's vendored ASL interpreter runs the definition (the ``moto_*`` modules,
fronted by ``moto_adapter``, own every private moto import; ``moto_names`` lists them);
Lambda tasks call ``lambdas/<name>/handler.py`` in-process; Batch tasks run the
``jobs.yaml`` command as subprocesses with Batch's retry semantics.

The runner: ``runner`` (LocalRunner, LocalRun: submit, attach, follow, cancel),
``execution`` (one execution driven by this process), ``driver`` (driver identity, run
locks, job process groups, signals), ``records`` (run records), ``inputs`` (local input
files), ``paths`` (FOLDSTACK_HOME and its layout); ``python -m foldstack.local drive``
is the detached driver (``__main__``).

Public API::

    LocalRunner(home=None, *, workflow=None, wait_scale=0.0, injector=None, on_event=None,
                job_env=None, limits=None, grace=5.0)
    runner.submit(request, *, force=False, detach=False, rerun=False) -> LocalRun
    runner.retry(run_id, *, detach=False) -> LocalRun   (the next attempt, <run_id>-a<N>)
    runner.prepare(request) / describe(run_id) / list_runs() / history(run_id)
    runner.attach(run_id) -> LocalRun      runner.cancel(run_id, reason) -> status
    LocalRun: .run_id .status .record() .wait(timeout=None) .history() .cancel() .existed
    default_home() / home_description(home=None)

    LocalEngine(definition, *, jobs_yaml, lambdas_dir=None, lambda_env=None, job_env=None,
                placeholders=None, log_dir=None, wait_scale=0.0, poll_interval=0.05,
                injector=None, s3_root=None, on_event=None, state_machine_name=None,
                job_groups=None, task_log=None)
    engine.start_execution(name, input, *, on_event=None) -> LocalExecution
    engine.get_execution(name) / list_executions() / stop_execution(name, error=, cause=)
    LocalExecution: .status .output .error .cause .start_date .stop_date .runtime_errors
                    .wait(timeout=None, raise_on_runtime_error=True) -> status
                    .history() -> [HistoryEvent]  .positions()  .batch_jobs()  .describe()
    placeholders.local_values(jobs_yaml, scratch_mount=, db_mount=, weights_dir=, extra=)
    placeholders.substitute(definition, values)

Names are imported on first use: reading or validating runs does not load the
interpreter (moto), so a rejected submission answers at once.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BatchJobInfo": "batch",
    "HistoryEvent": "engine",
    "Injector": "engine",
    "LocalEngine": "engine",
    "LocalExecution": "engine",
    "DefinitionError": "errors",
    "ExecutionAlreadyExists": "errors",
    "ExecutionDoesNotExist": "errors",
    "LocalEngineError": "errors",
    "PlaceholderError": "errors",
    "StatesRuntimeError": "errors",
    "LocalRunNotFound": "errors",
    "find_placeholders": "placeholders",
    "local_values": "placeholders",
    "substitute": "placeholders",
    "LocalPaths": "paths",
    "default_home": "paths",
    "home_description": "paths",
    "LocalRun": "runner",
    "LocalRunner": "runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
