"""Errors the client raises besides the core ones (InputValidationError, AccessDeniedError,
ConfigurationError are re-used from `foldstack.core.errors`)."""

from __future__ import annotations

from foldstack.core.errors import FoldstackError

ACCESS_DENIED_CODES = frozenset({
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError",
    "UnrecognizedClientException", "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException",
})


class AwsError(FoldstackError):
    """An AWS call failed with an error that is not worth retrying (or retries ran out).

    The message is AWS's own, prefixed by the operation; `aws_code` is the AWS error code.
    """

    code = "aws_error"

    def __init__(self, message: str, *, aws_code: str, operation: str, status: int | None = None,
                 attempts: int = 1) -> None:
        super().__init__(
            message,
            code="aws_access_denied" if aws_code in ACCESS_DENIED_CODES else "aws_error",
            aws_code=aws_code, operation=operation, status=status, attempts=attempts,
        )
        self.aws_code, self.operation, self.status, self.attempts = aws_code, operation, status, attempts


class RunNotFoundError(FoldstackError):
    code = "run_not_found"


class RunNotCompleteError(FoldstackError):
    """Outputs were asked for before the run's manifest exists."""

    code = "run_not_complete"


class NotInstalledError(FoldstackError):
    """Local mode: the engine's model weights or sequence databases are not on this
    machine (code `weights_missing` or `databases_missing`); nothing was started."""

    code = "not_installed"


class RunStateError(FoldstackError):
    """The run is not in a state that allows what was asked; nothing was started.
    Codes: ``run_running`` (retry or rerun while an attempt runs), ``nothing_to_retry``
    (retry of a run that succeeded)."""

    code = "run_state"
