"""Staged inputs are awaited like any other step's outputs (cross-AZ readiness):
Stage Inputs writes ``input/stage.done.json`` last (size and sha256 of every staged file),
and msa, msa-chains and predict wait on it, bounded by ``FOLDSTACK_INPUT_WAIT_S``, in a
Batch job: a staged file not visible yet is exit 75 (retried), never bad input, and a
missing ``input/request.json`` never folds with defaults. Delayed visibility comes from the
hide injector (``FOLDSTACK_INJECT_HIDE``), step by step and on the local engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from foldstack.core.request import RunRequest
from foldstack.core.runid import make_run_id
from foldstack.steps import common, ran_on
from foldstack.tasks.settings import TaskSettings
from foldstack.tasks.stage import STAGE_DONE_PARTS, stage_inputs
from foldstack.tasks.validate import validate_run
from foldstack.workflows.specs import load_workflow
from tests.steps.conftest import DEMO_SEQ, invoke

TARGETS = {"t1": DEMO_SEQ, "t2": DEMO_SEQ[:40]}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in (common.HIDE_ENV, common.INPUT_WAIT_ENV, "AWS_BATCH_JQ_NAME", "AWS_BATCH_JOB_ID",
                 "AWS_BATCH_CE_NAME", "AWS_BATCH_JOB_ATTEMPT", ran_on.SIZE_CLASS_ENV, "ECS_CONTAINER_METADATA_URI_V4"):
        monkeypatch.delenv(name, raising=False)


def staged_run(local_env) -> tuple[Path, str]:
    """A run staged by the real Stage Inputs into local scratch: (scratch, run_id)."""
    fasta = local_env["inputs"] / "in.fasta"
    fasta.write_text("".join(f">{t}\n{s}\n" for t, s in TARGETS.items()))
    raw = {"inputs": [str(fasta)], "output_uri": str(local_env["outputs"]), "engine": "esmfold"}
    settings = TaskSettings.from_env()
    request = RunRequest.model_validate(raw)
    from foldstack.core.fasta import parse_fasta

    run_id = make_run_id(request, parse_fasta(fasta.read_bytes()))
    _, _, planned, _ = validate_run(raw, allowed_input_prefixes=settings.allowed_input_prefixes,
                                    allowed_output_prefixes=settings.allowed_output_prefixes,
                                    size_classes=settings.size_classes, limits=settings.limits, run_id=run_id)
    stage_inputs(settings, run_id, raw, [t.model_dump() for t in planned])
    return local_env["scratch"], run_id


def in_batch(monkeypatch, wait: str, hide: str | None = None) -> None:
    monkeypatch.setenv("AWS_BATCH_JOB_ID", "job-1")
    monkeypatch.setenv("AWS_BATCH_JQ_NAME", "foldstack-local-cpu-spot")
    monkeypatch.setenv(common.INPUT_WAIT_ENV, wait)
    if hide:
        monkeypatch.setenv(common.HIDE_ENV, hide)


def read_target_step(scratch: Path, run_id: str, target: str = "t1") -> Path:
    def body(ctx):
        (ctx.work_dir / "seq.txt").write_text(ctx.read_target().sequence)

    return common.run_step("msa", run_id, target, scratch, body)


def test_stage_inputs_writes_a_done_record_of_every_staged_file_last(local_env):
    scratch, run_id = staged_run(local_env)
    folder = scratch / run_id / "input"
    record = json.loads((scratch / run_id / Path(*STAGE_DONE_PARTS)).read_text())
    assert set(record["outputs"]) == {"targets.json", "request.json", "targets/t1.fasta", "targets/t2.fasta"}
    for rel, digest in record["outputs"].items():
        assert common.sha256_file(folder / rel) == digest and (folder / rel).stat().st_size == \
            record["output_sizes"][rel]
    # the step side reads it through the same contract: every file matches
    assert common.await_inputs(folder / "stage.done.json", list(record["outputs"]), timeout=0)


@pytest.mark.slow
def test_a_staged_fasta_that_appears_in_time_is_used(local_env, monkeypatch):
    scratch, run_id = staged_run(local_env)
    in_batch(monkeypatch, "20", "input/stage.done.json:0.8")
    final = read_target_step(scratch, run_id)
    done = json.loads((final / "msa.done.json").read_text())
    assert 0.7 <= done["timings"]["await_inputs"] < 10
    assert (final / "seq.txt").read_text() == DEMO_SEQ


def test_a_staged_fasta_that_never_appears_is_exit_75_not_bad_input(local_env, monkeypatch):
    """The real `foldstack step msa`: the staged FASTA hidden for good."""
    scratch, run_id = staged_run(local_env)
    in_batch(monkeypatch, "0.3", "input/targets/t1.fasta:inf")
    result = invoke(["msa", "--run-id", run_id, "--target", "t1", "--scratch", str(scratch),
                     "--db", str(scratch / "no-db")])
    assert result.exit_code == 75, result.output
    text = " ".join(result.output.split())
    assert f"[inputs_not_ready] input {scratch / run_id / 'input' / 'targets' / 't1.fasta'} is listed in " \
           "stage.done.json but not visible" in text
    assert not (scratch / run_id / "msa" / "t1").exists()


def test_without_the_stage_record_a_batch_job_waits_then_exits_75(local_env, monkeypatch):
    """Files there but no record (Stage Inputs not finished): never read half a staging."""
    scratch, run_id = staged_run(local_env)
    (scratch / run_id / Path(*STAGE_DONE_PARTS)).unlink()
    in_batch(monkeypatch, "0.2")
    with pytest.raises(common.InputsNotReadyError, match="stage.done.json"):
        read_target_step(scratch, run_id)


@pytest.mark.slow
def test_predict_never_folds_with_defaults_when_request_json_is_missing(local_env, monkeypatch):
    """In a Batch job a missing request.json is waited for, then exit 75; by hand (no record)
    the step says in its log that the engine's defaults apply."""
    scratch, run_id = staged_run(local_env)
    (scratch / run_id / "input" / "request.json").unlink()
    in_batch(monkeypatch, "0.2")
    args = ["predict", "--run-id", run_id, "--target", "t1", "--scratch", str(scratch),
            "--weights", str(scratch / "no-weights"), "--engine", "esmfold", "--preset", "monomer"]
    result = invoke(args)
    assert result.exit_code == 75, result.output
    assert "request.json" in result.output and "[inputs_not_ready]" in result.output

    from foldstack.steps.predict import _staged_request

    ctx = common.StepContext(step="predict", run_id=run_id, target="t1", scratch=scratch, work_dir=scratch,
                             final_dir=scratch)
    with pytest.raises(common.BadInputError, match="staged request .* is missing"):
        _staged_request(ctx)  # in a Batch job: never {}
    for name in ("AWS_BATCH_JOB_ID", "AWS_BATCH_JQ_NAME"):
        monkeypatch.delenv(name)
    lines: list[str] = []
    monkeypatch.setattr(ctx, "log", lines.append)
    assert _staged_request(ctx) == {} and "engine's defaults" in lines[0]  # by hand: said, not silent


@pytest.mark.slow
def test_msa_chains_awaits_the_target_list_and_every_fasta(local_env, monkeypatch):
    scratch, run_id = staged_run(local_env)
    in_batch(monkeypatch, "0.3", "input/targets/t2.fasta:inf")
    from foldstack.steps.msa_chains import _run_chains

    ctx = common.StepContext(step="msa_chains", run_id=run_id, target="shard-0-of-1", scratch=scratch,
                             work_dir=scratch, final_dir=scratch)
    with pytest.raises(common.InputsNotReadyError, match="t2.fasta"):
        _run_chains(ctx)
    monkeypatch.setenv(common.HIDE_ENV, "input/targets/t2.fasta:0.5")
    ctx.started = __import__("time").monotonic()
    monkeypatch.setenv(common.INPUT_WAIT_ENV, "20")
    assert [t for t, _ in _run_chains(ctx)] == ["t1", "t2"]


def test_a_step_run_by_hand_without_a_record_reads_the_files_as_they_are(local_env):
    scratch, run_id = staged_run(local_env)
    (scratch / run_id / Path(*STAGE_DONE_PARTS)).unlink()
    final = read_target_step(scratch, run_id)
    assert (final / "seq.txt").read_text() == DEMO_SEQ
    (scratch / run_id / "input" / "targets" / "t2.fasta").unlink()
    with pytest.raises(common.BadInputError, match="target FASTA not found"):
        read_target_step(scratch, run_id, "t2")  # by hand, a missing file stays bad input


# ------------------------------------------------------------------ on the local engine

STEP_SCRIPT = """
import sys
from foldstack.steps.common import run_cli, run_step

run_id, target, scratch = sys.argv[1:4]

def body(ctx):
    (ctx.work_dir / "seq.txt").write_text(ctx.read_target().sequence)

sys.exit(run_cli("msa", target, lambda: run_step("msa", run_id, target, scratch, body)))
"""


def run_local_msa_job(tmp_path: Path, scratch: Path, run_id: str, job_env: dict[str, str]) -> dict:
    """One msa job on the local engine's Batch with the real jobs.yaml retry rules; the
    command is a minimal step that reads the staged FASTA."""
    from foldstack.local.batch import LocalBatch
    from foldstack.local.jobs import job_definition_arn, queue_arn

    script = tmp_path / "step.py"
    script.write_text(STEP_SCRIPT)
    batch = LocalBatch(load_workflow("fold").jobs, log_dir=tmp_path / "logs", job_env=job_env)
    job = batch.submit({
        "JobName": "staged", "JobDefinition": job_definition_arn("msa"), "JobQueue": queue_arn("cpu-spot"),
        "Parameters": {}, "ContainerOverrides": {"Command": ["python", str(script), run_id, "t1", str(scratch)]},
    })
    assert job.wait(120), "the local job did not finish"
    return job.describe()


@pytest.mark.slow
def test_local_engine_staged_input_appears_in_time(local_env, tmp_path):
    scratch, run_id = staged_run(local_env)
    desc = run_local_msa_job(tmp_path, scratch, run_id,
                             {common.HIDE_ENV: "input/targets/t1.fasta:1", common.INPUT_WAIT_ENV: "30"})
    assert desc["Status"] == "SUCCEEDED" and len(desc["Attempts"]) == 1, desc
    done = json.loads((scratch / run_id / "msa" / "t1" / "msa.done.json").read_text())
    assert done["timings"]["await_inputs"] >= 0.9
    assert "input/targets/t1.fasta" in done["inputs"]


@pytest.mark.slow
def test_local_engine_staged_input_never_appears(local_env, tmp_path):
    scratch, run_id = staged_run(local_env)
    desc = run_local_msa_job(tmp_path, scratch, run_id,
                             {common.HIDE_ENV: "input/stage.done.json:inf", common.INPUT_WAIT_ENV: "0.3"})
    attempts = load_workflow("fold").jobs.jobs["msa"].retry.attempts
    assert desc["Status"] == "FAILED"
    assert [a["Container"]["ExitCode"] for a in desc["Attempts"]] == [75] * attempts  # retried, then out
    log = Path(desc["Attempts"][-1]["Container"]["LogStreamName"]).read_text()
    assert "FAILED (inputs not ready, exit 75): [inputs_not_ready] input" in log and "stage.done.json" in log
    assert not (scratch / run_id / "msa" / "t1").exists()
