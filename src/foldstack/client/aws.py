"""Every AWS call the client makes goes through `AwsApi.call`: one rate limiter, one
retry policy, one call counter.

Retries: only throttling and 5xx responses, with capped exponential backoff and full
jitter (botocore's own retries are switched off so nothing is retried twice or hidden).
Anything else (AccessDenied, validation, not found, ...) raises `AwsError` at once with
AWS's message; a few callers catch specific codes (ExecutionAlreadyExists, NoSuchKey).

Configuration comes first: `session_for` builds the session (honouring `AWS_REGION` as
well as `AWS_DEFAULT_REGION`) and `check_configured` fails in well under a second with a
`ConfigurationError` naming what to set when there is no region or no credentials. The
credential probe is local: it never waits for the EC2 instance metadata service unless
this machine is an EC2 instance (then botocore's 1 s timeout and one attempt), so a laptop
without AWS configuration gets its answer at once instead of after ~15 s of IMDS retries.
botocore's own errors during a call (expired SSO token, no network) become a
`ConfigurationError` or an `AwsError` too, never a traceback.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from foldstack.client.errors import AwsError
from foldstack.client.ratelimit import RateLimiter
from foldstack.core.errors import ConfigurationError

THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "RequestLimitExceeded", "RequestThrottled", "SlowDown",
    "ProvisionedThroughputExceededException", "EC2ThrottledException", "PriorRequestNotComplete",
})
# Not worth a retry even though AWS returns them with a 5xx-looking name.
_NEVER_RETRY = frozenset({"ExecutionLimitExceeded"})


LOCAL_HINT = "or use --env local / Client.local() to run on this machine"
_DMI = ("/sys/devices/virtual/dmi/id/sys_vendor", "/sys/devices/virtual/dmi/id/board_asset_tag",
        "/sys/hypervisor/uuid")


def session_for(region: str | None = None, profile: str | None = None) -> Any:
    """A boto3 session; the region from `region`, else `AWS_REGION`, else botocore's own
    lookup (`AWS_DEFAULT_REGION`, the profile). A profile that does not exist is a
    `ConfigurationError`."""
    import boto3
    from botocore.exceptions import BotoCoreError

    try:
        return boto3.session.Session(region_name=region or os.environ.get("AWS_REGION") or None,
                                     profile_name=profile)
    except BotoCoreError as exc:  # ProfileNotFound and friends
        raise ConfigurationError(f"AWS configuration: {exc}", code="aws_profile",
                                 hint=f"check AWS_PROFILE and ~/.aws/config, {LOCAL_HINT}") from None


def on_ec2() -> bool:
    """This machine is an EC2 instance (DMI/hypervisor ids; local files, no network)."""
    for path in _DMI:
        try:
            with open(path) as fh:
                text = fh.read(64).strip().lower()
        except OSError:
            continue
        if "amazon" in text or text.startswith("ec2") or text.startswith("i-"):
            return True
    return False


def check_configured(session: Any) -> None:
    """Raise `ConfigurationError` (code `no_region`, `no_credentials` or `aws_profile`)
    naming what to set, without any network call except, on EC2 only, one short probe of
    the instance metadata service."""
    from botocore.exceptions import BotoCoreError

    missing = []
    if not session.region_name:
        missing.append("region")
    # botocore reads AWS_EC2_METADATA_DISABLED when it builds the credential chain (on
    # this first call): off this machine is not EC2, so no IMDS timeouts now or later.
    # On EC2 botocore's defaults apply (1 s timeout, 1 attempt).
    disable_imds = not on_ec2() and "AWS_EC2_METADATA_DISABLED" not in os.environ
    try:
        if disable_imds:
            os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
        credentials = session.get_credentials()
    except BotoCoreError as exc:
        raise ConfigurationError(f"AWS credentials: {exc}", code="aws_profile",
                                 hint=f"check AWS_PROFILE and ~/.aws/config, {LOCAL_HINT}") from None
    finally:
        if disable_imds:
            os.environ.pop("AWS_EC2_METADATA_DISABLED", None)
    if credentials is None:
        missing.append("credentials")
    if not missing:
        return
    what = {
        ("region",): ("no_region", "no AWS region is configured",
                      "set AWS_REGION, AWS_DEFAULT_REGION or `region` in your AWS profile"),
        ("credentials",): ("no_credentials", "no AWS credentials were found",
                           "set AWS_PROFILE and run `aws sso login` if it uses SSO, or set AWS_ACCESS_KEY_ID "
                           "and AWS_SECRET_ACCESS_KEY"),
        ("region", "credentials"): ("no_credentials", "no AWS credentials and no AWS region are configured",
                                    "set AWS_PROFILE and AWS_REGION, or AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY "
                                    "and AWS_REGION"),
    }[tuple(missing)]
    raise ConfigurationError(what[1], code=what[0], missing=missing, hint=f"{what[2]}, {LOCAL_HINT}")


class RetryPolicy:
    """Capped exponential backoff with full jitter (AWS architecture blog's recommendation)."""

    def __init__(self, max_attempts: int = 8, base: float = 0.2, cap: float = 20.0,
                 rng: random.Random | None = None) -> None:
        self.max_attempts, self.base, self.cap = max_attempts, base, cap
        self._rng = rng or random.Random()  # nosec B311 - backoff jitter, not crypto

    def delay(self, attempt: int) -> float:
        return self._rng.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))

    @staticmethod
    def retryable(code: str, status: int | None) -> bool:
        if code in _NEVER_RETRY:
            return False
        return code in THROTTLING_CODES or (status is not None and 500 <= status <= 599)


def error_details(exc: Exception) -> tuple[str, str, int | None]:
    response = getattr(exc, "response", None) or {}
    err = response.get("Error", {})
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(err.get("Code", type(exc).__name__)), str(err.get("Message", exc)), status


def _configuration_error(exc: Exception, where: str = "") -> Exception:
    """botocore's own (non-HTTP) errors: missing/expired credentials or region are
    configuration; anything else (no network, endpoint unreachable) is an AWS error."""
    from botocore.exceptions import (
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        TokenRetrievalError,
        UnauthorizedSSOTokenError,
    )

    prefix = f"{where}: " if where else ""
    if isinstance(exc, NoRegionError):
        return ConfigurationError(f"{prefix}no AWS region is configured", code="no_region",
                                  hint=f"set AWS_REGION, {LOCAL_HINT}")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError | TokenRetrievalError | UnauthorizedSSOTokenError):
        return ConfigurationError(f"{prefix}{exc}", code="no_credentials",
                                  hint=f"set AWS_PROFILE and run `aws sso login` if it uses SSO, {LOCAL_HINT}")
    return AwsError(f"{prefix}{type(exc).__name__}: {exc}", aws_code=type(exc).__name__,
                    operation=where.rsplit(":", 1)[-1] or "client")


class AwsApi:
    """boto3 clients for one region, behind a shared rate limiter and retry policy."""

    def __init__(
        self,
        session: Any = None,
        *,
        region: str | None = None,
        limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if session is None:
            session = session_for(region)
        self.session = session
        self.region = region or session.region_name
        self.limiter = limiter or RateLimiter()
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()  # "service:Operation" -> calls sent (retries included)
        self.retries = 0

    def client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                from botocore.config import Config

                self._clients[service] = self.session.client(
                    service, region_name=self.region,
                    config=Config(retries={"total_max_attempts": 1, "mode": "standard"},
                                  max_pool_connections=32),
                )
            return self._clients[service]

    def set_client(self, service: str, client: Any) -> None:
        """Use a given client (tests: a Stubber-activated one)."""
        with self._lock:
            self._clients[service] = client

    def with_region(self, region: str) -> AwsApi:
        """Same session, limiter, policy and counters, clients for another region."""
        if region == self.region:
            return self
        other = AwsApi(self.session, region=region, limiter=self.limiter, retry=self.retry, sleep=self._sleep)
        other.calls = self.calls
        return other

    def call(self, service: str, operation: str, *, allow: tuple[str, ...] = (), **params: Any) -> Any:
        """Call `client.<operation>(**params)`. Codes in `allow` are re-raised as the
        original botocore ClientError so the caller can handle them."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            method = getattr(self.client(service), operation)
        except BotoCoreError as exc:  # NoRegionError and the like, at client creation
            raise _configuration_error(exc) from None
        attempt = 0
        while True:
            attempt += 1
            self.limiter.acquire()
            self.calls[f"{service}:{operation}"] += 1
            try:
                return method(**params)
            except ClientError as exc:
                code, message, status = error_details(exc)
                if code in allow:
                    raise
                if self.retry.retryable(code, status) and attempt < self.retry.max_attempts:
                    self.retries += 1
                    self._sleep(self.retry.delay(attempt))
                    continue
                raise AwsError(
                    f"{service}:{operation}: {code}: {message}", aws_code=code, operation=operation,
                    status=status, attempts=attempt,
                ) from exc
            except BotoCoreError as exc:
                raise _configuration_error(exc, f"{service}:{operation}") from None

    def paginate(self, service: str, operation: str, key: str, *, cursor_in: str = "nextToken",
                 cursor_out: str = "nextToken", **params: Any) -> Iterator[Any]:
        """Every item of every page (no silent truncation): follows tokens to the end."""
        token = None
        seen: set[str] = set()
        while True:
            page = self.call(service, operation, **params, **({cursor_in: token} if token else {}))
            yield from page.get(key, [])
            token = page.get(cursor_out)
            if not token or token in seen:
                return
            seen.add(token)

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())
