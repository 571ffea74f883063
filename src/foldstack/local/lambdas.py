"""AWS Lambda, locally: ``lambdas/<name>/handler.py``'s ``handler(event, context)`` in-process.

* The function name comes from an ARN (``...:function:foldstack-local-<name>[:qualifier]``)
  or a bare name (``foldstack-local-<name>`` or ``<name>``); ``-`` and ``_`` are
  interchangeable when looking for the directory.
* Handlers are imported by file path under a unique module name, once per runner, with
  the handler's directory on ``sys.path`` during import (as Lambda's ``/var/task``).
* ``lambda_env`` is applied to ``os.environ`` while the handler is imported and while it
  runs, under one process-wide lock (so Lambda calls are serialised in a process).
* With ``task_log``, the handlers' structured log lines (logger ``foldstack.task``, see
  :mod:`foldstack.tasks.runtime`) go to that file while they run, not to the terminal;
  the logger is restored afterwards (:func:`task_log_to`).
* An exception becomes what real Lambda returns: errorType = the class name, and the
  Cause JSON ``{"errorMessage", "errorType", "stackTrace"}``. A result that is not JSON
  serialisable fails with ``Runtime.MarshalError``, as on Lambda.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from foldstack.local.errors import LambdaInvocationError
from foldstack.local.jobs import NAME_PREFIX, lambda_arn

DEFAULT_LAMBDAS = ("validate_input", "stage_inputs", "plan_batches", "msa_cache", "publish_batch", "collect_outputs",
                   "cleanup")

#: os.environ is process-wide: every handler call in the process holds this lock.
ENVIRON_LOCK = threading.RLock()


def find_lambdas_dir() -> Path:
    """``$FOLDSTACK_LAMBDAS_DIR``, else ``<repo root>/lambdas`` found from the package (src layout)."""
    env = os.environ.get("FOLDSTACK_LAMBDAS_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "lambdas"
        if candidate.is_dir() and (parent / "pyproject.toml").exists():
            return candidate
    return here.parents[3] / "lambdas"


def function_name_of(function: str) -> str:
    """``arn:aws:lambda:r:a:function:foldstack-local-x:1`` -> ``x``; ``foldstack-local-x`` -> ``x``."""
    name = function
    if ":function:" in name:
        name = name.split(":function:", 1)[1]
    name = name.split(":", 1)[0]
    if name.startswith(NAME_PREFIX + "-"):
        name = name[len(NAME_PREFIX) + 1 :]
    return name


def environ_snapshot() -> dict[str, str]:
    """A copy of os.environ as no Lambda has it: taken under ENVIRON_LOCK, so never while a
    handler's variables are applied (nor while they are being removed, which would make the
    copy fail with a KeyError)."""
    with ENVIRON_LOCK:
        return dict(os.environ)


@contextlib.contextmanager
def applied_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set ``values`` in os.environ (caller holds ENVIRON_LOCK); restore afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            os.environ[k] = str(v)
        yield
    finally:
        for k, old in saved.items():
            if old is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = old


@contextlib.contextmanager
def task_log_to(path: Path | None) -> Iterator[None]:
    """Send the ``foldstack.task`` logger's lines to `path` (appended) while inside;
    restore its handlers, level and propagation afterwards. Callers hold ENVIRON_LOCK
    (the logger is process-wide, like os.environ). ``None``: leave the logger alone."""
    if path is None:
        yield
        return
    log = logging.getLogger("foldstack.task")
    saved = (list(log.handlers), log.level, log.propagate)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:  # a full or read-only disk: drop the lines rather than fail the task
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers = [handler]
    log.propagate = False
    if log.level == logging.NOTSET:
        log.setLevel(os.environ.get("FOLDSTACK_LOG_LEVEL", "INFO"))
    try:
        yield
    finally:
        log.handlers, _, log.propagate = saved
        log.setLevel(saved[1])
        handler.close()


@dataclass
class LambdaContext:
    """The subset of the Lambda context object handlers use."""

    function_name: str
    invoked_function_arn: str
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    timeout_ms: int = 900_000
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = "local"
    _start: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.log_group_name = self.log_group_name or f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self.timeout_ms - (time.monotonic() - self._start) * 1000))


def error_payload(exc: BaseException) -> dict[str, Any]:
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "stackTrace": traceback.format_tb(exc.__traceback__) if exc.__traceback__ else [],
    }


class LambdaRunner:
    def __init__(
        self,
        lambdas_dir: Path | None = None,
        *,
        lambda_env: Mapping[str, str] | None = None,
        injector: Any = None,
        task_log: Path | None = None,
    ):
        self.lambdas_dir = Path(lambdas_dir) if lambdas_dir else find_lambdas_dir()
        self.task_log = task_log
        self.lambda_env = {str(k): str(v) for k, v in (lambda_env or {}).items()}
        self.injector = injector
        self._modules: dict[str, ModuleType] = {}
        self._lock = threading.Lock()
        self.invocations: list[str] = []

    def names(self) -> list[str]:
        if not self.lambdas_dir.is_dir():
            return []
        return sorted(p.parent.name for p in self.lambdas_dir.glob("*/handler.py"))

    def handler_path(self, name: str) -> Path | None:
        for cand in dict.fromkeys((name, name.replace("-", "_"), name.replace("_", "-"))):
            path = self.lambdas_dir / cand / "handler.py"
            if path.is_file():
                return path
        return None

    def _load(self, name: str, path: Path) -> ModuleType:
        with self._lock:
            module = self._modules.get(name)
        if module is not None:
            return module
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:10]
        mod_name = f"foldstack_local_lambda_{name.replace('-', '_')}_{digest}_{id(self):x}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        with ENVIRON_LOCK, applied_environ(self._env_for(name)):
            sys.path.insert(0, str(path.parent))
            try:
                spec.loader.exec_module(module)
            finally:
                with contextlib.suppress(ValueError):
                    sys.path.remove(str(path.parent))
        with self._lock:
            self._modules.setdefault(name, module)
            return self._modules[name]

    def _env_for(self, name: str) -> dict[str, str]:
        return {"AWS_LAMBDA_FUNCTION_NAME": f"{NAME_PREFIX}-{name}", **self.lambda_env}

    def invoke(self, function: str, event: Any) -> Any:
        """Run the handler; return its JSON round-tripped result or raise LambdaInvocationError."""
        name = function_name_of(function)
        self.invocations.append(name)
        path = self.handler_path(name)
        if path is None:
            raise LambdaInvocationError(
                "Lambda.ResourceNotFoundException",
                {
                    "errorMessage": f"Function not found: {function} (no {self.lambdas_dir}/{name}/handler.py)",
                    "errorType": "Lambda.ResourceNotFoundException",
                    "stackTrace": [],
                },
            )
        if self.injector is not None and hasattr(self.injector, "before_lambda"):
            injected = self.injector.before_lambda(name, event)
            if injected is not None:
                exc = injected() if isinstance(injected, type) else injected
                raise LambdaInvocationError(type(exc).__name__, error_payload(exc))
        try:
            module = self._load(name, path)
            handler = module.handler
        except Exception as exc:  # import errors look like this on Lambda
            payload = error_payload(exc)
            payload["errorType"] = "Runtime.ImportModuleError"
            payload["errorMessage"] = f"Unable to import module 'handler': {exc}"
            raise LambdaInvocationError("Runtime.ImportModuleError", payload) from exc
        context = LambdaContext(function_name=f"{NAME_PREFIX}-{name}", invoked_function_arn=lambda_arn(name))
        event_copy = json.loads(json.dumps(event))
        with ENVIRON_LOCK, applied_environ(self._env_for(name)), task_log_to(self.task_log):
            try:
                result = handler(event_copy, context)
            except Exception as exc:
                raise LambdaInvocationError(type(exc).__name__, error_payload(exc)) from exc
        try:
            return json.loads(json.dumps(result))
        except (TypeError, ValueError) as exc:
            raise LambdaInvocationError(
                "Runtime.MarshalError",
                {
                    "errorMessage": f"Unable to marshal response: {exc}",
                    "errorType": "Runtime.MarshalError",
                    "stackTrace": [],
                },
            ) from exc
