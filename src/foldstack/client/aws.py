"""Every AWS call the client makes goes through `AwsApi.call`: one rate limiter, one
retry policy, one call counter.

Retries: only throttling and 5xx responses, with capped exponential backoff and full
jitter (botocore's own retries are switched off so nothing is retried twice or hidden).
Anything else (AccessDenied, validation, not found, ...) raises `AwsError` at once with
AWS's message; a few callers catch specific codes (ExecutionAlreadyExists, NoSuchKey).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from foldstack.client.errors import AwsError
from foldstack.client.ratelimit import RateLimiter

THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "RequestLimitExceeded", "RequestThrottled", "SlowDown",
    "ProvisionedThroughputExceededException", "EC2ThrottledException", "PriorRequestNotComplete",
})
# Not worth a retry even though AWS returns them with a 5xx-looking name.
_NEVER_RETRY = frozenset({"ExecutionLimitExceeded"})


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
            import boto3

            session = boto3.session.Session(region_name=region)
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
        from botocore.exceptions import ClientError

        method = getattr(self.client(service), operation)
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
