"""Fault-injected soak (docs/reliability.md) of the real rendered fold workflow on the local
engine: Spot loss, SubmitJob throttling, step crashes (before and midway), timeouts, OOM,
Lambda transient errors and lost responses, and storage writes failing halfway in Stage
Inputs and Collect Outputs. The harness and the invariants are in ``soak_harness.py``; the
fake Batch step in ``soak_step.py``.

* ``test_soak_small``: 60 runs (one over the bulk threshold), part of ``make test``.
* ``test_soak_full``: 1,000 runs, marked ``soak``: ``make soak`` (or
  ``.venv/bin/python bench/soak.py``), never in the default suite.
"""

from __future__ import annotations

import pytest

from tests.reliability.soak_harness import SoakConfig, run_soak

NO_FAULTS = dict(spot_loss=0.0, host_loss=0.0, throttle=0.0, crash=0.0, timeout=0.0, midway_crash=0.0, oom=0.0,
                 lambda_transient=0.0, lambda_lost_response=0.0, storage_halfway=0.0, bad_target=0.0)


def _assert_sound(report) -> None:
    s = report.summary()
    assert report.runs == report.config["runs"]
    assert s["invariants"] == {k: 0 for k in s["invariants"]}, report.format()
    assert report.violations == [], report.format()




@pytest.mark.e2e
def test_soak_small(tmp_path):
    report = run_soak(SoakConfig(runs=60, bulk_runs=1, bad_target=0.03), tmp_path)
    print("\n" + report.format())
    _assert_sound(report)  # incl. every target published or reported failed with a code
    # partial failures happened, and were published as such: bad targets reported, their
    # runs' other targets published (partial outcome, or failed beyond the budget)
    assert report.observed["targets_failed_bad_input"] > 0, report.format()
    assert report.observed["outcome_partial"] > 0, report.format()
    assert report.observed["targets_published"] > report.observed["targets"] // 2
    # the soak is not vacuous: faults of the frequent kinds happened, and both outcomes
    for kind in ("spot_loss", "throttle", "lambda_transient", "storage_halfway"):
        assert report.faults[kind] > 0, (kind, report.faults)
    assert report.statuses["SUCCEEDED"] > report.runs // 2
    assert report.statuses["FAILED"] > 0
    assert report.retries["batch_attempt_retries"] > 0 and report.retries["lambda_retries"] > 0


@pytest.mark.soak
def test_soak_full(tmp_path, request):
    markexpr = request.config.getoption("markexpr") or ""
    if "soak" not in markexpr or "not soak" in markexpr:
        pytest.skip("the 1,000-run soak runs only when selected: make soak (pytest -m soak)")
    report = run_soak(SoakConfig(runs=1000, bulk_runs=5), tmp_path, progress=True)
    print("\n" + report.format())
    _assert_sound(report)


@pytest.mark.slow
def test_soak_checks_catch_lost_outputs_and_missing_cleanup(tmp_path, monkeypatch):
    """Negative control: with a Collect Outputs that drops a file and a cleanup that
    deletes nothing, the soak's checks report both, for every run."""
    import foldstack.tasks.cleanup as cleanup_mod
    from foldstack.tasks.publish import Publisher

    real_put = Publisher.put

    def put_dropping_plddt(self, relpath, data):
        if not relpath.endswith("plddt.tsv"):
            real_put(self, relpath, data)

    monkeypatch.setattr(Publisher, "put", put_dropping_plddt)
    monkeypatch.setattr(cleanup_mod, "cleanup", lambda settings, run_id, raw, *, failed: {
        "run_id": run_id, "scratch_deleted": 0, "partial_outputs_deleted": 0})
    report = run_soak(SoakConfig(runs=3, bulk_runs=0, **NO_FAULTS), tmp_path)
    assert report.statuses["SUCCEEDED"] == 3
    inv = report.summary()["invariants"]
    assert inv["lost_outputs"] >= 3 and inv["cleanup_missing"] >= 3, report.format()
    assert inv["non_terminal_runs"] == inv["states_runtime"] == 0


@pytest.mark.slow
def test_failed_bulk_run_carries_a_machine_readable_reason(tmp_path):
    cfg = SoakConfig(runs=1, bulk_runs=1, exempt_known_bugs=False, **{**NO_FAULTS, "crash": 1.0})
    report = run_soak(cfg, tmp_path)
    assert report.statuses["FAILED"] == 1
    assert report.summary()["invariants"]["failed_without_reason"] == 0, report.format()


def test_leftover_scratch_allows_only_a_failed_runs_finished_targets(tmp_path):
    """The soak's cleanup invariant: a failed run may keep its finished targets' step
    folders (for its retry), nothing else; a succeeded run keeps nothing."""
    import hashlib
    import json

    from tests.reliability.soak_harness import leftover_scratch

    def finished(run: str, step: str, target: str) -> None:
        folder = tmp_path / run / step / target
        folder.mkdir(parents=True)
        (folder / "out.txt").write_text("x")
        done = {"step": step, "run_id": run, "target": target,
                "outputs": {"out.txt": hashlib.sha256(b"x").hexdigest()}, "output_sizes": {"out.txt": 1}}
        (folder / f"{step}.done.json").write_text(json.dumps(done))

    finished("failed-run", "msa", "t1")
    assert leftover_scratch(tmp_path, complete=set()) == []
    (tmp_path / "failed-run" / "input").mkdir()
    (tmp_path / "failed-run" / "input" / "targets.json").write_text("[]")
    (tmp_path / "failed-run" / "predict" / ".t1.attempt-1").mkdir(parents=True)
    (tmp_path / "failed-run" / "predict" / ".t1.attempt-1" / "x.pdb").write_text("partial")
    assert leftover_scratch(tmp_path, complete=set()) == [
        "failed-run/input/targets.json", "failed-run/predict/.t1.attempt-1/x.pdb"]
    finished("ok-run", "msa", "t1")
    assert "ok-run" in leftover_scratch(tmp_path, complete={"ok-run"})


def test_a_failure_the_fault_plan_does_not_explain_is_a_lost_target(tmp_path):
    """The soak's "0 succeeded targets lost" check (`unexplained_failures`): a reported
    failure must be a bad target or one a fault hit (a batched predict job's fault covers its
    batch); a target whose predict output finished is never reported failed, except as
    not published after injected Lambda faults (its work is kept for a retry)."""
    import hashlib
    import json

    from tests.reliability.soak_harness import RunFaults, unexplained_failures

    def folded(target: str) -> None:
        folder = tmp_path / "predict" / target
        folder.mkdir(parents=True)
        (folder / "ranked_0.pdb").write_text("ATOM")
        (folder / "predict.done.json").write_text(json.dumps(
            {"step": "predict", "outputs": {"ranked_0.pdb": hashlib.sha256(b"ATOM").hexdigest()}}))

    faults = RunFaults(batch=[("predict", "a,b", 1, "oom"), ("msa", "c", 3, "crash")])
    failed = {t: {"code": code} for t, code in
              (("a", "out_of_memory"), ("c", "crash"), ("d", "bad_input"), ("e", "crash"))}
    assert unexplained_failures("r", failed, faults, frozenset({"d"}), tmp_path) == ["e (crash)"]
    folded("a")  # it folded on the bigger class, yet was reported failed
    assert unexplained_failures("r", failed, faults, frozenset({"d"}), tmp_path) == ["a (out_of_memory)", "e (crash)"]
    folded("f")
    unpublished = {"f": {"code": "not_published"}}
    assert unexplained_failures("r", unpublished, faults, frozenset(), tmp_path) == ["f (not_published)"]
    faults.lambdas.append(("publish_batch", 1, "lambda_transient"))
    assert unexplained_failures("r", unpublished, faults, frozenset(), tmp_path) == []
