"""Per-target outcomes, in pieces: the failure codes a job's end maps to, the failure budget,
the manifest's failure fields and files, the outcome sentence, and that nothing a run
published is deleted by a cleanup or a failed Collect."""

from __future__ import annotations

import json

import pytest
from tests.conftest import REPO

from foldstack.client.outcome import outcome_sentence
from foldstack.core.manifest import (
    FAILURE_COLUMNS,
    TargetFailure,
    execution_outcome,
    failures_tsv,
    load_manifest,
    parse_manifest,
)
from foldstack.tasks.collect import outcome_of
from foldstack.tasks.outcomes import job_failure


def job(exit_code=None, reason=None, status_reason="Essential container in task exited", **extra):
    container = {"LogStreamName": "predict_small/default/abc"}
    if exit_code is not None:
        container["ExitCode"] = exit_code
    if reason:
        container["Reason"] = reason
    return json.dumps({"JobId": "job-1", "StatusReason": status_reason, "Container": container, **extra})


@pytest.mark.parametrize(("cause", "code"), [
    (job(3), "out_of_memory"),
    (job(137, "OutOfMemoryError: Container killed due to memory usage"), "out_of_memory"),
    (job(None, "OutOfMemoryError: Container killed due to memory usage"), "out_of_memory"),
    (job(2), "bad_input"),
    (job(75), "inputs_not_ready"),
    (job(None, status_reason="Job attempt duration exceeded timeout"), "timeout"),
    (job(None, status_reason="Host EC2 (instance i-0abc) terminated."), "capacity_lost"),
    (job(None, "CannotPullContainerError: pull access denied", "Task failed to start"), "image_pull_failed"),
    (job(1), "crash"),
    (job(139), "job_failed"),
])
def test_a_failed_batch_jobs_end_maps_to_a_stable_code_with_its_log(cause, code):
    failure = job_failure("t1", "predict", "States.TaskFailed", cause)
    assert (failure.target, failure.step, failure.code) == ("t1", "predict", code)
    assert (failure.job_id, failure.log) == ("job-1", "predict_small/default/abc")
    assert "\n" not in failure.message and failure.message


def test_a_failure_that_is_no_batch_job_description_is_still_coded():
    assert job_failure("t", "msa", "States.Timeout", "the task timed out").code == "timeout"
    other = job_failure("t", "msa", "States.TaskFailed", "not json")
    assert other.code == "job_failed" and other.message.startswith("States.TaskFailed: not json")


@pytest.mark.parametrize(("n", "failed", "budget", "outcome"), [
    (20, 0, 0.0, "succeeded"), (20, 2, 0.1, "partial"), (20, 3, 0.1, "failed"), (20, 1, 0.0, "failed"),
    (4, 2, 0.5, "partial"), (4, 4, 1.0, "failed"),  # nothing folded is never partial
])
def test_failure_budget(n, failed, budget, outcome):
    assert outcome_of(n, failed, budget) == outcome


def manifest_with(failures, targets=("a",)):
    raw = json.loads((REPO / "tests/fixtures/manifests/schema1-foldstack-0.1.0-alphafold2.json").read_text())
    template = raw["targets"][0]
    raw["targets"] = [{**template, "id": t} for t in targets]
    raw["failures"] = [f.model_dump() for f in failures]
    raw["outcome"] = "partial" if failures else "succeeded"
    return parse_manifest(raw)


def test_an_older_manifest_reads_as_a_full_success():
    raw = json.loads((REPO / "tests/fixtures/manifests/schema1-foldstack-0.1.0-alphafold2.json").read_text())
    manifest = load_manifest(json.dumps(raw))
    assert (manifest.outcome, manifest.failures) == ("succeeded", [])


@pytest.mark.slow
def test_outcome_sentence_and_files_from_the_manifest():
    failures = [TargetFailure(target=f"x{i}", step="predict", code="out_of_memory", message="m") for i in range(41)]
    failures += [TargetFailure(target=f"y{i}", step="msa", code="bad_input", message="tab\there") for i in range(13)]
    manifest = manifest_with(failures, targets=[f"t{i}" for i in range(9946)])
    assert outcome_sentence(manifest) == (
        "9,946 of 10,000 targets folded; 54 failed (41 out_of_memory, 13 bad_input) — failures.tsv")
    assert outcome_sentence(manifest_with([])) == "1 of 1 targets folded"
    lines = failures_tsv(manifest.failures).splitlines()
    assert lines[0].split("\t") == list(FAILURE_COLUMNS) and len(lines) == 55
    assert lines[-1].split("\t")[:4] == ["y12", "msa", "bad_input", "tab here"]
    rows = manifest.summary_rows()
    assert rows[-1] == {"target": "y12", "status": "failed", "failure_code": "bad_input"}
    assert rows[0]["status"] == "succeeded" and rows[0]["failure_code"] is None


def test_execution_outcome_reads_the_run_succeeded_output():
    assert execution_outcome('{"outcome": "partial", "targets": 3}') == "partial"
    assert execution_outcome({"outcome": "succeeded"}) == "succeeded"
    assert execution_outcome(None) is execution_outcome("not json") is execution_outcome({"output": "x"}) is None
