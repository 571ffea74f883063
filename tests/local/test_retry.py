"""Retry, rerun and cancel in local mode, counted: a retry after a failure recomputes only
the failed target (the finished ones were kept in scratch by Cleanup), a rerun recomputes
every target, a cancel leaves nothing in scratch but finished targets' step outputs, and
an ordinary resubmit of a finished run stays idempotent.

The jobs are `durable_step.py` (it counts each computed target and skips a target whose
done record is valid, as the real steps do); the two targets share one Predict batch,
`b` (shorter) first, so a failure of `a` comes after `b` was written."""

from __future__ import annotations

import json

import pytest

from foldstack.local.errors import RunStateConflict
from tests.conftest import files_under
from tests.local.conftest import until


def _scratch(local, run_id):
    root = local.home / "scratch" / run_id
    return sorted(str(p.relative_to(root)) for p in files_under(root))


def _finished_only(local, run_id):
    """The step folders left in scratch: only finished targets' (no inputs, attempt dirs,
    cache records or batch plans)."""
    return sorted({"/".join(rel.split("/")[:2]) for rel in _scratch(local, run_id)})


@pytest.mark.slow
def test_retry_after_a_failure_recomputes_only_the_failed_target(local):
    run = local.runner(fail="predict:a").submit(local.request)
    assert run.wait(120) == "FAILED", run.record()
    run_id = run.run_id
    assert local.starts() == {"msa-a": 1, "msa-b": 1, "predict-a": 1, "predict-b": 1}
    # Cleanup on the failure path kept the finished targets' step outputs, nothing else
    assert _finished_only(local, run_id) == ["msa/a", "msa/b", "predict/b"]
    assert "predict/b/predict.done.json" in _scratch(local, run_id)
    assert run.record()["execution_name"] == run_id  # attempt 1 is named by the run id
    # 1 of 2 failed, beyond the default budget: the run FAILED, but b is published, with the manifest
    assert "[too_many_failures] 1 of 2 targets failed (1 crash" in run.record()["cause"]
    failed = json.loads((local.out / run_id / "manifest.json").read_text())
    assert (failed["outcome"], [t["id"] for t in failed["targets"]]) == ("failed", ["b"])
    assert [(f["target"], f["step"], f["code"]) for f in failed["failures"]] == [("a", "predict", "crash")]
    assert (local.out / run_id / "b" / "target.json").is_file() and not (local.out / run_id / "a").exists()

    again = local.runner().retry(run_id)
    assert again.run_id == run_id and not again.existed
    assert again.wait(120) == "SUCCEEDED", again.record()
    assert local.starts() == {"msa-a": 1, "msa-b": 1, "predict-a": 2, "predict-b": 1}  # only a again
    record = local.record(run_id)
    assert (record["execution"], record["execution_name"], record["trigger"]) == (2, f"{run_id}-a2", "retry")
    assert record["previous"][-1]["status"] == "FAILED"
    manifest = json.loads((local.out / run_id / "manifest.json").read_text())
    assert sorted(t["id"] for t in manifest["targets"]) == ["a", "b"]
    assert (manifest["outcome"], manifest["failures"]) == ("succeeded", [])
    assert not (local.home / "scratch" / run_id).exists()  # a success removes everything

    # an ordinary resubmit is still idempotent, and a succeeded run has nothing to retry
    same = local.runner().submit(local.request)
    assert same.existed and local.record(run_id)["execution"] == 2
    with pytest.raises(RunStateConflict) as err:
        local.runner().retry(run_id)
    assert err.value.code == "nothing_to_retry" and "--rerun" in err.value.details["hint"]


@pytest.mark.slow
def test_rerun_recomputes_every_target(local):
    run = local.runner(fail="predict:a").submit(local.request)
    assert run.wait(120) == "FAILED"
    assert _finished_only(local, run.run_id) == ["msa/a", "msa/b", "predict/b"]

    rerun = local.runner().submit(local.request, rerun=True)
    assert rerun.run_id == run.run_id and not rerun.existed
    assert rerun.wait(120) == "SUCCEEDED"
    # nothing kept in scratch was used: both predictions ran again. The MSAs come from the
    # MSA cache, which the first attempt filled as its batch finished (reuse_msa applies)
    assert local.starts() == {"msa-a": 1, "msa-b": 1, "predict-a": 2, "predict-b": 2}
    record = local.record(run.run_id)
    assert (record["execution_name"], record["trigger"]) == (f"{run.run_id}-a2", "rerun")
    assert record["discarded"]["scratch_deleted"] > 0

    # after a success: the results are withdrawn and published again; the MSAs come from
    # the MSA cache the first success filled (the request's reuse_msa still applies)
    manifest = local.out / run.run_id / "manifest.json"
    first = json.loads(manifest.read_text())["created_at"]
    again = local.runner().submit(local.request, rerun=True)
    assert again.wait(120) == "SUCCEEDED"
    assert local.starts() == {"msa-a": 1, "msa-b": 1, "predict-a": 3, "predict-b": 3}
    record = local.record(run.run_id)
    assert record["execution_name"] == f"{run.run_id}-a3" and record["discarded"]["results_withdrawn"] > 0
    assert json.loads(manifest.read_text())["created_at"] >= first


@pytest.mark.slow
def test_retry_and_rerun_refuse_a_running_run(local):
    run = local.runner("predict:*").submit(local.request, detach=True)
    until(lambda: local.started("predict-a"), 60, "the predict job")
    for attempt in (lambda: local.runner().retry(run.run_id),
                    lambda: local.runner().submit(local.request, rerun=True)):
        with pytest.raises(RunStateConflict) as err:
            attempt()
        assert err.value.code == "run_running"
    assert local.runner().cancel(run.run_id, "enough") == "ABORTED"


@pytest.mark.slow
def test_cancel_cleans_scratch_and_retry_resumes(local):
    run = local.runner("predict:*").submit(local.request, detach=True)
    until(lambda: local.started("predict-a") and local.started("predict-b"), 60, "the predict job")
    assert (local.home / "scratch" / run.run_id / "input").is_dir()
    assert local.runner().cancel(run.run_id, "enough") == "ABORTED"
    # the scratch is cleaned: inputs, attempt dirs and the unfinished predictions are gone,
    # only the finished MSAs stay for the next attempt
    assert _finished_only(local, run.run_id) == ["msa/a", "msa/b"]
    assert local.record(run.run_id)["cleanup"]["kept_targets"] == 2

    again = local.runner().retry(run.run_id)
    assert again.wait(120) == "SUCCEEDED"
    assert local.starts() == {"msa-a": 1, "msa-b": 1, "predict-a": 2, "predict-b": 2}
    assert local.record(run.run_id)["execution_name"] == f"{run.run_id}-a2"
