"""The local engine: a rendered Step Functions definition run on one machine.

moto's vendored ASL interpreter runs the definition (the ``moto_*`` modules, fronted by
``moto_adapter``, own every private moto import; ``moto_names`` lists them); Lambda tasks
call ``lambdas/<name>/handler.py`` in-process; Batch tasks run the ``jobs.yaml`` command as
subprocesses with Batch's retry semantics.

Public API::

    LocalEngine(definition, *, jobs_yaml, lambdas_dir=None, lambda_env=None, job_env=None,
                placeholders=None, log_dir=None, wait_scale=0.0, poll_interval=0.05,
                injector=None, s3_root=None, on_event=None, state_machine_name=None)
    engine.start_execution(name, input, *, on_event=None) -> LocalExecution
    engine.get_execution(name) / list_executions() / stop_execution(name, error=, cause=)
    LocalExecution: .status .output .error .cause .start_date .stop_date .runtime_errors
                    .wait(timeout=None, raise_on_runtime_error=True) -> status
                    .history() -> [HistoryEvent]  .positions()  .batch_jobs()  .describe()
    placeholders.local_values(jobs_yaml, scratch_mount=, db_mount=, weights_dir=, extra=)
    placeholders.substitute(definition, values)
"""

from foldstack.local.batch import BatchJobInfo
from foldstack.local.engine import HistoryEvent, Injector, LocalEngine, LocalExecution
from foldstack.local.errors import (
    DefinitionError,
    ExecutionAlreadyExists,
    ExecutionDoesNotExist,
    LocalEngineError,
    PlaceholderError,
    StatesRuntimeError,
)
from foldstack.local.placeholders import find_placeholders, local_values, substitute

__all__ = [
    "BatchJobInfo",
    "DefinitionError",
    "ExecutionAlreadyExists",
    "ExecutionDoesNotExist",
    "HistoryEvent",
    "Injector",
    "LocalEngine",
    "LocalEngineError",
    "LocalExecution",
    "PlaceholderError",
    "StatesRuntimeError",
    "find_placeholders",
    "local_values",
    "substitute",
]
