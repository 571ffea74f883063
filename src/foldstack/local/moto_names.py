"""Every private moto name the local engine's adapter touches, and a checker for them.

moto's vendored ASL interpreter (``moto.stepfunctions.parser``) is not public API, so a
moto upgrade may rename or re-sign anything the ``moto_*`` modules rely on.
:data:`MOTO_PRIVATE_NAMES` lists each such name and :func:`check_moto_names` reports every
one that is gone or changed, so an upgrade fails with the whole list at once
(``tests/workflows/test_moto_private_names.py``) rather than deep inside a run. That
test also checks the list is complete: every ``moto.`` import of a ``moto_*`` module,
every attribute read on an imported moto name, and every inherited ``self.<name>`` a
subclass of a moto class reads must be listed here.

Kinds of entry:

* ``attr`` -- the module (``attr`` empty) or the dotted attribute path exists;
* ``global`` -- a module-level name that ``moto_adapter`` replaces process-wide: it is
  checked in the module's source, since after installation it always "exists";
* ``instance`` -- ``Class.field`` is a class attribute or annotation, or ``self.field`` is
  assigned in the source of a moto class of its MRO;
* ``call`` -- the callable (a TypedDict: its keys) accepts these keyword names;
* ``override`` -- the method (or replaced function) moto calls with keyword arguments:
  its parameter names must be exactly ``params``, in order, and so must those of
  ``local`` (our replacement, ``module:qualname``), which may add trailing defaulted ones.

This module imports no moto at import time.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
from dataclasses import dataclass
from typing import Any

_API = "moto.stepfunctions.parser.api"
_ASL = "moto.stepfunctions.parser.asl"
_ERR = f"{_ASL}.component.common.error_name"
_RETRY = f"{_ASL}.component.common.retry"
_EXEC = f"{_ASL}.component.state.exec"
_MAP = f"{_EXEC}.state_map"
_ITER = f"{_MAP}.iteration"
_TASK = f"{_EXEC}.state_task"
_SERVICE = f"{_TASK}.service"
_EVAL = f"{_ASL}.eval"

_SERVICE_TASK_PARAMS = ("env", "resource_runtime_part", "normalised_parameters", "state_credentials")


@dataclass(frozen=True)
class MotoName:
    module: str
    attr: str = ""
    kind: str = "attr"  # attr | global | instance | call | override
    params: tuple[str, ...] = ()
    local: str = ""  # override: "module:qualname" of our replacement
    why: str = ""

    def __str__(self) -> str:
        return f"{self.module}:{self.attr}" if self.attr else self.module


def _attr(module: str, attr: str = "", why: str = "") -> MotoName:
    return MotoName(module, attr, why=why)


def _global(module: str, attr: str, why: str = "") -> MotoName:
    return MotoName(module, attr, kind="global", why=why)


def _instance(module: str, attr: str, why: str = "") -> MotoName:
    return MotoName(module, attr, kind="instance", why=why)


def _call(module: str, attr: str, *params: str, why: str = "") -> MotoName:
    return MotoName(module, attr, kind="call", params=params, why=why)


def _override(module: str, attr: str, params: tuple[str, ...], local: str = "", why: str = "") -> MotoName:
    return MotoName(module, attr, kind="override", params=params, local=local, why=why)


MOTO_PRIVATE_NAMES: tuple[MotoName, ...] = (
    # -- moto.stepfunctions.parser.api (the service's shapes)
    _call(_API, "ExecutionFailedEventDetails", "error", "cause"),
    _call(_API, "ExecutionStartedEventDetails", "input", "inputDetails", "roleArn"),
    _call(_API, "HistoryEventExecutionDataDetails", "truncated"),
    _attr(_API, "HistoryEventType"),
    _attr(_API, "HistoryEventType.ExecutionStarted"),
    _attr(_API, "HistoryEventType.MapRunFailed"),
    _attr(_API, "HistoryEventType.TaskFailed"),
    _call(_API, "MapRunFailedEventDetails", "error", "cause"),
    _attr(_API, "StateMachineType"),
    _attr(_API, "StateMachineType.STANDARD"),
    _call(_API, "TaskFailedEventDetails", "resource", "resourceType", "error", "cause"),
    # -- error names
    _call(f"{_ERR}.custom_error_name", "CustomErrorName", "error_name"),
    _override(
        f"{_ERR}.custom_error_name",
        "CustomErrorName",
        ("error_name",),
        local="foldstack.local.moto_errors:error_name_of",
        why="replaced by error_name_of in iteration_worker, branches_decl and state_fail",
    ),
    _attr(f"{_ERR}.custom_error_name", "CustomErrorName.__new__"),
    _instance(f"{_ERR}.custom_error_name", "CustomErrorName.error_name"),
    _attr(f"{_ERR}.error_equals_decl", "ErrorEqualsDecl"),
    _override(
        f"{_ERR}.error_equals_decl",
        "ErrorEqualsDecl._eval_body",
        ("env",),
        local="foldstack.local.moto_errors:StrictErrorEquals._eval_body",
    ),
    _attr(f"{_ERR}.error_equals_decl", "ErrorEqualsDecl._STATE_ALL_ERROR"),
    _instance(f"{_ERR}.error_equals_decl", "ErrorEqualsDecl.error_names"),
    _call(f"{_ERR}.failure_event", "FailureEvent", "env", "error_name", "event_type", "event_details"),
    _call(f"{_ERR}.failure_event", "FailureEventException", "failure_event"),
    _call(f"{_ERR}.states_error_name", "StatesErrorName", "typ"),
    _attr(f"{_ERR}.states_error_name", "StatesErrorName.from_name"),
    _instance(f"{_ERR}.states_error_name", "StatesErrorName.error_name"),
    _attr(f"{_ERR}.states_error_name_type", "StatesErrorNameType"),
    _attr(f"{_ERR}.states_error_name_type", "StatesErrorNameType.to_name"),
    _attr(f"{_ERR}.states_error_name_type", "StatesErrorNameType.StatesExceedToleratedFailureThreshold"),
    _attr(f"{_ERR}.states_error_name_type", "StatesErrorNameType.StatesItemReaderFailed"),
    _attr(f"{_ERR}.states_error_name_type", "StatesErrorNameType.StatesRuntime"),
    _attr(f"{_ERR}.states_error_name_type", "StatesErrorNameType.StatesStatesDataLimitExceeded"),
    _attr(f"{_ERR}.states_error_name_type", "StatesErrorNameType.StatesTaskFailed"),
    # -- Retry
    _attr(f"{_RETRY}.jitter_strategy_decl", "JitterStrategyDecl"),
    _override(
        f"{_RETRY}.jitter_strategy_decl",
        "JitterStrategyDecl._eval_body",
        ("env",),
        local="foldstack.local.moto_errors:ScaledJitter._eval_body",
        why="the last push before RetrierDecl sleeps is the interval",
    ),
    _attr(f"{_RETRY}.retrier_decl", "RetrierDecl"),
    _instance(f"{_RETRY}.retrier_decl", "RetrierDecl.jitter_strategy"),
    # -- program and states
    _attr(f"{_ASL}.component.program.program", "Program"),
    _call(f"{_ASL}.component.program.program", "Program.eval", "env"),
    _attr(f"{_EXEC}.execute_state", "ExecutionState"),
    _override(
        f"{_EXEC}.execute_state",
        "ExecutionState._from_error",
        ("env", "ex"),
        why="moto_errors.strict_runtime_class overrides it per retyped state class",
    ),
    _override(f"{_TASK}.state_task_lambda", "StateTaskLambda._from_error", ("env", "ex")),
    _override(f"{_SERVICE}.state_task_service_lambda", "StateTaskServiceLambda._from_error", ("env", "ex")),
    _override(f"{_SERVICE}.state_task_service_batch", "StateTaskServiceBatch._from_error", ("env", "ex")),
    _attr(f"{_EXEC}.state_parallel.branches_decl"),
    _global(f"{_EXEC}.state_parallel.branches_decl", "CustomErrorName"),
    _attr(f"{_ASL}.component.state.fail.state_fail"),
    _global(f"{_ASL}.component.state.fail.state_fail", "CustomErrorName"),
    # -- Map
    _attr(f"{_MAP}.item_reader.eval.resource_eval_s3", "ResourceEvalS3"),
    _override(
        f"{_MAP}.item_reader.eval.resource_eval_s3",
        "ResourceEvalS3.eval_resource",
        ("env",),
        local="foldstack.local.moto_map:LocalItemReaderS3.eval_resource",
    ),
    _instance(f"{_MAP}.item_reader.eval.resource_eval_s3", "ResourceEvalS3.resource"),
    _instance(f"{_SERVICE}.resource", "ServiceResource.api_action"),
    _call(f"{_SERVICE}.resource", "ServiceResource.eval", "env"),
    _attr(f"{_ITER}.iteration_worker"),
    _global(f"{_ITER}.iteration_worker", "CustomErrorName"),
    _attr(f"{_ITER}.itemprocessor.distributed_item_processor", "DistributedItemProcessor"),
    _override(
        f"{_ITER}.itemprocessor.distributed_item_processor",
        "DistributedItemProcessor._map_run",
        ("env", "eval_input"),
        local="foldstack.local.moto_map:LocalDistributedItemProcessor._map_run",
    ),
    _attr(f"{_ITER}.iterator.distributed_iterator", "DistributedIterator"),
    _override(
        f"{_ITER}.iterator.distributed_iterator",
        "DistributedIterator._map_run",
        ("env", "eval_input"),
        local="foldstack.local.moto_map:LocalDistributedIterator._map_run",
    ),
    _instance(f"{_ITER}.distributed_iteration_component", "DistributedIterationComponentEvalInput.map_run_record"),
    _instance(
        f"{_ITER}.distributed_iteration_component", "DistributedIterationComponentEvalInput.tolerated_failure_count"
    ),
    _instance(
        f"{_ITER}.distributed_iteration_component",
        "DistributedIterationComponentEvalInput.tolerated_failure_percentage",
    ),
    _instance(f"{_ITER}.itemprocessor.map_run_record", "MapRunRecord.item_counter"),
    _instance(f"{_ITER}.itemprocessor.map_run_record", "ItemCounter.total"),
    _instance(f"{_ITER}.itemprocessor.map_run_record", "ItemCounter.failed"),
    _instance(f"{_ITER}.itemprocessor.map_run_record", "ItemCounter.timed_out"),
    _instance(f"{_ITER}.itemprocessor.map_run_record", "ItemCounter.aborted"),
    # -- Task: Lambda
    _attr(f"{_TASK}.lambda_eval_utils"),
    _override(
        f"{_TASK}.lambda_eval_utils",
        "execute_lambda_function_integration",
        ("env", "parameters", "region", "state_credentials"),
        local="foldstack.local.moto_lambda:local_execute_lambda_function_integration",
        why="replaced process-wide; moto calls it with keyword arguments",
    ),
    _global(f"{_TASK}.lambda_eval_utils", "execute_lambda_function_integration"),
    _call(f"{_TASK}.lambda_eval_utils", "LambdaFunctionErrorException", "function_error", "payload"),
    _attr(f"{_SERVICE}.state_task_service_lambda", "StateTaskServiceLambda"),
    # -- Task: Batch
    _attr(f"{_SERVICE}.state_task_service", "StateTaskService"),
    _instance(f"{_SERVICE}.state_task_service", "StateTaskService.resource"),
    _instance(f"{_SERVICE}.resource", "Resource.resource_arn"),
    _attr(f"{_SERVICE}.state_task_service_batch", "StateTaskServiceBatch"),
    _override(
        f"{_SERVICE}.state_task_service_batch",
        "StateTaskServiceBatch._eval_service_task",
        _SERVICE_TASK_PARAMS,
        local="foldstack.local.moto_batch:LocalBatchTask._eval_service_task",
    ),
    _override(
        f"{_SERVICE}.state_task_service_batch",
        "StateTaskServiceBatch._build_sync_resolver",
        _SERVICE_TASK_PARAMS,
        local="foldstack.local.moto_batch:LocalBatchTask._build_sync_resolver",
    ),
    _override(
        f"{_SERVICE}.state_task_service_batch",
        "StateTaskServiceBatch._eval_sync",
        ("env", "sync_resolver", "timeout_seconds", "callback_endpoint", "heartbeat_endpoint"),
        local="foldstack.local.moto_batch:LocalBatchTask._eval_sync",
        why="defined on StateTaskServiceCallback",
    ),
    _attr(f"{_SERVICE}.state_task_service_batch", "StateTaskServiceBatch._get_sfn_resource"),
    _attr(f"{_SERVICE}.state_task_service_batch", "StateTaskServiceBatch._get_sfn_resource_type"),
    # -- evaluation: Environment, execution details, program state, context object
    _attr(f"{_EVAL}.environment", "Environment"),
    _call(
        f"{_EVAL}.environment",
        "Environment",
        "aws_execution_details",
        "execution_type",
        "context",
        "event_history_context",
        "cloud_watch_logging_session",
        "activity_store",
    ),
    _instance(f"{_EVAL}.environment", "Environment.aws_execution_details"),
    _instance(f"{_EVAL}.environment", "Environment.event_history_context"),
    _instance(f"{_EVAL}.environment", "Environment.event_manager"),
    _instance(f"{_EVAL}.environment", "Environment.stack"),
    _instance(f"{_EVAL}.environment", "Environment.states"),
    _attr(f"{_EVAL}.environment", "Environment.is_running"),
    _attr(f"{_EVAL}.environment", "Environment.program_state"),
    _call(f"{_EVAL}.environment", "Environment.set_error", "error"),
    _call(f"{_EVAL}.environment", "Environment.set_stop", "stop_date", "cause", "error"),
    _attr(f"{_EVAL}.evaluation_details", "AWSExecutionDetails"),
    _call(f"{_EVAL}.evaluation_details", "AWSExecutionDetails", "account", "region", "role_arn"),
    _attr(f"{_EVAL}.program_state", "ProgramEnded"),
    _attr(f"{_EVAL}.program_state", "ProgramError"),
    _instance(f"{_EVAL}.program_state", "ProgramError.error"),
    _attr(f"{_EVAL}.program_state", "ProgramStopped"),
    _instance(f"{_EVAL}.program_state", "ProgramStopped.error"),
    _instance(f"{_EVAL}.program_state", "ProgramStopped.cause"),
    _attr(f"{_EVAL}.program_state", "ProgramTimedOut"),
    _call(f"{_EVAL}.states", "ContextObjectData", "Execution", "StateMachine"),
    _call(f"{_EVAL}.states", "ExecutionData", "Id", "Input", "Name", "RoleArn", "StartTime"),
    _call(f"{_EVAL}.states", "StateMachineData", "Id", "Name"),
    _instance(f"{_EVAL}.states", "States.context_object"),
    _attr(f"{_EVAL}.states", "States.get_input"),
    _instance(f"{_EVAL}.states", "ContextObject.context_object_data"),
    # -- history events
    _call(
        f"{_EVAL}.event.event_detail",
        "EventDetails",
        "executionStartedEventDetails",
        "mapRunFailedEventDetails",
        "taskFailedEventDetails",
    ),
    _attr(f"{_EVAL}.event.event_manager", "EventHistoryContext"),
    _attr(f"{_EVAL}.event.event_manager", "EventHistoryContext.of_program_start"),
    _instance(f"{_EVAL}.event.event_manager", "EventHistoryContext.last_published_event_id"),
    _call(f"{_EVAL}.event.event_manager", "EventManager", "cloud_watch_logging_session"),
    # Both of our event managers override the same two methods.
    *(
        _override(f"{_EVAL}.event.event_manager", f"EventManager.{method}", params,
                  local=f"foldstack.local.moto_history:{manager}.{method}")
        for manager in ("HookedEventManager", "ChildEventManager")
        for method, params in (
            ("add_event", ("context", "event_type", "event_details", "timestamp", "update_source_event_id")),
            ("_publish_history_event", ("event_id", "source_event_id", "event_type", "timestamp", "event_details")),
        )
    ),
    _instance(f"{_EVAL}.event.event_manager", "EventManager._mutex"),
    # -- parsing
    _attr(f"{_ASL}.parse.asl_parser", "AmazonStateLanguageParser"),
    _attr(f"{_ASL}.parse.asl_parser", "AmazonStateLanguageParser.parse"),
    _attr(f"{_ASL}.parse.asl_parser", "ASLParserException"),
    _instance(f"{_ASL}.parse.asl_parser", "ASLParserException.errors"),
    _attr(f"{_ASL}.parse.preprocessor", "Preprocessor"),
    _attr(
        f"{_ASL}.parse.preprocessor",
        "Preprocessor._query_language_per_scope",
        why="class attribute that leaks between parses: cleared around each parse",
    ),
    # -- utilities
    _attr(f"{_ASL}.utils.encoding", "to_json_str"),
    _attr(f"{_ASL}.utils.json_path", "NoSuchJsonPathError"),
    _instance(f"{_ASL}.utils.json_path", "NoSuchJsonPathError.json_path"),
    _instance(f"{_ASL}.utils.json_path", "NoSuchJsonPathError.data"),
    _attr("moto.stepfunctions.parser.utils", "TMP_THREADS", why="pruned of finished threads"),
)


# --------------------------------------------------------------------------- checking


def _resolve(dotted: str) -> Any:
    """``module:qualname`` or a module path -> the object (raises on failure)."""
    module_name, _, qualname = dotted.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in filter(None, qualname.split(".")):
        obj = getattr(obj, part)
    return obj


def _param_names(obj: Any) -> tuple[list[str], bool, dict[str, bool]]:
    """(parameter names without self/cls, takes **kwargs, name -> has a default)."""
    if isinstance(obj, type) and issubclass(obj, dict) and hasattr(obj, "__required_keys__"):
        keys = sorted(obj.__required_keys__ | obj.__optional_keys__)
        return keys, False, {k: k in obj.__optional_keys__ for k in keys}
    signature = inspect.signature(obj)
    names: list[str] = []
    defaults: dict[str, bool] = {}
    var_kw = False
    for param in signature.parameters.values():
        if param.kind is param.VAR_KEYWORD:
            var_kw = True
        elif param.kind is not param.VAR_POSITIONAL and param.name not in ("self", "cls"):
            names.append(param.name)
            defaults[param.name] = param.default is not param.empty
    return names, var_kw, defaults


def _module_tree(module_name: str) -> ast.Module:
    return ast.parse(inspect.getsource(importlib.import_module(module_name)))


def _global_bound_in_source(module_name: str, name: str) -> bool:
    for node in _module_tree(module_name).body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            if any((alias.asname or alias.name.split(".")[0]) == name for alias in node.names):
                return True
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if node.name == name:
                return True
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
    return False


def _source_function_params(module_name: str, name: str) -> list[str] | None:
    """Parameter names of a module-level function as written (it may be replaced at runtime)."""
    for node in _module_tree(module_name).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            args = node.args
            return [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs) if a.arg not in ("self", "cls")]
    return None


def _has_instance_attr(cls: type, field: str) -> bool:
    if hasattr(cls, field):
        return True
    assigned = re.compile(rf"\bself\.{re.escape(field)}\s*(?::[^=\n]+)?=(?!=)")
    for klass in cls.__mro__:
        if field in getattr(klass, "__annotations__", {}):
            return True
        if not klass.__module__.startswith("moto."):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        if assigned.search(source):
            return True
    return False


def _check_one(name: MotoName) -> str | None:
    try:
        module = importlib.import_module(name.module)
    except Exception as err:
        return f"{name}: cannot import {name.module} ({type(err).__name__}: {err})"
    if name.kind == "global":
        if not _global_bound_in_source(name.module, name.attr):
            return f"{name}: no module-level name {name.attr!r} in the source"
        return None
    owner, _, last = name.attr.rpartition(".")
    path = owner if name.kind == "instance" else name.attr
    obj: Any = module
    for part in filter(None, path.split(".")):
        if not hasattr(obj, part):
            return f"{name}: missing ({part!r} not found)"
        obj = getattr(obj, part)
    if name.kind == "attr":
        return None
    if name.kind == "instance":
        if not isinstance(obj, type):
            return f"{name}: {owner} is not a class"
        return None if _has_instance_attr(obj, last) else f"{name}: {owner} has no attribute {last!r}"
    if name.kind == "override" and name.local:
        try:
            local_obj = _resolve(name.local)
        except Exception as err:
            return f"{name}: cannot resolve our {name.local} ({type(err).__name__}: {err})"
        if obj is local_obj:  # a module-level function we replaced: read moto's source
            source_params = _source_function_params(name.module, name.attr)
            if source_params is None:
                return f"{name}: no function {name.attr!r} in the source"
            params, var_kw, _defaults = source_params, False, {}
        else:
            params, var_kw, _defaults = _param_names(obj)
    else:
        try:
            params, var_kw, _defaults = _param_names(obj)
        except (TypeError, ValueError) as err:
            return f"{name}: no signature ({err})"
    if name.kind == "call":
        unknown = [p for p in name.params if p not in params]
        if unknown and not var_kw:
            return f"{name}: does not take keyword(s) {unknown} (takes {params})"
        return None
    if name.kind != "override":
        return f"{name}: unknown kind {name.kind!r}"
    if list(name.params) != params:
        return f"{name}: parameters are {params}, expected {list(name.params)}"
    if name.local:
        local_params, _kw, local_defaults = _param_names(_resolve(name.local))
        head, extra = local_params[: len(name.params)], local_params[len(name.params) :]
        if head != list(name.params) or not all(local_defaults[p] for p in extra):
            return f"{name}: our {name.local} takes {local_params}, moto passes {list(name.params)}"
    return None


def check_moto_names(names: tuple[MotoName, ...] = MOTO_PRIVATE_NAMES) -> list[str]:
    """One line per listed name that is missing or changed (empty: all still there)."""
    problems = []
    for name in names:
        try:
            problem = _check_one(name)
        except Exception as err:  # a checker failure is a finding too
            problem = f"{name}: check failed ({type(err).__name__}: {err})"
        if problem:
            problems.append(problem)
    return problems
