"""AWS Batch ``retryStrategy`` / ``evaluateOnExit`` semantics, in pure Python: the evaluator.

Used by the local engine between job attempts, and by tests that table the rules of
every ``jobs.yaml``. No AWS, no moto. The rules are *checked* once, in
``foldstack.workflows.specs`` (:func:`~foldstack.workflows.specs.check_retry_strategy`);
:class:`RetryStrategy` is built from the jobs.yaml model (:meth:`RetryStrategy.from_model`)
or from an AWS-shaped ``retryStrategy`` dict that an ASL passes to SubmitJob
(:meth:`RetryStrategy.from_spec`), and runs the same checks either way.

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
* **No rule matches -> RETRY** (that is why every jobs.yaml rule list ends with EXIT on
  ``*``; the model enforces it, an ASL-supplied strategy need not).
* Attempts cap: once ``attempts`` attempts have run, the job fails whatever the rules say.
* A job attempt killed by its **timeout is never retried**.
* At most 5 rules.

:meth:`RetryStrategy.from_spec` accepts jobs.yaml's snake_case keys (``on_status_reason``,
``evaluate_on_exit``) and AWS's camelCase (``onStatusReason``, ``evaluateOnExit``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from foldstack.workflows.specs import (
    MAX_ATTEMPTS,
    MAX_RULES,
    MIN_ATTEMPTS,
    RetrySpec,
    RetryStrategyError,
    check_exit_rule,
    check_retry_strategy,
)

__all__ = [
    "MAX_ATTEMPTS", "MAX_RULES", "MIN_ATTEMPTS", "OOM_EXIT_CODE", "OOM_REASON", "TIMEOUT_STATUS_REASON",
    "AttemptOutcome", "Decision", "EvaluateOnExit", "RetryStrategy", "RetryStrategyError", "as_strategy",
    "attempts_used", "decide", "first_matching_rule", "pattern_matches", "should_retry",
]

Action = Literal["RETRY", "EXIT"]

TIMEOUT_STATUS_REASON = "Job attempt duration exceeded timeout"
# What Batch reports for a container the kernel killed for memory: exit 137 (128 + SIGKILL)
# and this container reason. The local engine reports a job killed by SIGKILL that it did not
# kill itself (timeout, terminate) the same way: the likeliest killer is the OOM killer.
OOM_EXIT_CODE = 137
OOM_REASON = "OutOfMemoryError: Container killed due to memory usage"

_KEY_ALIASES = {
    "on_status_reason": "on_status_reason",
    "onstatusreason": "on_status_reason",
    "on_reason": "on_reason",
    "onreason": "on_reason",
    "on_exit_code": "on_exit_code",
    "onexitcode": "on_exit_code",
    "action": "action",
}


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
        # AWS takes the action in any case and the exit code as text; then Batch's checks.
        object.__setattr__(self, "action", str(self.action).upper())
        if self.on_exit_code is not None:
            object.__setattr__(self, "on_exit_code", str(self.on_exit_code))
        check_exit_rule(self)

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
        check_retry_strategy(int(self.attempts), self.evaluate_on_exit, final_exit=False)

    @classmethod
    def from_model(cls, spec: RetrySpec) -> RetryStrategy:
        """From a jobs.yaml ``retry:`` block (the model, already checked)."""
        rules = tuple(
            EvaluateOnExit(r.action, on_status_reason=r.on_status_reason, on_reason=r.on_reason,
                           on_exit_code=r.on_exit_code)
            for r in spec.evaluate_on_exit
        )
        return cls(attempts=spec.attempts, evaluate_on_exit=rules)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> RetryStrategy:
        """From a ``retry:``-shaped or AWS ``retryStrategy`` dict (None -> 1 attempt)."""
        if not spec:
            return cls()
        attempts = spec.get("attempts", 1)
        rules_raw: Iterable[Mapping[str, Any]] = spec.get("evaluate_on_exit") or spec.get("evaluateOnExit") or []
        return cls(attempts=int(attempts), evaluate_on_exit=tuple(EvaluateOnExit.from_spec(r) for r in rules_raw))


def as_strategy(strategy: RetryStrategy | RetrySpec) -> RetryStrategy:
    """The evaluator for a strategy given as either the evaluator or the jobs.yaml model."""
    return strategy if isinstance(strategy, RetryStrategy) else RetryStrategy.from_model(strategy)


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


def decide(strategy: RetryStrategy | RetrySpec, outcome: AttemptOutcome, attempt: int) -> Decision:
    """Should Batch start another attempt after ``attempt`` (1-based) ended with ``outcome``?"""
    strategy = as_strategy(strategy)
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


def should_retry(strategy: RetryStrategy | RetrySpec, outcome: AttemptOutcome, attempt: int) -> bool:
    return decide(strategy, outcome, attempt).retry


def attempts_used(strategy: RetryStrategy | RetrySpec, outcomes: Sequence[AttemptOutcome]) -> int:
    """How many of ``outcomes`` Batch would run (stops at success, EXIT, timeout, cap)."""
    strategy = as_strategy(strategy)
    for n, outcome in enumerate(outcomes, start=1):
        if not should_retry(strategy, outcome, n):
            return n
    return len(outcomes)
