"""What the replaced moto components share: the engine's hooks and how a frame finds them.

The engine's side is the :class:`EngineHooks` protocol (implemented in ``engine.py``).
:class:`HookedExecutionDetails` is the ``AWSExecutionDetails`` every execution of the
local engine is built with; moto passes that object by reference into every frame (Map
iterations, Parallel branches, task timeouts), so :func:`hooks_of` and :func:`run_of`
find the engine and the running execution (:class:`ExecutionRun`) from any ``Environment``.
"""

from __future__ import annotations

from typing import Any, Protocol

from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.evaluation_details import AWSExecutionDetails

ACCOUNT_ID = "000000000000"
REGION = "us-east-1"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/foldstack-local-states"

STATES_RUNTIME = StatesErrorNameType.StatesRuntime.to_name()
CANCELLED = "Local.FrameCancelled"  # internal: failure of a state whose frame was already stopped


class BatchJobHandle(Protocol):
    """What the adapter needs from a submitted Batch job."""

    job_id: str
    job_name: str
    job_arn: str

    def done(self) -> bool: ...

    def wait(self, timeout: float) -> bool: ...

    def describe(self) -> dict[str, Any]: ...

    def terminate(self, reason: str) -> None: ...


class EngineHooks(Protocol):
    """What the engine provides to the interpreter (implemented in ``engine.py``)."""

    wait_scale: float
    poll_interval: float

    def invoke_lambda(self, function_name: str, payload: Any) -> Any:
        """Return the handler's (JSON-able) result or raise LambdaInvocationError."""
        ...

    def submit_batch_job(self, parameters: dict[str, Any], *, state_name: str) -> BatchJobHandle:
        """Start a job (raise BatchApiError to fail the submit call)."""
        ...

    def read_s3_object(self, bucket: str, key: str) -> str: ...

    def list_s3_objects(self, bucket: str, prefix: str) -> list[dict[str, Any]]: ...

    def on_history_event(self, event: dict[str, Any]) -> None: ...


class ExecutionRun(Protocol):
    """What the replaced components need from the running execution
    (``moto_adapter.MotoRun``; typed here so that no module imports the front)."""

    _batch_handles: dict[str, BatchJobHandle]

    def _note_runtime_error(self, cause: str) -> None: ...

    def _report_event(self, event: dict[str, Any]) -> None: ...


class HookedExecutionDetails(AWSExecutionDetails):
    """AWSExecutionDetails that carries the engine hooks into every frame."""

    def __init__(self, hooks: EngineHooks, run: ExecutionRun):
        super().__init__(account=ACCOUNT_ID, region=REGION, role_arn=ROLE_ARN)
        self.foldstack_hooks = hooks
        self.foldstack_run = run


def hooks_of(env: Environment) -> EngineHooks | None:
    details = getattr(env, "aws_execution_details", None)
    return getattr(details, "foldstack_hooks", None)


def run_of(env: Environment) -> ExecutionRun | None:
    details = getattr(env, "aws_execution_details", None)
    return getattr(details, "foldstack_run", None)


def state_name_of(env: Environment) -> str:
    try:
        return env.states.context_object.context_object_data["State"]["Name"]
    except (KeyError, TypeError):
        return ""


class EngineInternalError(Exception):
    """An unexpected exception in the engine's own integration code: States.Runtime."""
