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


class ConfigurationError(FoldstackError):
    """Environment configuration is missing or malformed."""

    code = "configuration"
