"""The one place that touches moto's vendored ASL interpreter (LocalStack's, Apache-2.0).

Every private import from ``moto.stepfunctions.parser`` lives in this module, so a moto
upgrade is a change to this file plus a run of ``tests/workflows/test_engine_contract.py``.
moto is pinned exactly (``moto[stepfunctions]==5.2.5``); :data:`MOTO_VERSION_TESTED`
is checked at import and a mismatch is a warning, not an error.

How an execution runs without moto's backend (no ``mock_aws``, no botocore stubbing):

* :func:`parse_definition` builds the program with ``AmazonStateLanguageParser`` under a
  lock, clearing the preprocessor's per-scope query-language stack, which moto keeps in
  a class attribute (bug: it leaks between parses). The parsed component tree is then
  *retyped* in place (``obj.__class__ = LocalSubclass``) for the parts we replace:

  - ``StateTaskServiceBatch`` -> :class:`_LocalBatchTask`: ``submitJob`` and its
    ``.sync`` resolver call the engine's Batch runner instead of boto3 (moto's own Batch
    backend can't serve ``submitJob.sync``: parameters are not normalised);
  - the Distributed Map ``ItemReader`` S3 reader -> :class:`_LocalItemReaderS3`, which
    asks the engine to resolve ``Bucket``/``Key`` to a local file;
  - ``ErrorEqualsDecl`` -> :class:`_StrictErrorEquals`: ``States.ALL`` and
    ``States.TaskFailed`` never match ``States.Runtime`` (moto's Catch catches it;
    AWS never does), nor does ``States.ALL`` match ``States.DataLimitExceeded``;
  - each Retrier's ``JitterStrategyDecl`` -> :class:`_ScaledJitter`, which multiplies
    the computed retry interval by the engine's ``wait_scale`` (moto really sleeps).

* The Lambda invoke helper ``lambda_eval_utils.execute_lambda_function_integration``
  (used by both ``arn:aws:states:::lambda:invoke`` and plain Lambda ARNs) is replaced
  once, process-wide, by a dispatcher: executions started by this adapter go to the
  engine's in-process handler; anything else falls through to moto's original.

* An ``Environment`` is built directly (as moto's ``ExecutionWorker`` does) with an
  ``AWSExecutionDetails`` subclass that carries the engine's hooks; moto passes that
  object by reference into every frame (Map iterations, Parallel branches, task
  timeouts), which is how the replaced components find their engine. Its event manager
  is a subclass that annotates each history event with its state name and Map
  iteration path and reports it to the engine.

* Any ``States.Runtime`` event (an interpreter/engine bug, never catchable on AWS) is
  recorded and fails the whole execution at once, even inside a tolerant Map.

Private names used (keep in sync on upgrade): see ``_PRIVATE_API`` below.
"""

from __future__ import annotations

import datetime
import json
import logging
import threading
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import moto
from botocore.exceptions import ClientError
from moto.stepfunctions.parser.api import (
    ExecutionFailedEventDetails,
    ExecutionStartedEventDetails,
    HistoryEventExecutionDataDetails,
    HistoryEventType,
    MapRunFailedEventDetails,
    StateMachineType,
    TaskFailedEventDetails,
)
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import (
    CustomErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import (
    ErrorEqualsDecl,
)
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
    StatesErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.common.retry.jitter_strategy_decl import (
    JitterStrategyDecl,
)
from moto.stepfunctions.parser.asl.component.common.retry.retrier_decl import RetrierDecl
from moto.stepfunctions.parser.asl.component.program.program import Program
from moto.stepfunctions.parser.asl.component.state.exec.execute_state import ExecutionState
from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval.resource_eval_s3 import (
    ResourceEvalS3,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
    iteration_worker as _iteration_worker_module,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor.distributed_item_processor import (  # noqa: E501
    DistributedItemProcessor,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.iterator.distributed_iterator import (
    DistributedIterator,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_parallel import (
    branches_decl as _branches_decl_module,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
    StateTaskService,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_batch import (
    StateTaskServiceBatch,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_lambda import (
    StateTaskServiceLambda,
)
from moto.stepfunctions.parser.asl.component.state.fail import state_fail as _state_fail_module
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.evaluation_details import AWSExecutionDetails
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.eval.event.event_manager import (
    EventHistoryContext,
    EventManager,
)
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
from moto.stepfunctions.parser.asl.parse.asl_parser import (
    AmazonStateLanguageParser,
    ASLParserException,
)
from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str
from moto.stepfunctions.parser.asl.utils.json_path import NoSuchJsonPathError
from moto.stepfunctions.parser.utils import TMP_THREADS

from foldstack.local.errors import (
    BatchApiError,
    DefinitionError,
    LambdaInvocationError,
)

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

#: Private moto names this module relies on (documentation for upgrades).
_PRIVATE_API = (
    "parse.asl_parser.AmazonStateLanguageParser.parse",
    "parse.preprocessor.Preprocessor._query_language_per_scope (class attribute)",
    "eval.environment.Environment(...), .event_manager, .set_stop/.set_error, .program_state()",
    "eval.evaluation_details.AWSExecutionDetails (passed by reference to every frame)",
    "eval.event.event_manager.EventManager.add_event/_publish_history_event",
    "component.program.program.Program.eval",
    "state_task.lambda_eval_utils.execute_lambda_function_integration(env, parameters, region, "
    "state_credentials) and LambdaFunctionErrorException",
    "service.state_task_service_batch.StateTaskServiceBatch._eval_service_task / "
    "_build_sync_resolver; service_callback.StateTaskServiceCallback._eval_sync(env, "
    "sync_resolver, timeout_seconds, callback_endpoint, heartbeat_endpoint)",
    "item_reader.eval.resource_eval_s3.ResourceEvalS3.eval_resource",
    "common.error_name.error_equals_decl.ErrorEqualsDecl._eval_body",
    "common.retry.jitter_strategy_decl.JitterStrategyDecl._eval_body (last push before sleep)",
    "common.error_name.custom_error_name.CustomErrorName as bound in iteration.iteration_worker "
    "state_parallel.branches_decl and fail.state_fail (module globals replaced)",
    "state_map.iteration.{itemprocessor.distributed_item_processor.DistributedItemProcessor,"
    "iterator.distributed_iterator.DistributedIterator}._map_run(env, eval_input); "
    "eval_input.map_run_record.item_counter, .tolerated_failure_count/percentage",
    "state.exec.execute_state.ExecutionState._from_error(env, ex)",
    "utils.json_path.NoSuchJsonPathError (.json_path, .data)",
    "utils.TMP_THREADS (pruned)",
)

ACCOUNT_ID = "000000000000"
REGION = "us-east-1"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/foldstack-local-states"

_STATES_RUNTIME = StatesErrorNameType.StatesRuntime.to_name()
_CANCELLED = "Local.FrameCancelled"  # internal: failure of a state whose frame was already stopped


# --------------------------------------------------------------------------- hooks


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


class _HookedExecutionDetails(AWSExecutionDetails):
    """AWSExecutionDetails that carries the engine hooks into every frame."""

    def __init__(self, hooks: EngineHooks, run: MotoRun):
        super().__init__(account=ACCOUNT_ID, region=REGION, role_arn=ROLE_ARN)
        self.foldstack_hooks = hooks
        self.foldstack_run = run


def _hooks_of(env: Environment) -> EngineHooks | None:
    details = getattr(env, "aws_execution_details", None)
    return getattr(details, "foldstack_hooks", None)


def _run_of(env: Environment) -> MotoRun | None:
    details = getattr(env, "aws_execution_details", None)
    return getattr(details, "foldstack_run", None)


def _state_name(env: Environment) -> str:
    try:
        return env.states.context_object.context_object_data["State"]["Name"]
    except (KeyError, TypeError):
        return ""


class EngineInternalError(Exception):
    """An unexpected exception in the engine's own integration code: States.Runtime."""


# --------------------------------------------------------------------------- Lambda

_original_execute_lambda = lambda_eval_utils.execute_lambda_function_integration
_install_lock = threading.Lock()
_installed = False


def _local_execute_lambda_function_integration(
    env: Environment, parameters: dict, region: str, state_credentials: Any
) -> None:
    """Replacement for moto's Lambda invoke helper (keyword names kept as moto calls them)."""
    hooks = _hooks_of(env)
    if hooks is None:  # not one of ours: moto's own behaviour
        return _original_execute_lambda(
            env=env, parameters=parameters, region=region, state_credentials=state_credentials
        )
    payload_raw = parameters.get("Payload")
    if isinstance(payload_raw, bytes | bytearray):
        payload_raw = payload_raw.decode("utf-8")
    try:
        payload = json.loads(payload_raw) if isinstance(payload_raw, str) else payload_raw
    except json.JSONDecodeError:
        payload = payload_raw
    try:
        result = hooks.invoke_lambda(str(parameters["FunctionName"]), payload)
    except LambdaInvocationError as err:
        raise lambda_eval_utils.LambdaFunctionErrorException(
            function_error="Unhandled", payload=err.payload_json
        ) from err
    except Exception as err:
        raise EngineInternalError(f"Lambda dispatch failed: {type(err).__name__}: {err}") from err
    env.stack.append({"StatusCode": 200, "ExecutedVersion": "$LATEST", "Payload": result})


def _error_name_of(error_name: str | None):
    """Replacement for ``CustomErrorName(error_name=...)`` where moto re-raises a Map
    iteration's or Parallel branch's error, or a Fail state reports an ErrorPath value:
    moto rejects ``States.*`` names there, so a ``States.TaskFailed``/``States.Timeout``
    became ``States.Runtime``."""
    if error_name is not None and error_name.startswith("States."):
        try:
            return StatesErrorName.from_name(error_name)
        except Exception:
            named = CustomErrorName.__new__(CustomErrorName)
            named.error_name = error_name
            return named
    return CustomErrorName(error_name=error_name)


def _install_global_patches() -> None:
    """Process-wide patches: the Lambda dispatcher (falls through to moto's own for
    executions not started here) and the Map/Parallel error-name fix (a pure bug fix)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        lambda_eval_utils.execute_lambda_function_integration = _local_execute_lambda_function_integration
        _iteration_worker_module.CustomErrorName = _error_name_of
        _branches_decl_module.CustomErrorName = _error_name_of
        # A Fail state whose ErrorPath yields a States.* name (e.g. a caught States.TaskFailed)
        # hits the same rejection; AWS reports such names unchanged.
        _state_fail_module.CustomErrorName = _error_name_of
        _installed = True


# --------------------------------------------------------------------------- Batch


def _client_error(err: BatchApiError) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": err.code, "Message": err.message},
            "ResponseMetadata": {"HTTPStatusCode": err.status_code, "RequestId": "local"},
        },
        "SubmitJob",
    )


class _LocalBatchTask(StateTaskServiceBatch):
    """`batch:submitJob[.sync]` served by the engine's local Batch runner."""

    def _eval_service_task(self, env, resource_runtime_part, normalised_parameters, state_credentials):
        hooks = _hooks_of(env)
        if hooks is None:  # pragma: no cover - only our programs are retyped
            raise RuntimeError("local Batch task evaluated outside a foldstack execution")
        try:
            handle = hooks.submit_batch_job(dict(normalised_parameters), state_name=_state_name(env))
        except BatchApiError as err:
            raise _client_error(err) from err
        except Exception as err:
            raise EngineInternalError(f"Batch submit failed: {type(err).__name__}: {err}") from err
        run = _run_of(env)
        if run is not None:
            run._batch_handles[handle.job_id] = handle
        env.stack.append({"JobArn": handle.job_arn, "JobId": handle.job_id, "JobName": handle.job_name})

    def _build_sync_resolver(self, env, resource_runtime_part, normalised_parameters, state_credentials):
        submission = env.stack.pop()
        run = _run_of(env)
        handle = run._batch_handles[submission["JobId"]]

        def _sync_resolver() -> dict | None:
            if not handle.done():
                return None
            description = handle.describe()
            if description.get("Status") == "SUCCEEDED":
                return description
            raise FailureEventException(
                FailureEvent(
                    env=env,
                    error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                    event_type=HistoryEventType.TaskFailed,
                    event_details=EventDetails(
                        taskFailedEventDetails=TaskFailedEventDetails(
                            resource=self._get_sfn_resource(),
                            resourceType=self._get_sfn_resource_type(),
                            error=StatesErrorNameType.StatesTaskFailed.to_name(),
                            cause=to_json_str(description),
                        )
                    ),
                )
            )

        _sync_resolver.handle = handle  # type: ignore[attr-defined]
        return _sync_resolver

    def _eval_sync(self, env, sync_resolver, timeout_seconds, callback_endpoint, heartbeat_endpoint):
        # moto polls every 0.5 s and also spins a waitForTaskToken thread; we wait on the
        # job's own completion event instead, and stop the job if the task is abandoned
        # (TimeoutSeconds, execution stopped or failed elsewhere) as Step Functions does.
        handle = sync_resolver.handle
        hooks = _hooks_of(env)
        poll = hooks.poll_interval if hooks is not None else 0.05
        try:
            while env.is_running():
                result = sync_resolver()
                if result:
                    return result
                handle.wait(poll)
        finally:
            if not handle.done():
                handle.terminate("Step Functions task ended before the job (timeout or stop)")
        return None


# --------------------------------------------------------------------------- ItemReader


class _LocalItemReaderS3(ResourceEvalS3):
    """Distributed Map ItemReader (`s3:getObject`, `s3:listObjectsV2`) on local files."""

    def eval_resource(self, env: Environment) -> None:
        self.resource.eval(env=env)
        env.stack.pop()  # ResourceRuntimePart
        hooks = _hooks_of(env)
        parameters = env.stack.pop()
        action = self.resource.api_action.lower()
        try:
            if action == "getobject":
                value: Any = hooks.read_s3_object(parameters["Bucket"], parameters["Key"])
            elif action == "listobjectsv2":
                value = hooks.list_s3_objects(parameters["Bucket"], parameters.get("Prefix", ""))
            else:
                raise ValueError(f"ItemReader action {self.resource.api_action!r} is not supported locally")
        except (OSError, KeyError, ValueError) as err:
            error_name = StatesErrorName(typ=StatesErrorNameType.StatesItemReaderFailed)
            raise FailureEventException(
                failure_event=FailureEvent(
                    env=env,
                    error_name=error_name,
                    event_type=HistoryEventType.TaskFailed,
                    event_details=EventDetails(
                        mapRunFailedEventDetails=MapRunFailedEventDetails(
                            error=error_name.error_name, cause=f"{type(err).__name__}: {err}"
                        )
                    ),
                )
            ) from err
        env.stack.append(value)


# --------------------------------------------------------------------------- Distributed Map


def _tolerant_map_run(self, base: type, env: Environment, eval_input: Any) -> None:
    """moto parses ToleratedFailurePercentage/Count but ignores them (a failed item is
    just a null result). Enforce them as AWS does: the Map Run fails with
    States.ExceedToleratedFailureThreshold when failed items exceed the threshold
    (no threshold declared: any failed item). Child executions' events stay out of the
    parent's history, as on AWS, but a States.Runtime in a child is still fatal."""
    run = _run_of(env)
    if run is not None:
        env.event_manager = _ChildEventManager(run)
    base._map_run(self, env=env, eval_input=eval_input)
    counter = eval_input.map_run_record.item_counter
    total = counter.total.get()
    failed = counter.failed.get() + counter.timed_out.get() + counter.aborted.get()
    count = float(eval_input.tolerated_failure_count or 0)
    percentage = float(eval_input.tolerated_failure_percentage or 0.0)
    if count <= 0 and percentage <= 0:
        exceeded = failed > 0
    else:
        exceeded = (count > 0 and failed > count) or (
            percentage > 0 and total > 0 and 100.0 * failed / total > percentage
        )
    if exceeded:
        error_name = StatesErrorName(typ=StatesErrorNameType.StatesExceedToleratedFailureThreshold)
        raise FailureEventException(
            failure_event=FailureEvent(
                env=env,
                error_name=error_name,
                event_type=HistoryEventType.MapRunFailed,
                event_details=EventDetails(
                    mapRunFailedEventDetails=MapRunFailedEventDetails(
                        error=error_name.error_name,
                        cause=(
                            f"The specified tolerated failure threshold was exceeded: {failed} of {total} "
                            f"items failed (ToleratedFailurePercentage {percentage:g}, "
                            f"ToleratedFailureCount {count:g})"
                        ),
                    )
                ),
            )
        )


class _LocalDistributedItemProcessor(DistributedItemProcessor):
    def _map_run(self, env, eval_input):
        _tolerant_map_run(self, DistributedItemProcessor, env, eval_input)


class _LocalDistributedIterator(DistributedIterator):
    def _map_run(self, env, eval_input):
        _tolerant_map_run(self, DistributedIterator, env, eval_input)


# --------------------------------------------------------------------------- Retry / Catch


class _StrictErrorEquals(ErrorEqualsDecl):
    """AWS semantics: States.Runtime is never caught or retried (moto's Catch catches
    it); States.ALL does not match States.DataLimitExceeded."""

    _UNCATCHABLE_BY_ALL = {_STATES_RUNTIME, StatesErrorNameType.StatesStatesDataLimitExceeded.to_name()}

    def _eval_body(self, env: Environment) -> None:
        error_name = env.stack[-1]
        name = getattr(error_name, "error_name", None)
        if name == _STATES_RUNTIME:
            env.stack.pop()
            env.stack.append(False)
            return
        if name in self._UNCATCHABLE_BY_ALL and self._STATE_ALL_ERROR in self.error_names:
            env.stack.pop()
            env.stack.append(error_name in [e for e in self.error_names if e != self._STATE_ALL_ERROR])
            return
        super()._eval_body(env)


class _ScaledJitter(JitterStrategyDecl):
    """Runs last before RetrierDecl sleeps: scale the interval by the engine's wait_scale."""

    def _eval_body(self, env: Environment) -> None:
        super()._eval_body(env)
        hooks = _hooks_of(env)
        if hooks is not None and env.stack:
            env.stack.append(float(env.stack.pop()) * float(hooks.wait_scale))


_STRICT_CLASSES: dict[type, type] = {}


def _runtime_failure(env: Environment, cause: str) -> FailureEvent:
    return FailureEvent(
        env=env,
        error_name=StatesErrorName(typ=StatesErrorNameType.StatesRuntime),
        event_type=HistoryEventType.TaskFailed,
        event_details=EventDetails(taskFailedEventDetails=TaskFailedEventDetails(error=_STATES_RUNTIME, cause=cause)),
    )


def _strict_runtime_class(cls: type) -> type:
    """Subclass of an execution state (Task, Map, Parallel) whose errors from a JSONPath
    that selects nothing, or from an engine bug, are States.Runtime as on AWS (moto's
    Lambda task reports them as a catchable error named "Exception")."""
    strict = _STRICT_CLASSES.get(cls)
    if strict is None:

        def _from_error(self, env, ex, _base=cls):
            if not env.is_running() and not isinstance(ex, FailureEventException):
                # The frame was stopped under a running state (a sibling Map iteration or
                # Parallel branch failed, the execution was stopped): moto keeps evaluating
                # with pruned components and trips over its own stack. Not an error of this
                # state; the event is dropped from the history (see _HookedEventManager).
                return FailureEvent(
                    env=env,
                    error_name=CustomErrorName(error_name=_CANCELLED),
                    event_type=HistoryEventType.TaskFailed,
                    event_details=EventDetails(
                        taskFailedEventDetails=TaskFailedEventDetails(error=_CANCELLED, cause=str(ex))
                    ),
                )
            if isinstance(ex, NoSuchJsonPathError):
                return _runtime_failure(
                    env,
                    f"The JSONPath '{ex.json_path}' could not be found in the input '{to_json_str(ex.data)}'",
                )
            if isinstance(ex, EngineInternalError):
                return _runtime_failure(env, str(ex))
            return _base._from_error(self, env=env, ex=ex)

        strict = type(f"_Strict{cls.__name__}", (cls,), {"_from_error": _from_error, "__module__": __name__})
        _STRICT_CLASSES[cls] = strict
    return strict


# --------------------------------------------------------------------------- parsing

_PARSE_LOCK = threading.Lock()

# Service integrations the local engine serves; any other fails at parse time.
_SUPPORTED_SERVICE_TASKS = (StateTaskServiceBatch, StateTaskServiceLambda)


@dataclass
class ParsedProgram:
    program: Program
    definition: str


def _retype_tree(root: Any) -> None:
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, dict):
            stack.extend(obj.values())
            continue
        if isinstance(obj, list | tuple | set):
            stack.extend(obj)
            continue
        if not type(obj).__module__.startswith("moto.stepfunctions.parser"):
            continue
        cls = type(obj)
        if cls is StateTaskServiceBatch:
            obj.__class__ = _LocalBatchTask
        elif isinstance(obj, StateTaskService) and not isinstance(obj, _SUPPORTED_SERVICE_TASKS):
            raise DefinitionError(
                f"resource {obj.resource.resource_arn!r} is not supported by the local engine "
                "(only Lambda and Batch integrations are)"
            )
        elif cls is ResourceEvalS3:
            obj.__class__ = _LocalItemReaderS3
        elif cls is DistributedItemProcessor:
            obj.__class__ = _LocalDistributedItemProcessor
        elif cls is DistributedIterator:
            obj.__class__ = _LocalDistributedIterator
        elif cls is ErrorEqualsDecl:
            obj.__class__ = _StrictErrorEquals
        elif cls is RetrierDecl:
            obj.jitter_strategy.__class__ = _ScaledJitter
        if isinstance(obj, ExecutionState) and type(obj) not in _STRICT_CLASSES.values():
            obj.__class__ = _strict_runtime_class(type(obj))
        if hasattr(obj, "__dict__"):
            stack.extend(vars(obj).values())


def _normalise_for_moto(node: Any) -> Any:
    """Valid ASL that moto's grammar rejects: ToleratedFailurePercentage must be a
    decimal NUMBER there (an integer like 50 fails to parse)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "ToleratedFailurePercentage" and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            out[key] = _normalise_for_moto(value)
        return out
    if isinstance(node, list):
        return [_normalise_for_moto(v) for v in node]
    return node


def parse_definition(definition: str) -> ParsedProgram:
    """Parse an ASL definition with moto's parser; raise DefinitionError on failure."""
    try:
        document = json.loads(definition)
    except json.JSONDecodeError as err:
        raise DefinitionError(f"definition is not JSON: {err}") from err
    definition = json.dumps(_normalise_for_moto(document))
    with _PARSE_LOCK:
        # moto keeps the preprocessor's scope stack in a class attribute: clear it so a
        # failed earlier parse cannot leak its query language into this one.
        Preprocessor._query_language_per_scope.clear()
        try:
            program, _tree = AmazonStateLanguageParser.parse(definition)
        except ASLParserException as err:
            raise DefinitionError(f"ASL syntax error: {err.errors}") from err
        except Exception as err:
            raise DefinitionError(f"ASL definition rejected: {type(err).__name__}: {err}") from err
        finally:
            Preprocessor._query_language_per_scope.clear()
    _retype_tree(program)
    return ParsedProgram(program=program, definition=definition)


# --------------------------------------------------------------------------- history


def _parse_ts(value: Any) -> datetime.datetime:
    if isinstance(value, datetime.datetime):
        return value
    text = str(value).replace("Z", "+00:00")
    try:
        return datetime.datetime.fromisoformat(text)
    except ValueError:
        return datetime.datetime.now(tz=datetime.UTC)


def _truncate(frames: tuple[tuple[str, int], ...], map_name: str | None) -> tuple[tuple[str, int], ...]:
    for k, (name, _index) in enumerate(frames):
        if name == map_name:
            return frames[:k]
    return frames


def _annotate(
    etype: str, details: dict[str, Any], prev: dict[str, Any] | None
) -> tuple[str | None, tuple[tuple[str, int], ...]]:
    """State name and Map frames ((map state, iteration index), ...) of one event.

    moto chains events within a frame by previousEventId, and a Map worker thread
    reuses its frame for several iterations, so iteration frames are rebuilt from the
    Map state's name at every Map event.
    """
    state_name = prev["state_name"] if prev else None
    frames: tuple[tuple[str, int], ...] = prev["map_frames"] if prev else ()
    if etype.startswith("Execution"):
        return None, ()
    if etype.startswith("MapIteration"):
        name = details.get("name", state_name)
        return name, (*_truncate(frames, name), (name, int(details.get("index", -1))))
    if etype.startswith("MapState") or etype.startswith("MapRun"):
        if "name" in details:
            name = details["name"]
        elif prev and prev["type"].startswith(("MapStateEntered", "MapStateStarted", "MapRun")):
            name = state_name  # a Map-level event of this same Map
        elif frames:
            name = frames[-1][0]  # first event after this Map's iterations
        else:
            name = state_name
        return name, _truncate(frames, name)
    if etype.endswith("StateEntered") or etype.endswith("StateExited"):
        state_name = details.get("name", state_name)
    return state_name, frames


def _is_cancelled(event_details: Any) -> bool:
    if not event_details:
        return False
    details = next(iter(event_details.values()))
    return isinstance(details, dict) and details.get("error") == _CANCELLED


class _HookedEventManager(EventManager):
    """Records each event with its state name and Map iteration path; reports it."""

    def __init__(self, run: MotoRun):
        super().__init__(cloud_watch_logging_session=None)
        self._run = run
        self._annotated: dict[int, dict[str, Any]] = {}

    def _publish_history_event(self, event_id, source_event_id, event_type, timestamp, event_details):
        super()._publish_history_event(
            event_id=event_id,
            source_event_id=source_event_id,
            event_type=event_type,
            timestamp=timestamp,
            event_details=event_details,
        )
        etype = str(getattr(event_type, "value", event_type))
        details: dict[str, Any] = {}
        if event_details:
            details = dict(next(iter(event_details.values())))
        prev = self._annotated.get(source_event_id)
        state_name, frames = _annotate(etype, details, prev)
        self._annotated[event_id] = {
            "id": event_id,
            "previous_id": source_event_id,
            "type": etype,
            "timestamp": _parse_ts(timestamp),
            "state_name": state_name,
            "map_frames": frames,
            "map_path": tuple(index for _name, index in frames),
            "details": details,
        }
        err = details.get("error")
        if err == _STATES_RUNTIME:
            self._run._note_runtime_error(details.get("cause", ""))

    def add_event(self, context, event_type, event_details=None, timestamp=None, update_source_event_id=True):
        if _is_cancelled(event_details):
            return context.last_published_event_id
        event_id = super().add_event(
            context=context,
            event_type=event_type,
            event_details=event_details,
            timestamp=timestamp,
            update_source_event_id=update_source_event_id,
        )
        with self._mutex:
            event = self._annotated.get(event_id)
        if event is not None:
            self._run._report_event(event)
        return event_id

    def annotated(self) -> list[dict[str, Any]]:
        with self._mutex:
            return [dict(self._annotated[k]) for k in sorted(self._annotated)]


class _ChildEventManager(EventManager):
    """Events of Distributed Map child executions: not kept in the parent's history;
    only checked for States.Runtime."""

    def __init__(self, run: MotoRun):
        super().__init__(cloud_watch_logging_session=None)
        self._run = run

    def add_event(self, context, event_type, event_details=None, timestamp=None, update_source_event_id=True):
        if _is_cancelled(event_details):
            return context.last_published_event_id
        return super().add_event(
            context=context,
            event_type=event_type,
            event_details=event_details,
            timestamp=timestamp,
            update_source_event_id=update_source_event_id,
        )

    def _publish_history_event(self, event_id, source_event_id, event_type, timestamp, event_details):
        if event_details:
            details = next(iter(event_details.values()))
            if isinstance(details, dict) and details.get("error") == _STATES_RUNTIME:
                self._run._note_runtime_error(details.get("cause", ""))


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
        self._event_manager = _HookedEventManager(self)
        self.env = Environment(
            aws_execution_details=_HookedExecutionDetails(hooks, self),
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
                result = RunResult(status="FAILED", error=_STATES_RUNTIME, cause=str(err))
        with self._lock:
            if self._runtime_errors:
                result = RunResult(status="FAILED", error=_STATES_RUNTIME, cause=self._runtime_errors[0])
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
        return RunResult(status="FAILED", error=_STATES_RUNTIME, cause=f"unexpected program state {state!r}")

    def _note_runtime_error(self, cause: str) -> None:
        if self._stop_requested is not None:
            # After StopExecution a task still in flight ends without output and moto's
            # follow-up evaluation fails on it; that is the stop, not a definition bug.
            return
        with self._lock:
            self._runtime_errors.append(cause or "States.Runtime")
        # Fail the whole execution (also from inside a Map that tolerates failures).
        try:
            self.env.set_error(ExecutionFailedEventDetails(error=_STATES_RUNTIME, cause=cause))
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
