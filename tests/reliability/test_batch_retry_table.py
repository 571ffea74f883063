"""AWS Batch evaluateOnExit semantics (docs/reliability.md), evaluated by
foldstack.local.batch_retry, against every job definition of every
statemachines/*/jobs.yaml (read through the model, foldstack.workflows.specs.JobsFile).
No application error ever consumes a second attempt (on a GPU queue or any other); Spot
reclaims, host loss and image pulls are retried up to the attempts cap; a timed-out
attempt is never retried."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from foldstack.local import batch_retry
from foldstack.local.batch_retry import AttemptOutcome, RetryStrategy, attempts_used, decide
from foldstack.workflows.specs import JobsFile
from tests.jobspecs import BAD_RETRY_STRATEGIES
from tests.reliability.helpers import REPO

JOBS_FILES = sorted((REPO / "statemachines").glob("*/jobs.yaml"))
SPOT = "Host EC2 (instance i-0123456789abcdef0) terminated."
SPOT2 = "Host EC2 (instance i-0fedcba9876543210) terminated."
EXITED = "Essential container in task exited"
TIMEOUT = batch_retry.TIMEOUT_STATUS_REASON


@dataclass(frozen=True)
class Case:
    name: str
    outcome: AttemptOutcome
    kind: str  # "infra" (retry while attempts last), "app" (never retried), "timeout", "ok", "infra_exit"


def out(exit_code=None, status=None, reason=None, timed_out=False):
    return AttemptOutcome(exit_code=exit_code, status_reason=status, reason=reason, timed_out=timed_out)


CASES = [
    # Spot reclaim / host termination: retried
    Case("spot reclaim, no exit code", out(status=SPOT), "infra"),
    Case("spot reclaim, exit 143 (SIGTERM)", out(143, SPOT), "infra"),
    Case("spot reclaim, exit 137 (SIGKILL after 2 min notice)", out(137, SPOT), "infra"),
    Case("spot reclaim, app died with exit 1 on SIGTERM", out(1, SPOT), "infra"),
    Case("spot reclaim, app exit 2 while draining", out(2, SPOT2), "infra"),
    Case("spot reclaim, exit 3 while draining", out(3, SPOT2), "infra"),
    Case("host termination (on-demand host lost)", out(status=SPOT2), "infra"),
    Case("host termination with a container reason", out(status=SPOT, reason="Task stopped by host loss"), "infra"),
    Case("spot reclaim during image pull", out(status=SPOT, reason="CannotPullContainerError: context canceled"),
         "infra"),
    Case("CannotPullContainerError (throttled registry)", out(status="Task failed to start",
         reason="CannotPullContainerError: pull rate limit exceeded"), "infra"),
    Case("CannotPullContainerError (ref not found yet)", out(status="Task failed to start",
         reason="CannotPullContainerError: ref pull has been retried 1 time(s): failed to resolve reference"),
         "infra"),
    Case("CannotPullContainerError with an exit code field", out(None, "Task failed to start",
         "CannotPullContainerError: Error response from daemon"), "infra"),
    # application errors: never a second attempt
    Case("app exit 1 (crash)", out(1, EXITED), "app"),
    Case("app exit 1, no status reason", out(1), "app"),
    Case("app exit 2 (bad input)", out(2, EXITED), "app"),
    Case("app exit 2 with a container reason", out(2, EXITED, "Essential container exited"), "app"),
    Case("app exit 3 (out of memory, escalate size class)", out(3, EXITED), "app"),
    Case("OOM 137 (OutOfMemoryError)", out(137, EXITED, "OutOfMemoryError: Container killed due to memory usage"),
         "app"),
    Case("OOM 137, no container reason", out(137, EXITED), "app"),
    Case("exit 1 with OutOfMemoryError reason", out(1, EXITED, "OutOfMemoryError: Container killed"), "app"),
    Case("segfault 139", out(139, EXITED), "app"),
    Case("abort 134", out(134, EXITED), "app"),
    Case("SIGTERM 143 without host loss", out(143, EXITED), "app"),
    Case("command not found 127", out(127, EXITED), "app"),
    Case("not executable 126", out(126, EXITED), "app"),
    Case("exit 255", out(255, EXITED), "app"),
    Case("exit 1, reason looks like a pull error but later", out(1, EXITED, "Error: CannotPullContainerError"), "app"),
    Case("exit 1, status mentions host in lowercase", out(1, "host EC2 terminated"), "app"),
    Case("exit 1, status with a leading space", out(1, " Host EC2 (instance i-0) terminated."), "app"),
    # timeouts: never retried
    Case("timeout, no exit code", out(status=TIMEOUT, timed_out=True), "timeout"),
    Case("timeout, killed with 137", out(137, TIMEOUT, timed_out=True), "timeout"),
    Case("timeout during spot notice", out(status=SPOT, timed_out=True), "timeout"),
    # other terminal outcomes
    Case("succeeded", out(0, EXITED), "ok"),
    Case("TerminateJob by user, no exit code", out(status="Terminated by user"), "infra_exit"),
    Case("CannotStartContainerError, no exit code", out(status="Task failed to start",
         reason="CannotStartContainerError: Error response from daemon"), "infra_exit"),
    Case("ResourceInitializationError, no exit code", out(status="Task failed to start",
         reason="ResourceInitializationError: failed to create new container runtime task"), "infra_exit"),
]

assert len(CASES) >= 30


def _definitions():
    found = []
    for path in JOBS_FILES:
        jobs = JobsFile.load(path)
        for job in jobs.jobs.values():
            for name, size_class in job.definition_names():
                tier = jobs.queues[job.queue_for(size_class)].tier
                label = f"{path.parent.name}:{name}{'-' + size_class if size_class else ''}"
                found.append(pytest.param(job, tier, id=label))
    return found


DEFINITIONS = _definitions()


def test_every_jobs_yaml_is_covered():
    assert JOBS_FILES and DEFINITIONS
    print(f"\nbatch retry table: {len(CASES)} cases x {len(DEFINITIONS)} job definitions "
          f"from {len(JOBS_FILES)} jobs.yaml = {len(CASES) * len(DEFINITIONS)} evaluations")


@pytest.mark.parametrize("job, tier", DEFINITIONS)
def test_job_definition_rules_are_well_formed(job, tier):
    strategy = job.retry
    assert job.timeout_seconds and job.timeout_seconds > 0, "Batch has no default timeout"
    assert 1 <= strategy.attempts <= batch_retry.MAX_ATTEMPTS
    assert 1 <= len(strategy.evaluate_on_exit) <= batch_retry.MAX_RULES
    last = strategy.evaluate_on_exit[-1]
    assert last.action == "EXIT" and last.on_exit_code == "*" and last.on_status_reason is None
    assert any(r.action == "RETRY" and r.on_status_reason == "Host EC2*" for r in strategy.evaluate_on_exit)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("job, tier", DEFINITIONS)
def test_retry_decision(job, tier, case):
    strategy: RetryStrategy = job.retry
    first = decide(strategy, case.outcome, 1)
    if case.kind == "infra":
        assert first.retry == (strategy.attempts > 1), first.why
        # ... and never past the cap: the same infra failure every time uses exactly `attempts`
        assert attempts_used(strategy, [case.outcome] * 12) == strategy.attempts
    else:
        assert not first.retry, f"{case.name} would start attempt 2 on a {tier} queue: {first.why}"
        assert attempts_used(strategy, [case.outcome, out(0, EXITED)]) == 1


@pytest.mark.parametrize("case", [c for c in CASES if c.kind == "app"], ids=lambda c: c.name)
@pytest.mark.parametrize("job, tier", DEFINITIONS)
def test_app_errors_never_take_a_second_attempt_after_a_spot_retry(job, tier, case):
    strategy = job.retry
    used = attempts_used(strategy, [out(status=SPOT), case.outcome, out(0, EXITED), out(0, EXITED)])
    assert used == min(2, strategy.attempts)


@pytest.mark.parametrize("case", [c for c in CASES if c.kind == "app"], ids=lambda c: c.name)
@pytest.mark.parametrize("job, tier", DEFINITIONS)
def test_app_errors_never_retry_under_the_strict_reading_either(job, tier, case, monkeypatch):
    """AWS does not say whether a pattern matches a field the attempt lacks. Under the
    strict reading (it never does), application errors (which always carry an exit code)
    decide the same way."""
    original = batch_retry.pattern_matches
    monkeypatch.setattr(batch_retry, "pattern_matches",
                        lambda pattern, value: False if value is None else original(pattern, value))
    assert not decide(job.retry, case.outcome, 1).retry


@pytest.mark.parametrize("spec", BAD_RETRY_STRATEGIES, ids=range(len(BAD_RETRY_STRATEGIES)))
def test_rules_reject_what_aws_rejects(spec):
    with pytest.raises(batch_retry.RetryStrategyError):
        RetryStrategy.from_spec(spec)


def test_spot_exhaustion_falls_back_to_on_demand_once():
    import json

    rendered = json.loads((REPO / "statemachines" / "rendered" / "fold.asl.json").read_text())
    text = json.dumps(rendered)
    for path in JOBS_FILES:
        for job in JobsFile.load(path).jobs.values():
            fallback = job.fallback_queue
            if fallback:
                assert f"queue_{fallback.replace('-', '_')}_arn" in text, f"{job.name}: no {fallback} resubmission"
    # executed on the local engine: tests/workflows/test_scale_local.py (Spot exhausted -> one
    # on-demand resubmission; an application error never falls back)
