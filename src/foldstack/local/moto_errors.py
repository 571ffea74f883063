"""Error semantics made to match AWS: error names, Retry/Catch matching, States.Runtime.

* :func:`error_name_of` replaces ``CustomErrorName`` where moto re-raises a Map
  iteration's or Parallel branch's error, or a Fail state reports an ErrorPath value
  (installed process-wide by :func:`install`);
* :class:`StrictErrorEquals` (retyped from ``ErrorEqualsDecl``): ``States.ALL`` and
  ``States.TaskFailed`` never match ``States.Runtime``, nor does ``States.ALL`` match
  ``States.DataLimitExceeded``;
* :class:`ScaledJitter` (retyped from each Retrier's ``JitterStrategyDecl``) multiplies
  the retry interval by the engine's ``wait_scale`` (moto really sleeps);
* :func:`strict_runtime_class` derives, per execution state class (Task, Map,
  Parallel), a subclass whose JSONPath-selects-nothing and engine-bug errors are
  ``States.Runtime``.
"""

from __future__ import annotations

from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
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
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
    iteration_worker as _iteration_worker_module,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_parallel import (
    branches_decl as _branches_decl_module,
)
from moto.stepfunctions.parser.asl.component.state.fail import state_fail as _state_fail_module
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str
from moto.stepfunctions.parser.asl.utils.json_path import NoSuchJsonPathError

from foldstack.local.moto_hooks import CANCELLED, STATES_RUNTIME, EngineInternalError, hooks_of

# --------------------------------------------------------------------------- error names


def error_name_of(error_name: str | None):
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


def install() -> None:
    """The Map/Parallel/Fail error-name fix, process-wide (a pure bug fix; callers hold
    ``moto_adapter``'s install lock)."""
    _iteration_worker_module.CustomErrorName = error_name_of
    _branches_decl_module.CustomErrorName = error_name_of
    # A Fail state whose ErrorPath yields a States.* name (e.g. a caught States.TaskFailed)
    # hits the same rejection; AWS reports such names unchanged.
    _state_fail_module.CustomErrorName = error_name_of


# --------------------------------------------------------------------------- Retry / Catch


class StrictErrorEquals(ErrorEqualsDecl):
    """AWS semantics: States.Runtime is never caught or retried (moto's Catch catches
    it); States.ALL does not match States.DataLimitExceeded."""

    _UNCATCHABLE_BY_ALL = {STATES_RUNTIME, StatesErrorNameType.StatesStatesDataLimitExceeded.to_name()}

    def _eval_body(self, env: Environment) -> None:
        error_name = env.stack[-1]
        name = getattr(error_name, "error_name", None)
        if name == STATES_RUNTIME:
            env.stack.pop()
            env.stack.append(False)
            return
        if name in self._UNCATCHABLE_BY_ALL and self._STATE_ALL_ERROR in self.error_names:
            env.stack.pop()
            env.stack.append(error_name in [e for e in self.error_names if e != self._STATE_ALL_ERROR])
            return
        super()._eval_body(env)


class ScaledJitter(JitterStrategyDecl):
    """Runs last before RetrierDecl sleeps: scale the interval by the engine's wait_scale."""

    def _eval_body(self, env: Environment) -> None:
        super()._eval_body(env)
        hooks = hooks_of(env)
        if hooks is not None and env.stack:
            env.stack.append(float(env.stack.pop()) * float(hooks.wait_scale))


# --------------------------------------------------------------------------- States.Runtime

STRICT_CLASSES: dict[type, type] = {}


def _runtime_failure(env: Environment, cause: str) -> FailureEvent:
    return FailureEvent(
        env=env,
        error_name=StatesErrorName(typ=StatesErrorNameType.StatesRuntime),
        event_type=HistoryEventType.TaskFailed,
        event_details=EventDetails(taskFailedEventDetails=TaskFailedEventDetails(error=STATES_RUNTIME, cause=cause)),
    )


def strict_runtime_class(cls: type) -> type:
    """Subclass of an execution state (Task, Map, Parallel) whose errors from a JSONPath
    that selects nothing, or from an engine bug, are States.Runtime as on AWS (moto's
    Lambda task reports them as a catchable error named "Exception")."""
    strict = STRICT_CLASSES.get(cls)
    if strict is None:

        def _from_error(self, env, ex, _base=cls):
            if not env.is_running() and not isinstance(ex, FailureEventException):
                # The frame was stopped under a running state (a sibling Map iteration or
                # Parallel branch failed, the execution was stopped): moto keeps evaluating
                # with pruned components and trips over its own stack. Not an error of this
                # state; the event is dropped from the history (see moto_history.HookedEventManager).
                return FailureEvent(
                    env=env,
                    error_name=CustomErrorName(error_name=CANCELLED),
                    event_type=HistoryEventType.TaskFailed,
                    event_details=EventDetails(
                        taskFailedEventDetails=TaskFailedEventDetails(error=CANCELLED, cause=str(ex))
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
        STRICT_CLASSES[cls] = strict
    return strict
