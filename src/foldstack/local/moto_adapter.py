"""The front of the local engine's moto adapter: runs a parsed definition on moto's interpreter.

moto's vendored ASL interpreter (LocalStack's, Apache-2.0) is private API. Every private
import from ``moto.stepfunctions.parser`` lives in the ``moto_*`` modules of this package,
and each such name is listed in :data:`foldstack.local.moto_names.MOTO_PRIVATE_NAMES`
(checked by ``tests/workflows/test_moto_private_names.py``), so a moto upgrade is a change
to these modules plus a run of that test and ``tests/workflows/test_engine_contract.py``.
moto is pinned exactly (``moto[stepfunctions]==5.2.5``); :data:`MOTO_VERSION_TESTED`
is checked at import and a mismatch is a warning, not an error.

The modules, one concern each (``docs/architecture.md`` describes the local engine):

* ``moto_parse`` -- :func:`parse_definition`: moto's parser under a lock, then the parsed
  component tree *retyped* in place for the parts replaced below;
* ``moto_hooks`` -- the :class:`EngineHooks` protocol and the ``AWSExecutionDetails``
  subclass that carries them (and this :class:`MotoRun`) into every frame;
* ``moto_lambda`` -- Lambda tasks dispatched to the engine's in-process handlers;
* ``moto_batch`` -- ``batch:submitJob[.sync]`` served by the engine's local Batch runner;
* ``moto_map`` -- the Distributed Map's S3 ItemReader on local files and its tolerated
  failure threshold;
* ``moto_errors`` -- AWS error semantics: ``States.*`` names re-raised by Map/Parallel/Fail,
  Retry/Catch matching, ``States.Runtime``, retry intervals scaled by ``wait_scale``;
* ``moto_history`` -- event managers that annotate each history event with its state
  name and Map iteration path and report it to the engine;
* ``moto_names`` -- the list of private moto names used, and its checker.

How an execution runs without moto's backend (no ``mock_aws``, no botocore stubbing):
:class:`MotoRun` builds an ``Environment`` directly (as moto's ``ExecutionWorker`` does)
with the hooked execution details and event manager, and evaluates the program on its own
thread. Any ``States.Runtime`` event (an interpreter/engine bug, never catchable on AWS) is
recorded and fails the whole execution at once, even inside a tolerant Map.
"""

from __future__ import annotations

import datetime
import logging
import threading
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import moto
from moto.stepfunctions.parser.api import (
    ExecutionFailedEventDetails,
    ExecutionStartedEventDetails,
    HistoryEventExecutionDataDetails,
    HistoryEventType,
    StateMachineType,
)
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.eval.event.event_manager import EventHistoryContext
from moto.stepfunctions.parser.asl.eval.program_state import (
    ProgramEnded,
    ProgramError,
    ProgramStopped,
    ProgramTimedOut,
)
from moto.stepfunctions.parser.asl.eval.states import (
    ContextObjectData,
    ExecutionData,
    StateMachineData,
)
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str
from moto.stepfunctions.parser.utils import TMP_THREADS

from foldstack.local import moto_errors, moto_lambda
from foldstack.local.moto_history import HookedEventManager
from foldstack.local.moto_hooks import (
    ACCOUNT_ID,
    REGION,
    ROLE_ARN,
    STATES_RUNTIME,
    BatchJobHandle,
    EngineHooks,
    EngineInternalError,
    HookedExecutionDetails,
)
from foldstack.local.moto_parse import ParsedProgram, parse_definition

__all__ = [
    "ACCOUNT_ID",
    "MOTO_VERSION_TESTED",
    "REGION",
    "ROLE_ARN",
    "BatchJobHandle",
    "EngineHooks",
    "EngineInternalError",
    "MotoRun",
    "ParsedProgram",
    "RunResult",
    "parse_definition",
]

LOG = logging.getLogger(__name__)

# moto logs every caught task failure (with a full component dump) at WARNING/ERROR; the
# execution history carries the same information, so keep the terminal quiet.
logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)

MOTO_VERSION_TESTED = "5.2.5"
if moto.__version__ != MOTO_VERSION_TESTED:  # pragma: no cover - depends on the install
    warnings.warn(
        f"foldstack's local engine is tested against moto {MOTO_VERSION_TESTED}, found "
        f"{moto.__version__}; run tests/workflows/test_engine_contract.py",
        RuntimeWarning,
        stacklevel=2,
    )

_install_lock = threading.Lock()
_installed = False


def _install_global_patches() -> None:
    """Process-wide patches: the Lambda dispatcher (falls through to moto's own for
    executions not started here) and the Map/Parallel error-name fix (a pure bug fix)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        moto_lambda.install()
        moto_errors.install()
        _installed = True


# --------------------------------------------------------------------------- running


@dataclass
class RunResult:
    status: str  # RUNNING | SUCCEEDED | FAILED | TIMED_OUT | ABORTED
    output: Any = None
    error: str | None = None
    cause: str | None = None


class MotoRun:
    """One execution of a parsed program on its own thread."""

    def __init__(
        self,
        parsed: ParsedProgram,
        *,
        name: str,
        execution_arn: str,
        state_machine_arn: str,
        state_machine_name: str,
        input_value: Any,
        hooks: EngineHooks,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ):
        _install_global_patches()
        self.parsed = parsed
        self.name = name
        self.execution_arn = execution_arn
        self.state_machine_arn = state_machine_arn
        self.state_machine_name = state_machine_name
        self.input_value = input_value
        self.hooks = hooks
        self.start_time = datetime.datetime.now(tz=datetime.UTC)
        self.stop_time: datetime.datetime | None = None
        self._on_event = on_event
        self._batch_handles: dict[str, BatchJobHandle] = {}
        self._done = threading.Event()
        self._result = RunResult(status="RUNNING")
        self._runtime_errors: list[str] = []
        self._stop_requested: tuple[str | None, str | None] | None = None  # (error, cause) of StopExecution
        self._lock = threading.Lock()
        self._event_manager = HookedEventManager(self)
        self.env = Environment(
            aws_execution_details=HookedExecutionDetails(hooks, self),
            execution_type=StateMachineType.STANDARD,
            context=ContextObjectData(
                Execution=ExecutionData(
                    Id=execution_arn,
                    Input=input_value,
                    Name=name,
                    RoleArn=ROLE_ARN,
                    StartTime=self.start_time.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                ),
                StateMachine=StateMachineData(Id=state_machine_arn, Name=state_machine_name),
            ),
            event_history_context=EventHistoryContext.of_program_start(),
            cloud_watch_logging_session=None,
            activity_store={},
        )
        self.env.event_manager = self._event_manager
        self._thread = threading.Thread(target=self._main, name=f"foldstack-exec-{name}", daemon=True)

    # -- lifecycle
    def start(self) -> None:
        self._thread.start()

    def _main(self) -> None:
        try:
            self.env.event_manager.add_event(
                context=self.env.event_history_context,
                event_type=HistoryEventType.ExecutionStarted,
                event_details=EventDetails(
                    executionStartedEventDetails=ExecutionStartedEventDetails(
                        input=to_json_str(self.input_value),
                        inputDetails=HistoryEventExecutionDataDetails(truncated=False),
                        roleArn=ROLE_ARN,
                    )
                ),
                update_source_event_id=False,
            )
            self.parsed.program.eval(self.env)
            result = self._reflect()
        except Exception as err:  # engine bug: never leave an execution RUNNING
            if self._stop_requested is not None:
                result = self._reflect()  # see _note_runtime_error
            else:
                LOG.exception("local execution %s crashed", self.name)
                self._note_runtime_error(f"{type(err).__name__}: {err}\n{traceback.format_exc()}")
                result = RunResult(status="FAILED", error=STATES_RUNTIME, cause=str(err))
        with self._lock:
            if self._runtime_errors:
                result = RunResult(status="FAILED", error=STATES_RUNTIME, cause=self._runtime_errors[0])
            self._result = result
            self.stop_time = datetime.datetime.now(tz=datetime.UTC)
        for handle in list(self._batch_handles.values()):
            if not handle.done():
                handle.terminate("Execution ended")
        # moto appends every worker thread to a module list and never prunes it.
        TMP_THREADS[:] = [t for t in list(TMP_THREADS) if t.is_alive()]
        self._done.set()

    def _reflect(self) -> RunResult:
        if self._stop_requested is not None:
            # A stop wins over whatever moto's unwinding of in-flight states recorded.
            error, cause = self._stop_requested
            return RunResult(status="ABORTED", error=error, cause=cause)
        state = self.env.program_state()
        if isinstance(state, ProgramEnded):
            return RunResult(status="SUCCEEDED", output=self.env.states.get_input())
        if isinstance(state, ProgramStopped):
            return RunResult(status="ABORTED", error=state.error, cause=state.cause)
        if isinstance(state, ProgramError):
            err = state.error or {}
            return RunResult(status="FAILED", error=err.get("error"), cause=err.get("cause"))
        if isinstance(state, ProgramTimedOut):
            return RunResult(status="TIMED_OUT", error="States.Timeout")
        return RunResult(status="FAILED", error=STATES_RUNTIME, cause=f"unexpected program state {state!r}")

    def _note_runtime_error(self, cause: str) -> None:
        if self._stop_requested is not None:
            # After StopExecution a task still in flight ends without output and moto's
            # follow-up evaluation fails on it; that is the stop, not a definition bug.
            return
        with self._lock:
            self._runtime_errors.append(cause or "States.Runtime")
        # Fail the whole execution (also from inside a Map that tolerates failures).
        try:
            self.env.set_error(ExecutionFailedEventDetails(error=STATES_RUNTIME, cause=cause))
        except Exception:  # pragma: no cover
            LOG.exception("could not stop execution after States.Runtime")

    def _report_event(self, event: dict[str, Any]) -> None:
        try:
            self.hooks.on_history_event(event)
        except Exception:
            LOG.exception("history hook failed")
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                LOG.exception("on_event callback failed")

    def stop(self, error: str | None = None, cause: str | None = None) -> None:
        with self._lock:
            if self._result.status == "RUNNING":
                self._stop_requested = (error, cause)
        self.env.set_stop(stop_date=datetime.datetime.now(tz=datetime.UTC), cause=cause, error=error)

    def join(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    # -- results
    @property
    def result(self) -> RunResult:
        with self._lock:
            return self._result

    @property
    def runtime_errors(self) -> list[str]:
        with self._lock:
            return list(self._runtime_errors)

    def history(self) -> list[dict[str, Any]]:
        return self._event_manager.annotated()
