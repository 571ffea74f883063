"""The one place that owns Lambda logging and the event→settings plumbing.

Handlers stay thin: `@task_handler` parses the environment into `TaskSettings`, logs
one structured line per invocation, and lets typed errors propagate unchanged: their
class name is the Step Functions error name the ASL catches.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from foldstack.core.errors import FoldstackError, InputValidationError
from foldstack.tasks.settings import TaskSettings

Handler = Callable[[Mapping[str, Any], TaskSettings], dict[str, Any]]
log = logging.getLogger("foldstack.task")


def _configure_logging() -> None:
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(os.environ.get("FOLDSTACK_LOG_LEVEL", "INFO"))


def require(event: Mapping[str, Any], *keys: str) -> None:
    missing = [k for k in keys if k not in event]
    if missing:
        raise InputValidationError(f"event is missing {', '.join(missing)}", code="malformed_event")


def task_handler(name: str) -> Callable[[Handler], Callable[[Mapping[str, Any], Any], dict[str, Any]]]:
    def wrap(fn: Handler) -> Callable[[Mapping[str, Any], Any], dict[str, Any]]:
        @functools.wraps(fn)
        def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
            _configure_logging()
            started = time.monotonic()
            run_id = event.get("run_id") if isinstance(event, Mapping) else None
            try:
                if not isinstance(event, Mapping):
                    raise InputValidationError("event must be a JSON object", code="malformed_event")
                result = fn(event, TaskSettings.from_env())
            except FoldstackError as exc:
                log.warning(json.dumps({"task": name, "run_id": run_id, "outcome": "error", **exc.to_dict()},
                                       default=str))
                raise
            log.info(json.dumps({"task": name, "run_id": run_id, "outcome": "ok",
                                 "seconds": round(time.monotonic() - started, 3)}))
            return result

        return handler

    return wrap
