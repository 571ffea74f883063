"""AWS Batch evaluateOnExit semantics (pure evaluator), tabled."""

from __future__ import annotations

from pathlib import Path

import pytest

from foldstack.local.batch_retry import (
    TIMEOUT_STATUS_REASON,
    AttemptOutcome,
    EvaluateOnExit,
    RetryStrategy,
    RetryStrategyError,
    attempts_used,
    decide,
    pattern_matches,
)
from foldstack.workflows.specs import JobsFile

REPO = Path(__file__).resolve().parents[2]

SPOT = "Host EC2 (instance i-0123456789abcdef0) terminated."
EXITED = "Essential container in task exited"
PULL = "CannotPullContainerError: failed to resolve ref"

RETRY_SPOT = {"on_status_reason": "Host EC2*", "action": "RETRY"}
EXIT_ANY = {"on_exit_code": "*", "action": "EXIT"}


def rules(attempts: int, *evaluate_on_exit: dict) -> RetryStrategy:
    """A strategy as jobs.yaml spells it."""
    return RetryStrategy.from_spec({"attempts": attempts, "evaluate_on_exit": list(evaluate_on_exit)})


# The rule set every fold job uses (statemachines/fold/jobs.yaml).
STANDARD = rules(3, RETRY_SPOT, {"on_reason": "CannotPullContainerError*", "action": "RETRY"}, EXIT_ANY)

CASES = [
    # (id, strategy, outcome, attempt, expected retry)
    ("spot-no-exit-code", STANDARD, AttemptOutcome(status_reason=SPOT), 1, True),
    ("spot-with-exit-code-143", STANDARD, AttemptOutcome(exit_code=143, status_reason=SPOT), 1, True),
    ("spot-second-attempt", STANDARD, AttemptOutcome(status_reason=SPOT), 2, True),
    ("spot-attempts-exhausted", STANDARD, AttemptOutcome(status_reason=SPOT), 3, False),
    ("pull-error", STANDARD, AttemptOutcome(status_reason="Task failed to start", reason=PULL), 1, True),
    ("app-exit-1", STANDARD, AttemptOutcome(exit_code=1, status_reason=EXITED), 1, False),
    ("bad-input-exit-2", STANDARD, AttemptOutcome(exit_code=2, status_reason=EXITED), 1, False),
    ("oom-exit-3", STANDARD, AttemptOutcome(exit_code=3, status_reason=EXITED), 1, False),
    (
        "oom-killed-137",
        STANDARD,
        AttemptOutcome(exit_code=137, status_reason="OutOfMemoryError: Container killed"),
        1,
        False,
    ),
    ("timeout-never-retried", STANDARD, AttemptOutcome(status_reason=TIMEOUT_STATUS_REASON, timed_out=True), 1, False),
    ("success-not-retried", STANDARD, AttemptOutcome(exit_code=0, status_reason=EXITED), 1, False),
    ("no-exit-code-unknown-reason-star-matches", STANDARD, AttemptOutcome(status_reason="Something odd"), 1, False),
    ("no-rules-retries", RetryStrategy(attempts=3), AttemptOutcome(exit_code=1), 1, True),
    ("no-rules-cap", RetryStrategy(attempts=3), AttemptOutcome(exit_code=1), 3, False),
    ("single-attempt-default", RetryStrategy(), AttemptOutcome(status_reason=SPOT), 1, False),
    ("no-match-retries", rules(2, {"on_exit_code": "1", "action": "EXIT"}), AttemptOutcome(exit_code=4), 1, True),
    (
        "first-match-wins-exit-before-retry",
        rules(3, EXIT_ANY, RETRY_SPOT),
        AttemptOutcome(exit_code=143, status_reason=SPOT),
        1,
        False,
    ),
    (
        "exit-code-prefix-glob",
        rules(2, {"onExitCode": "13*", "action": "retry"}),
        AttemptOutcome(exit_code=137),
        1,
        True,
    ),
    (
        "all-conditions-must-match",
        RetryStrategy.from_spec(
            {
                "attempts": 2,
                "evaluateOnExit": [
                    {"onStatusReason": "Host EC2*", "onExitCode": "0", "action": "RETRY"},
                    {"onExitCode": "*", "action": "EXIT"},
                ],
            }
        ),
        AttemptOutcome(exit_code=1, status_reason=SPOT),
        1,
        False,
    ),
    (
        "exact-match-is-case-sensitive",
        rules(2, {"on_status_reason": "host ec2*", "action": "RETRY"}, EXIT_ANY),
        AttemptOutcome(exit_code=1, status_reason=SPOT),
        1,
        False,
    ),
]


@pytest.mark.parametrize(("case", "strategy", "outcome", "attempt", "retry"), CASES, ids=[c[0] for c in CASES])
def test_decide(case, strategy, outcome, attempt, retry):
    assert decide(strategy, outcome, attempt).retry is retry


def test_pattern_matching():
    assert pattern_matches("Host EC2*", SPOT)
    assert not pattern_matches("Host EC2", SPOT)
    assert pattern_matches("*", None) and not pattern_matches("1*", None)
    assert pattern_matches("137", "137") and not pattern_matches("13", "137")


@pytest.mark.parametrize(
    "rule",
    [
        {"on_status_reason": "Host EC2 (instance*", "action": "RETRY"},  # parentheses are not allowed
        {"on_status_reason": "*Host", "action": "RETRY"},  # only a trailing *
        {"on_exit_code": "1a", "action": "EXIT"},
        {"on_exit_code": "*", "action": "IGNORE"},
        {"action": "RETRY"},
    ],
)
def test_invalid_rules_rejected(rule):
    with pytest.raises(RetryStrategyError):
        rules(2, rule)


def test_limits():
    with pytest.raises(RetryStrategyError):
        RetryStrategy(attempts=11)
    with pytest.raises(RetryStrategyError):
        RetryStrategy(attempts=2, evaluate_on_exit=tuple(EvaluateOnExit("EXIT", on_exit_code=str(i)) for i in range(6)))


def test_attempts_used():
    spot = AttemptOutcome(status_reason=SPOT)
    ok = AttemptOutcome(exit_code=0)
    assert attempts_used(STANDARD, [spot, spot, ok]) == 3
    assert attempts_used(STANDARD, [spot, AttemptOutcome(exit_code=1), ok]) == 2


def test_fold_jobs_yaml_rules_never_retry_application_errors():
    jobs = JobsFile.load(REPO / "statemachines" / "fold" / "jobs.yaml")
    for job in jobs.jobs.values():
        for code in (1, 2, 3, 137):
            assert not decide(job.retry, AttemptOutcome(exit_code=code, status_reason=EXITED), 1).retry, job.name
        assert decide(job.retry, AttemptOutcome(status_reason=SPOT), 1).retry, job.name
        assert not decide(job.retry, AttemptOutcome(timed_out=True, status_reason=TIMEOUT_STATUS_REASON), 1).retry
