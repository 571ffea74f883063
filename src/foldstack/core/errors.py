"""Typed errors. The class name of a Lambda-raised error is the Step Functions error
name the ASL catches, so renaming a class is an interface change."""

from __future__ import annotations

from typing import Any


class FoldstackError(Exception):
    """Base class. `code` is a stable, machine-readable reason (snake_case)."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.details = {k: v for k, v in details.items() if v is not None}

    def __str__(self) -> str:
        # The code leads the message so it survives transports that keep only the text
        # (a Lambda error's errorMessage, a Step Functions cause).
        return f"[{self.code}] {super().__str__()}"

    @property
    def message(self) -> str:
        return super().__str__()

    def to_dict(self) -> dict[str, Any]:
        return {"error": type(self).__name__, "code": self.code, "message": self.message, **self.details}


class InputValidationError(FoldstackError):
    """The request or its FASTA is invalid. Never retried; nothing was written."""

    code = "invalid_input"

    def __init__(
        self,
        message: str,
        *,
        code: str = "invalid_input",
        source: str | None = None,
        record: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        where = []
        if source:
            where.append(source)
        if line is not None:
            where.append(f"line {line}")
        if record:
            where.append(f"record '{record}'")
        full = f"{', '.join(where)}: {message}" if where else message
        if hint:
            full = f"{full} ({hint})"
        super().__init__(full, code=code, source=source, record=record, line=line, hint=hint)


class AccessDeniedError(FoldstackError):
    """A URI lies outside the prefixes this environment allows."""

    code = "access_denied"


class StagingError(FoldstackError):
    """Inputs could not be staged (changed since validation, unreadable, copy failed)."""

    code = "staging_failed"


class OutputsNotReadyError(FoldstackError):
    """A step's outputs are not (yet) visible in scratch; retryable (FSx export lag)."""

    code = "outputs_not_ready"


class OutputIntegrityError(FoldstackError):
    """A step's outputs do not match the checksums its done-file recorded."""

    code = "output_integrity"


class PublishError(FoldstackError):
    """Publishing results failed partway (a storage error). What was written has been
    removed again, so publishing can simply be retried."""

    code = "publish_failed"


class TooManyFailuresError(FoldstackError):
    """More of a run's targets failed than its failure budget (``max_failed_fraction``)
    allows. Raised by Collect Outputs after it published what succeeded and the manifest
    (outcome ``failed``), so the run FAILS without losing any finished target."""

    code = "too_many_failures"


class ConfigurationError(FoldstackError):
    """Environment configuration is missing or malformed."""

    code = "configuration"


class DatabaseVersionMissingError(FoldstackError):
    """A rerun pins a database version that is no longer installed (locally under
    ``$FOLDSTACK_HOME/db``, in the cloud under the database prefix); nothing was started.
    ``details``: ``missing`` ({name: version}) and where it was looked for."""

    code = "db_version_missing"


# --- The step contract's errors: a Batch step exits with the class's code -------------
EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_OUT_OF_MEMORY = 3
EXIT_INPUTS_NOT_READY = 75  # EX_TEMPFAIL (sysexits.h): try again later


class StepError(Exception):
    """An expected failure with a contract exit code."""

    exit_code = 1


class BadInputError(StepError):
    """Input the step cannot use (missing/invalid FASTA, unknown engine/preset, missing
    weights or databases). Retrying would not help."""

    exit_code = EXIT_BAD_INPUT


class DamagedFileError(BadInputError):
    """A file the step needs is there but cannot be used (truncated, garbled, not the format
    it should be). Exit 2: another attempt of the step would read the same bytes; the
    message (one line, led by `code`) names the file and what rebuilds it."""

    code = "damaged_file"

    def __init__(self, message: str, *, path: object, code: str | None = None) -> None:  # path: str | Path
        super().__init__(message)
        self.path = str(path)
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"[{self.code}] {super().__str__()}"


class InputsNotReadyError(StepError):
    """A step's inputs (another step's outputs in scratch) are not visible yet, or not yet
    as their producer's done record lists them (size, sha256), after a bounded wait: on FSx
    they may still be importing from another AZ's export. Exit 75, which the job
    definitions' ``evaluateOnExit`` retries (jobs.yaml); never bad input. The message is one
    line, led by ``code``, naming the file."""

    exit_code = EXIT_INPUTS_NOT_READY
    code = "inputs_not_ready"

    def __init__(self, message: str, *, path: object) -> None:  # path: str | Path
        super().__init__(message)
        self.path = str(path)

    def __str__(self) -> str:
        return f"[{self.code}] {super().__str__()}"


class OutOfMemoryError(StepError):
    """The target does not fit this machine; the workflow retries a larger size class."""

    exit_code = EXIT_OUT_OF_MEMORY


_OOM_MARKERS = ("RESOURCE_EXHAUSTED", "out of memory", "Out of memory", "can't allocate memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for MemoryError, torch's OutOfMemoryError and XLA RESOURCE_EXHAUSTED,
    looking through the exception chain."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, MemoryError | OutOfMemoryError):
            return True
        if type(cur).__name__ in {"OutOfMemoryError", "XlaRuntimeError", "JaxRuntimeError"} or isinstance(
            cur, RuntimeError
        ):
            text = str(cur)
            if type(cur).__name__ == "OutOfMemoryError" or any(m in text for m in _OOM_MARKERS):
                return True
        cur = cur.__cause__ or cur.__context__
    return False
