"""submit_many at campaign scale, and the client-side rate limit, under a fake clock."""

from __future__ import annotations

import random
import threading

import pytest

from foldstack.client import AwsApi, FakeClock, RateLimiter
from foldstack.client.ratelimit import max_in_window
from foldstack.core.errors import InputValidationError
from tests.client.conftest import REGION, executions, keys

AA = "ACDEFGHIKLMNPQRSTVWY"


def sequences(n, seed=7):
    rng = random.Random(seed)
    return [(f"seq{i:05d}", "".join(rng.choice(AA) for _ in range(rng.randint(30, 60)))) for i in range(n)]


def test_limiter_never_grants_more_than_rate_per_second_with_threads():
    clock = FakeClock()
    limiter = RateLimiter(40, clock=clock, sleep=clock.sleep, record=True)

    def worker():
        for _ in range(500):
            limiter.acquire()
            clock.sleep(random.random() * 0.01)  # the call itself takes a little (virtual) time

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(limiter.history) == 4000
    assert max_in_window(limiter.history) == 40  # saturated, never above
    assert limiter.history == sorted(limiter.history)


def test_limiter_lets_a_short_burst_through_at_once():
    clock = FakeClock()
    limiter = RateLimiter(40, clock=clock, sleep=clock.sleep)
    for _ in range(40):
        limiter.acquire()
    assert clock() == 0.0
    limiter.acquire()
    assert clock() == pytest.approx(1.0)


@pytest.mark.slow
def test_submit_many_10000_sequences_respects_the_rate_limit(deployed_plain, tmp_path):
    clock = FakeClock()
    api = AwsApi(region=REGION, limiter=RateLimiter(40, clock=clock, sleep=clock.sleep, record=True),
                 sleep=clock.sleep)
    client = deployed_plain.client(api=api, clock=clock, sleep=clock.sleep)
    half = sequences(10_000)
    path = tmp_path / "campaign.fasta"
    path.write_text("".join(f">{i}\n{s}\n" for i, s in half[:5000]))
    runs = client.submit_many([str(path), *half[5000:]], per_run=100, max_concurrency=8, progress=False,
                              engine="esmfold")
    assert len(runs) == 100 and len(set(runs.run_ids)) == 100
    assert len(executions(deployed_plain.state_machine_arn)) == 100
    assert len(keys("fs-inputs", "uploads/")) == 100  # one FASTA per run, content-addressed
    history = api.limiter.history
    # SSM discovery, then per run: put, describe (an execution of that name already?), start
    assert len(history) == api.total_calls == 2 + 100 * 3
    assert max_in_window(history) <= 40
    assert clock() >= (len(history) - 40) / 40 - 1e-6  # the limiter really held calls back
    assert runs.summary() == {"RUNNING": 100}

    # the same campaign again: same batches, same run ids, nothing new started
    again = client.submit_many([str(path), *half[5000:]], per_run=100, progress=False, engine="esmfold")
    assert again.run_ids == runs.run_ids  # (RUNNING + same input: StartExecution is idempotent)
    assert len(executions(deployed_plain.state_machine_arn)) == 100
    assert max_in_window(api.limiter.history) <= 40


def test_submit_many_checks_everything_before_submitting_anything(deployed_plain):
    client = deployed_plain.client()
    records = sequences(250)
    records[180] = ("seq00003", records[180][1])  # duplicate id across batches
    with pytest.raises(InputValidationError, match="duplicate|also appears"):
        client.submit_many(records, per_run=100, progress=False, engine="esmfold")
    records = sequences(250)
    records[220] = ("bad", "MKTAYIAKQ*RQISFV")
    with pytest.raises(InputValidationError, match="'bad'"):
        client.submit_many(records, per_run=100, progress=False, engine="esmfold")
    assert keys("fs-inputs") == [] and executions(deployed_plain.state_machine_arn) == []
