"""Per-target outcomes in local mode, counted: a target that fails (its MSA, or inside a
batched Predict job, or out of memory on every class it may use) never takes the run's
other targets with it. They are published as their batch finishes; each failure is in the
manifest (``failures``, ``outcome``), ``failures.tsv`` and ``summary.tsv``; the failure budget
decides whether the run SUCCEEDS (partial) or FAILS (``[too_many_failures]``, with what
folded still published); a retry recomputes only the failed targets.

The jobs are ``durable_step.py`` (``FOLDSTACK_TEST_BAD``: bad input as the real steps report
it; ``FOLDSTACK_TEST_KILL``: the job SIGKILLs itself on a size class, exit 137)."""

from __future__ import annotations

import csv
import json

import pytest

from foldstack.core.request import RunRequest
from foldstack.local.runner import LocalRunner

SEQS = {"a": "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQ",
        "b": "MSTNPKPQRKTKRNTNRRPQDVKFPGGGQIVGGVYLLPRRGPRLGVRATRKTSE",
        "c": "MADQLTEEQIAEFKEAFSLFDKDGDGTITTKELGTVMRSLGQNPTEAELQDMINEVDA",
        "d": "MGSSHHHHHHSSGLVPRGSHMASMTGGQQMGRGSEFELRRQACGRTRAPPPPPLRSGC"}


def four_targets(local, **options):
    local.fasta.write_text("".join(f">{t}\n{s}\n" for t, s in SEQS.items()))
    return RunRequest(inputs=(str(local.fasta),), output_uri=str(local.out), engine="alphafold2", **options)


def runner(local, **env):
    return LocalRunner(local.home, workflow=local.workflow, job_env={**local.env(), **env}, grace=1.0)


def tsv(path):
    with open(path) as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


@pytest.mark.slow
def test_failing_targets_leave_the_others_published_and_a_retry_recomputes_only_them(local):
    """b is bad input inside the batched Predict job, c fails its MSA (exit 2): a and d are
    published; within a budget of 50% the run SUCCEEDS, partial, and says why per target."""
    request = four_targets(local, max_failed_fraction=0.5)
    run = runner(local, FOLDSTACK_TEST_BAD="predict:b,msa:c").submit(request)
    assert run.wait(180) == "SUCCEEDED", run.record()
    root = local.out / run.run_id
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["outcome"] == "partial"
    assert sorted(t["id"] for t in manifest["targets"]) == ["a", "d"]
    failures = {f["target"]: f for f in manifest["failures"]}
    assert {(t, f["step"], f["code"]) for t, f in failures.items()} == {("b", "predict", "bad_input"),
                                                                       ("c", "msa", "bad_input")}
    assert "injected bad input" in failures["b"]["message"] and failures["b"]["log"].endswith(".log")
    assert "exit 2" in failures["c"]["message"] and failures["c"]["job_id"] and failures["c"]["log"]
    for t in ("a", "d"):
        assert (root / t / "target.json").is_file() and (root / t / "ranked_0.pdb").is_file()
    assert not (root / "b").exists() and not (root / "c").exists()
    assert {r["target"]: (r["code"], r["step"]) for r in tsv(root / "failures.tsv")} == {
        "b": ("bad_input", "predict"), "c": ("bad_input", "msa")}
    assert {r["target"]: (r["status"], r["failure_code"]) for r in tsv(root / "summary.tsv")} == {
        "a": ("succeeded", ""), "b": ("failed", "bad_input"), "c": ("failed", "bad_input"), "d": ("succeeded", "")}
    # c's MSA failed, so the Predict job skipped it (--skip): no predict-c
    assert local.starts() == {"msa-a": 1, "msa-b": 1, "msa-c": 1, "msa-d": 1, "predict-a": 1, "predict-b": 1,
                              "predict-d": 1}

    again = runner(local).retry(run.run_id)  # a partial run can be retried: only b and c again
    assert again.wait(180) == "SUCCEEDED", again.record()
    assert local.starts() == {"msa-a": 1, "msa-b": 1, "msa-c": 2, "msa-d": 1,
                              "predict-a": 1, "predict-b": 2, "predict-c": 1, "predict-d": 1}
    manifest = json.loads((root / "manifest.json").read_text())
    assert (manifest["outcome"], manifest["failures"]) == ("succeeded", [])
    assert sorted(t["id"] for t in manifest["targets"]) == ["a", "b", "c", "d"]


@pytest.mark.slow
def test_beyond_the_budget_the_run_fails_and_still_publishes_what_folded(local):
    """The same two failures of four with the default budget (knobs: 10%): the run FAILS with
    a coded error, the manifest (outcome failed) and a and d are published, and cleanup on
    the failure path deletes none of it."""
    run = runner(local, FOLDSTACK_TEST_BAD="predict:b,msa:c").submit(four_targets(local))
    assert run.wait(180) == "FAILED", run.record()
    record = run.record()
    assert record["error"] == "TooManyFailuresError"
    assert json.loads(record["cause"])["errorMessage"] == (  # the Lambda's error, as Step Functions reports it
        "[too_many_failures] 2 of 4 targets failed (2 bad_input; the budget allows 10%); the 2 that folded are "
        "published, with the manifest — failures.tsv")
    root = local.out / run.run_id
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["outcome"] == "failed" and sorted(t["id"] for t in manifest["targets"]) == ["a", "d"]
    assert all((root / t / "ranked_0.pdb").is_file() for t in ("a", "d"))
    entered = [e.get("state") for e in run.history() if e.get("type") == "TaskStateEntered"]
    assert "CleanupOnFailure" in entered


@pytest.mark.slow
def test_out_of_memory_kill_escalates_then_is_recorded_per_target(local):
    """Exit 137 (the job killed for memory) escalates the batch one size class up, never
    retried on the same class; killed there too, its targets are failures coded
    out_of_memory, and the run (every target failed) FAILS with them recorded."""
    run = runner(local, FOLDSTACK_TEST_KILL="predict:small").submit(local.request)
    assert run.wait(180) == "SUCCEEDED", run.record()
    entered = [e.get("state") for e in run.history() if e.get("type") == "TaskStateEntered"]
    assert entered.count("Predict_small") == 1 and entered.count("Predict_medium") == 1
    assert local.starts()["predict-a"] == 2  # once per class: the same class is never retried

    run = runner(local, FOLDSTACK_TEST_KILL="predict:small,predict:medium").submit(local.request, rerun=True)
    assert run.wait(180) == "FAILED", run.record()
    manifest = json.loads((local.out / run.run_id / "manifest.json").read_text())
    assert manifest["outcome"] == "failed" and manifest["targets"] == []
    assert {(f["target"], f["step"], f["code"]) for f in manifest["failures"]} == {
        ("a", "predict", "out_of_memory"), ("b", "predict", "out_of_memory")}
    assert all("exit 137" in f["message"] and "OutOfMemoryError" in f["message"] and f["job_id"]
               for f in manifest["failures"])
