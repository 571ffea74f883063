"""How every `foldstack` command reports: the one home for errors, exit codes and JSON.

An error is one line on stderr, ``error: [code] message (hint)``, printed without rich
markup, so user data (ids, paths, the stable code itself) appears verbatim: ``[bold]x``
stays ``[bold]x``. With ``--json`` the same error is one JSON object on stdout instead:
``{"error": <class>, "code": <reason>, "message": ..., ...details}``.

Exit codes (docs/cli.md, "Exit codes"):

====  =====================================================================================
0     ok (``wait``, ``submit --wait``, ``run``: the run SUCCEEDED)
1     the run FAILED, TIMED_OUT or was ABORTED; ``doctor``: a check failed; an operation
      failed after it started (a download that does not match its checksum); a bug
      (``[internal_error]``; ``FOLDSTACK_DEBUG=1`` or ``-v`` shows the traceback)
2     usage or input: an unknown option value, invalid FASTA or request, a path outside
      the allowed prefixes, an unknown run id, local weights/databases not installed, a
      retry or rerun the run's state does not allow (``run_running``,
      ``nothing_to_retry``), a rerun pinned to a database version no longer installed
      (``db_version_missing``); nothing was started
3     not finished yet: ``wait --timeout`` ran out; ``results`` of an unfinished run
4     configuration or AWS: no AWS credentials or region, the environment is not
      (fully) deployed, an AWS error such as AccessDenied (with AWS's message)
====  =====================================================================================
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import typer

from foldstack.core.errors import (
    AccessDeniedError,
    ConfigurationError,
    DatabaseVersionMissingError,
    FoldstackError,
    InputValidationError,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PENDING, EXIT_CONFIG = 0, 1, 2, 3, 4


class UsageError(FoldstackError):
    """The command line itself is wrong (a missing flag, an option that does not apply)."""

    code = "usage"


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code of an error (see the module docstring)."""
    from pydantic import ValidationError

    from foldstack.client.errors import (
        AwsError,
        NotInstalledError,
        RunNotCompleteError,
        RunNotFoundError,
        RunStateError,
    )

    if isinstance(exc, ConfigurationError | AwsError):
        return EXIT_CONFIG
    if isinstance(exc, RunNotCompleteError):
        return EXIT_PENDING
    if isinstance(exc, InputValidationError | AccessDeniedError | RunNotFoundError | RunStateError | NotInstalledError
                  | DatabaseVersionMissingError | UsageError | ValidationError | ValueError | typer.TyperException):
        return EXIT_USAGE
    return EXIT_FAILED


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _validation_message(exc: Any) -> str:
    """A pydantic ValidationError as one line naming each field."""
    problems = []
    for e in exc.errors(include_url=False):
        where = ".".join(str(p) for p in e.get("loc", ())) or "request"
        got = e.get("input")
        shown = f" (got {got!r})" if isinstance(got, str | int | float | bool) else ""
        problems.append(f"{where}: {e['msg']}{shown}")
    return "invalid request: " + "; ".join(problems)


def error_object(exc: BaseException) -> dict[str, Any]:
    """The JSON form of an error: {"error", "code", "message", ...details}."""
    from pydantic import ValidationError

    if isinstance(exc, FoldstackError):
        return exc.to_dict()
    if isinstance(exc, ValidationError):
        return {"error": "InputValidationError", "code": "invalid_request", "message": _validation_message(exc)}
    if isinstance(exc, typer.TyperException):  # typer's (click's) command-line errors
        return {"error": "UsageError", "code": "usage", "message": exc.format_message()}
    if isinstance(exc, ValueError):
        return {"error": type(exc).__name__, "code": "invalid_request", "message": str(exc)}
    return {"error": type(exc).__name__, "code": "internal_error", "message": str(exc)}


def error_line(code: str, message: str, hint: str | None = None) -> str:
    """``[code] message (hint)`` on one line (the hint only if the message lacks it)."""
    message = _one_line(message)
    if hint and _one_line(hint) not in message:
        message = f"{message} ({_one_line(hint)})"
    return f"[{code}] {message}"


def echo_error(line: str, *extra: str) -> None:
    """``error: <line>`` on stderr, plus indented detail lines; never markup."""
    typer.echo(typer.style("error:", fg="red", bold=True) + " " + line, err=True)
    for text in extra:
        typer.echo(f"  {text}", err=True)


def emit(data: Any) -> None:
    """The one JSON document of a ``--json`` command, on stdout."""
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def report_error(exc: BaseException, *, as_json: bool = False, verbose: bool = False) -> int:
    """Show `exc` the one way every command does; return its exit code."""
    obj = error_object(exc)
    if as_json:
        emit(obj)
    else:
        hint = obj.get("hint") if isinstance(exc, FoldstackError) else None
        debug = verbose or bool(os.environ.get("FOLDSTACK_DEBUG"))
        if obj["code"] == "internal_error":
            message = f"{obj['error']}: {obj['message']}"
            hint = None if debug else "unexpected; FOLDSTACK_DEBUG=1 shows the traceback"
        else:
            message = obj["message"]
        echo_error(error_line(obj["code"], message, hint if isinstance(hint, str) else None))
        if debug and obj["code"] == "internal_error":
            traceback.print_exception(exc, file=sys.stderr)
    return exit_code_for(exc)


def report_usage(exc: typer.TyperException, *, as_json: bool = False) -> int:
    """A command-line error click found before the command ran (missing argument,
    unknown option): the same one line, or JSON, and exit 2."""
    ctx = getattr(exc, "ctx", None)
    hint = f"see `{ctx.command_path} --help`" if ctx is not None else "see `foldstack --help`"
    if as_json:
        emit({"error": "UsageError", "code": "usage", "message": exc.format_message(), "hint": hint})
    else:
        echo_error(error_line("usage", exc.format_message(), hint))
    return EXIT_USAGE


def handled(fn: Callable[..., None]) -> Callable[..., None]:
    """Wrap a command: any error becomes `report_error`'s one line (or JSON, when the
    command was given ``--json``) and its documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - every error is reported the one way
            code = report_error(exc, as_json=bool(kwargs.get("as_json")), verbose=bool(kwargs.get("verbose")))
            raise typer.Exit(code) from None

    return wrapper


def check_choice(option: str, value: str | None, allowed: Iterable[str]) -> None:
    """An option value outside `allowed`: one line with the allowed values (exit 2)."""
    allowed = tuple(allowed)
    if value is not None and value not in allowed:
        raise InputValidationError(f"{option} {value!r} is not one of: {', '.join(allowed)}",
                                   code="invalid_request")


def check_request_options(engine: str, preset: str, msa_tool: str | None) -> None:
    """--engine / --preset / --msa-tool against the run request's own allowed values."""
    from typing import get_args

    from foldstack.core.request import Engine, MsaTool, Preset

    check_choice("--engine", engine, get_args(Engine))
    check_choice("--preset", preset, get_args(Preset))
    check_choice("--msa-tool", msa_tool, get_args(MsaTool))
    if engine == "esmfold" and msa_tool is not None:
        raise InputValidationError("--msa-tool applies to alphafold2 only (esmfold is single-sequence)",
                                   code="invalid_request")


def configure_task_logs(verbose: bool = False) -> None:
    """Local mode runs the Lambda tasks in this process; their structured JSON log lines
    (logger ``foldstack.task``) never reach the terminal by themselves: the local engine
    writes them to ``<home>/runs/<run_id>/logs/tasks.log``, and ``-v`` shows that file as
    it grows (`follow_task_log`)."""
    log = logging.getLogger("foldstack.task")
    log.propagate = False
    for handler in list(log.handlers):  # terminal handlers from an earlier setup in this process
        if type(handler) in (logging.StreamHandler, logging.NullHandler):
            log.removeHandler(handler)
    log.addHandler(logging.NullHandler())


def task_log(client: Any, run_id: str) -> Path | None:
    """A local run's task log (``<home>/runs/<run_id>/logs/tasks.log``); None in the cloud."""
    home = getattr(client, "home", None)
    return Path(home) / "runs" / run_id / "logs" / "tasks.log" if home else None


def log_size(path: Path | None) -> int:
    """The size of a task log now (0 if it does not exist yet)."""
    return path.stat().st_size if path is not None and path.is_file() else 0


def log_start(run: Any, before: int | None = None) -> int | None:
    """Where `run`'s own lines begin in its task log: `before` (the size measured before
    this command started it) when given, else 0 for a run this command created (its log
    is new), else None (from the size on entry)."""
    if before is not None:
        return before
    return 0 if run.existed is False else None


@contextlib.contextmanager
def follow_task_log(path: Path | None, enabled: bool, start: int | None = None) -> Iterator[None]:
    """With ``-v``: copy the lines of `path` (a run's ``tasks.log``) from byte `start` to
    stderr while inside, and whatever is left when leaving. A local run starts working as
    soon as it is submitted, so callers pass where its lines begin (`log_start`); None
    means the file's size on entry."""
    if not enabled or path is None:
        yield
        return
    stop = threading.Event()
    offset = start if start is not None else log_size(path)

    def pump() -> None:
        nonlocal offset
        try:
            with path.open("rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except OSError:
            return
        *lines, rest = data.split(b"\n")
        offset += len(data) - len(rest)
        for line in lines:
            typer.echo(line.decode("utf-8", "replace"), err=True)

    def loop() -> None:
        while not stop.wait(0.2):
            pump()

    thread = threading.Thread(target=loop, name="foldstack-task-log", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        pump()


def report_failure(failure: Any, *, env_args: str = "") -> None:
    """A run that did not succeed: the failing step's own last error line, where its
    full log is, and the command that shows it (`env_args`: e.g. `` --env prod``)."""
    extra = []
    if failure.log:
        extra.append(f"log: {failure.log}")
    if failure.job_id or failure.log:
        where = f" {failure.step} {failure.target.split(',')[0]}" if failure.step and failure.target else \
            f" {failure.step}" if failure.step and failure.job_id else ""  # a Batch step of the run as a whole
        extra.append(f"see: foldstack logs {failure.run_id}{where}{env_args}")
    echo_error(error_line(failure.code, str(failure)), *extra)
