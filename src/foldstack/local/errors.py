"""Exceptions shared by the local engine's parts (no moto imports here).

The integration code (Lambda dispatch, Batch jobs) raises these; the moto adapter
translates them into the interpreter's own failure events, so Step Functions sees the
same error names it would see on AWS.
"""

from __future__ import annotations

import json
from typing import Any

from foldstack.core.errors import FoldstackError


class LocalEngineError(Exception):
    """Base class for errors raised by the local engine itself."""


class DefinitionError(LocalEngineError):
    """The state machine definition could not be parsed by the interpreter."""


class PlaceholderError(LocalEngineError):
    """Some `${name}` placeholders in a definition have no value."""

    def __init__(self, missing: list[str]):
        self.missing = sorted(set(missing))
        super().__init__(
            "no value for placeholder(s): "
            + ", ".join(f"${{{m}}}" for m in self.missing)
            + " (pass them in `placeholders=` / `extra=`)"
        )


class ExecutionAlreadyExists(LocalEngineError):
    """An execution with this name already exists with a different input (as on AWS)."""


class ExecutionDoesNotExist(LocalEngineError):
    """No execution with this name in this engine."""


class StatesRuntimeError(LocalEngineError):
    """The interpreter hit a `States.Runtime` error: a bug in the definition or the engine.

    On AWS `States.Runtime` can never be caught; the local engine turns it into a hard
    failure of the whole execution and raises this from `LocalExecution.wait(...,
    raise_on_runtime_error=True)`.
    """


class LambdaInvocationError(Exception):
    """A Lambda handler failed: `error_type` becomes the Step Functions error name.

    `payload` is the JSON document real Lambda returns for an unhandled error:
    {"errorMessage", "errorType", "stackTrace"}; Step Functions uses it as the Cause.
    """

    def __init__(self, error_type: str, payload: dict[str, Any]):
        self.error_type = error_type
        self.payload = payload
        super().__init__(f"{error_type}: {payload.get('errorMessage', '')}")

    @property
    def payload_json(self) -> str:
        return json.dumps(self.payload, separators=(",", ":"))


class BatchApiError(Exception):
    """An AWS Batch API call failed (Step Functions error `Batch.<code>`)."""

    def __init__(self, code: str, message: str, status_code: int = 400):
        self.code = code
        self.message = message
        self.status_code = status_code
        super().__init__(f"Batch.{code}: {message}")


class BatchJobFailed(Exception):
    """A `.sync` Batch job ended FAILED: Step Functions error `States.TaskFailed`,
    with the job description (PascalCase) as the Cause."""

    def __init__(self, description: dict[str, Any]):
        self.description = description
        super().__init__(description.get("StatusReason", "job failed"))


# --------------------------------------------------------------------------- local runs


class LocalRunNotFound(FoldstackError):
    """No run record with this id under the local home."""

    code = "run_not_found"


class CorruptRecord(FoldstackError):
    """A run record that is not a JSON object with a status (reported for that run only)."""

    code = "corrupt_record"


class HomeNotWritable(FoldstackError):
    """The run record could not be written under FOLDSTACK_HOME (e.g. the disk is full);
    nothing was started."""

    code = "home_not_writable"


class DriverError(FoldstackError):
    """The detached driver process could not be started."""

    code = "driver_failed"


class RunStateConflict(FoldstackError):
    """The run is not in a state that allows what was asked: ``run_running`` (retry or
    rerun of a run that is running) or ``nothing_to_retry`` (retry of a run that
    succeeded, or that has no usable record); nothing was started."""

    code = "run_state"
