"""The one place that owns Lambda logging and the event→settings plumbing.

Handlers stay thin: `@task_handler` parses the environment into `TaskSettings` and the
event into the task's event model (:data:`foldstack.tasks.events.CONTRACTS`), calls the
handler with both, and returns the handler's result model as JSON. It logs one
structured line per invocation and lets typed errors propagate unchanged: their class
name is the Step Functions error name the ASL catches. An event that does not fit its
model is an `InputValidationError` with code ``malformed_event`` and a one-line message
naming the bad fields.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from foldstack.core.errors import FoldstackError, InputValidationError
from foldstack.tasks.events import CONTRACTS, Contract
from foldstack.tasks.settings import TaskSettings

Handler = Callable[[Any, TaskSettings], BaseModel]
LambdaHandler = Callable[[Any, Any], dict[str, Any]]
M = TypeVar("M", bound=BaseModel)
log = logging.getLogger("foldstack.task")

MAX_PROBLEMS = 5  # named in a malformed_event message; the rest are counted
_MAX_SHOWN = 60  # characters of a bad scalar value quoted in the message


def _configure_logging() -> None:
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(os.environ.get("FOLDSTACK_LOG_LEVEL", "INFO"))


def _where(error: Mapping[str, Any]) -> str:
    return ".".join(str(p) for p in error["loc"])


def _got(value: Any) -> str:
    if value is None or isinstance(value, bool | int | float | str):
        shown = repr(value)
        return f" (got {shown[:_MAX_SHOWN]}{'...' if len(shown) > _MAX_SHOWN else ''})"
    return f" (got {type(value).__name__})"


def _names(names: list[str]) -> str:
    more = len(names) - MAX_PROBLEMS
    return ", ".join(names[:MAX_PROBLEMS]) + (f" and {more} more" if more > 0 else "")


def describe(exc: ValidationError) -> str:
    """One line naming every bad field of an event (the first few, then a count)."""
    errors = exc.errors(include_url=False)
    missing = [_where(e) for e in errors if e["type"] == "missing"]
    extra = [_where(e) for e in errors if e["type"] == "extra_forbidden"]
    problems = []
    if missing:
        problems.append(f"event is missing {_names(missing)}")
    if extra:
        problems.append(f"event has unexpected field{'s' if len(extra) > 1 else ''} {_names(extra)}")
    for e in errors:
        if e["type"] in ("missing", "extra_forbidden"):
            continue
        if e["type"] == "event_message":  # a model-level rule that words its whole message
            problems.append(e["msg"])
        else:
            problems.append(f"event field {_where(e) or '(event)'}: {e['msg']}{_got(e.get('input'))}")
    more = len(problems) - MAX_PROBLEMS
    text = "; ".join(problems[:MAX_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")
    return " ".join(text.split())  # one line, whatever the messages held


def parse_event(model: type[M], event: Any) -> M:
    """`event` as `model`, or InputValidationError(code="malformed_event")."""
    if not isinstance(event, Mapping):
        raise InputValidationError("event must be a JSON object", code="malformed_event")
    try:
        return model.model_validate(dict(event))
    except ValidationError as exc:
        raise InputValidationError(describe(exc), code="malformed_event") from None


def task_handler(name: str, contract: Contract | None = None) -> Callable[[Handler], LambdaHandler]:
    """Make ``fn(event_model, settings) -> result_model`` the Lambda handler of task
    `name`; the models are ``CONTRACTS[name]`` (a task without one fails at import), or
    `contract` (another workload's task of that name: ``foldstack.workflows.dispatch``)."""
    contract = contract or CONTRACTS[name]

    def wrap(fn: Handler) -> LambdaHandler:
        @functools.wraps(fn)
        def handler(event: Any, context: Any = None) -> dict[str, Any]:
            _configure_logging()
            started = time.monotonic()
            run_id = event.get("run_id") if isinstance(event, Mapping) else None
            try:
                if not isinstance(event, Mapping):
                    raise InputValidationError("event must be a JSON object", code="malformed_event")
                settings = TaskSettings.from_env()
                result = fn(parse_event(contract.event, event), settings)
            except FoldstackError as exc:
                log.warning(json.dumps({"task": name, "run_id": run_id, "outcome": "error", **exc.to_dict()},
                                       default=str))
                raise
            if not isinstance(result, contract.result):  # a bug in the handler, not in the event
                raise TypeError(f"the {name} handler returned {type(result).__name__}, "
                                f"not {contract.result.__name__}")
            log.info(json.dumps({"task": name, "run_id": run_id, "outcome": "ok",
                                 "seconds": round(time.monotonic() - started, 3)}))
            return result.model_dump(mode="json")

        handler.contract = contract  # type: ignore[attr-defined]
        return handler

    return wrap
