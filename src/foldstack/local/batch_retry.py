"""AWS Batch ``retryStrategy`` / ``evaluateOnExit`` semantics, in pure Python.

Used by the local engine between job attempts, and by tests that table the rules of
every ``jobs.yaml``. No AWS, no moto.

Semantics (AWS Batch docs, "Automated job retries" and ``EvaluateOnExit``):

* ``attempts`` is the total number of attempts (1..10); without a retry strategy a job
  runs once.
* Rules are checked in order; the **first matching rule wins** and its ``action``
  (``RETRY`` or ``EXIT``, case-insensitive) decides.
* A rule matches when *every* condition it sets matches; a rule with no condition at
  all is invalid. Conditions: ``onStatusReason`` (the job attempt's status reason),
  ``onReason`` (the container's reason, e.g. ``CannotPullContainerError: ...``),
  ``onExitCode`` (the decimal exit code).
* Patterns: letters, digits, ``.``, ``:`` and white space, optionally ending in **one
  ``*``**, meaning "starts with" (anything else is rejected, as AWS does). Without
  ``*`` the match is exact and case-sensitive.
  ``onExitCode`` patterns contain only digits and an optional trailing ``*``.
* If the attempt lacks the field a condition tests (e.g. no exit code after a Spot
  reclaim), only the bare pattern ``"*"`` matches it. (Documented local choice; AWS
  does not specify it. Our jobs.yaml rules put ``Host EC2*`` first, so the outcome does
  not depend on it.)
* **No rule matches -> RETRY** (that is why every rule list ends with EXIT on ``*``).
* Attempts cap: once ``attempts`` attempts have run, the job fails whatever the rules say.
* A job attempt killed by its **timeout is never retried**.
* At most 5 rules.

Keys are accepted in jobs.yaml's snake_case (``on_status_reason``, ``evaluate_on_exit``)
and in AWS's camelCase (``onStatusReason``, ``evaluateOnExit``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Action = Literal["RETRY", "EXIT"]

MAX_RULES = 5
MIN_ATTEMPTS, MAX_ATTEMPTS = 1, 10
TIMEOUT_STATUS_REASON = "Job attempt duration exceeded timeout"

_REASON_PATTERN = re.compile(r"^[A-Za-z0-9.:\s]*\*?$")
_EXIT_CODE_PATTERN = re.compile(r"^[0-9]*\*?$")

_KEY_ALIASES = {
    "on_status_reason": "on_status_reason",
    "onstatusreason": "on_status_reason",
    "on_reason": "on_reason",
    "onreason": "on_reason",
    "on_exit_code": "on_exit_code",
    "onexitcode": "on_exit_code",
    "action": "action",
}


class RetryStrategyError(ValueError):
    """A retry strategy or evaluateOnExit rule that AWS Batch would reject."""


def pattern_matches(pattern: str, value: str | None) -> bool:
    """AWS Batch glob: exact match, or prefix match when the pattern ends with ``*``."""
    if value is None:
        return pattern == "*"
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


@dataclass(frozen=True)
class EvaluateOnExit:
    action: Action
    on_status_reason: str | None = None
    on_reason: str | None = None
    on_exit_code: str | None = None

    def __post_init__(self) -> None:
        action = str(self.action).upper()
        if action not in ("RETRY", "EXIT"):
            raise RetryStrategyError(f"evaluateOnExit action must be RETRY or EXIT, got {self.action!r}")
        object.__setattr__(self, "action", action)
        if self.on_status_reason is None and self.on_reason is None and self.on_exit_code is None:
            raise RetryStrategyError("evaluateOnExit rule needs onStatusReason, onReason or onExitCode")
        for name in ("on_status_reason", "on_reason"):
            value = getattr(self, name)
            if value is not None and (len(value) > 512 or not _REASON_PATTERN.match(value)):
                raise RetryStrategyError(
                    f"{name} {value!r}: letters, digits, '.', ':', spaces and one trailing '*' only"
                )
        if self.on_exit_code is not None:
            code = str(self.on_exit_code)
            object.__setattr__(self, "on_exit_code", code)
            if len(code) > 512 or not _EXIT_CODE_PATTERN.match(code) or code == "":
                raise RetryStrategyError(f"on_exit_code {code!r}: digits and one trailing '*' only")

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> EvaluateOnExit:
        kwargs: dict[str, Any] = {}
        for key, value in spec.items():
            norm = _KEY_ALIASES.get(key.replace("-", "_").lower()) or _KEY_ALIASES.get(key.replace("_", "").lower())
            if norm is None:
                raise RetryStrategyError(f"unknown evaluateOnExit key {key!r}")
            kwargs[norm] = value if norm == "action" else str(value)
        if "action" not in kwargs:
            raise RetryStrategyError(f"evaluateOnExit rule {dict(spec)!r} has no action")
        return cls(**kwargs)

    def matches(self, outcome: AttemptOutcome) -> bool:
        checks = (
            (self.on_status_reason, outcome.status_reason),
            (self.on_reason, outcome.reason),
            (self.on_exit_code, None if outcome.exit_code is None else str(outcome.exit_code)),
        )
        return all(pattern_matches(p, v) for p, v in checks if p is not None)


@dataclass(frozen=True)
class RetryStrategy:
    attempts: int = 1
    evaluate_on_exit: tuple[EvaluateOnExit, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not MIN_ATTEMPTS <= int(self.attempts) <= MAX_ATTEMPTS:
            raise RetryStrategyError(f"attempts must be {MIN_ATTEMPTS}..{MAX_ATTEMPTS}, got {self.attempts}")
        if len(self.evaluate_on_exit) > MAX_RULES:
            raise RetryStrategyError(f"at most {MAX_RULES} evaluateOnExit rules, got {len(self.evaluate_on_exit)}")

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> RetryStrategy:
        """From jobs.yaml's ``retry:`` block or an AWS ``retryStrategy`` dict (None -> 1 attempt)."""
        if not spec:
            return cls()
        attempts = spec.get("attempts", 1)
        rules_raw: Iterable[Mapping[str, Any]] = spec.get("evaluate_on_exit") or spec.get("evaluateOnExit") or []
        return cls(attempts=int(attempts), evaluate_on_exit=tuple(EvaluateOnExit.from_spec(r) for r in rules_raw))


@dataclass(frozen=True)
class AttemptOutcome:
    """How one job attempt ended (as Batch reports it)."""

    exit_code: int | None = None
    status_reason: str | None = None
    reason: str | None = None  # container reason, e.g. "CannotPullContainerError: ..."
    timed_out: bool = False

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


@dataclass(frozen=True)
class Decision:
    retry: bool
    why: str
    rule: EvaluateOnExit | None = None


def first_matching_rule(rules: Sequence[EvaluateOnExit], outcome: AttemptOutcome) -> EvaluateOnExit | None:
    for rule in rules:
        if rule.matches(outcome):
            return rule
    return None


def decide(strategy: RetryStrategy, outcome: AttemptOutcome, attempt: int) -> Decision:
    """Should Batch start another attempt after ``attempt`` (1-based) ended with ``outcome``?"""
    if outcome.succeeded:
        return Decision(False, "succeeded")
    if outcome.timed_out:
        return Decision(False, "timed out (never retried)")
    if attempt >= strategy.attempts:
        return Decision(False, f"attempts exhausted ({attempt}/{strategy.attempts})")
    rule = first_matching_rule(strategy.evaluate_on_exit, outcome)
    if rule is None:
        return Decision(True, "no evaluateOnExit rule matched (retried)")
    return Decision(rule.action == "RETRY", f"rule {rule} -> {rule.action}", rule)


def should_retry(strategy: RetryStrategy, outcome: AttemptOutcome, attempt: int) -> bool:
    return decide(strategy, outcome, attempt).retry


def attempts_used(strategy: RetryStrategy, outcomes: Sequence[AttemptOutcome]) -> int:
    """How many of ``outcomes`` Batch would run (stops at success, EXIT, timeout, cap)."""
    for n, outcome in enumerate(outcomes, start=1):
        if not should_retry(strategy, outcome, n):
            return n
    return len(outcomes)
