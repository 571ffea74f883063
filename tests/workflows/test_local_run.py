"""The local vertical slice, end to end on the local engine with the real steps and demo weights."""

from __future__ import annotations

import json

import gemmi
import pytest
from tests.conftest import files_under

from foldstack.core.errors import InputValidationError
from foldstack.core.request import RunRequest
from foldstack.local.runner import LocalRunner

pytestmark = pytest.mark.e2e

SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQ"


@pytest.fixture
def home(demo_home):
    return demo_home


def write_fasta(path, text):
    path.write_text(text)
    return str(path)


def events_named(run, kind):
    return [e for e in run.history() if e.get("type") == kind]


def test_esmfold_run_end_to_end_and_idempotent(home, tmp_path):
    fasta = write_fasta(tmp_path / "two.fasta", f">alpha\n{SEQ}\n>beta\n{SEQ[::-1]}\n")
    out = tmp_path / "out"
    runner = LocalRunner(home)
    request = RunRequest(inputs=(fasta,), output_uri=str(out), engine="esmfold")
    run = runner.submit(request)
    assert run.wait(300) == "SUCCEEDED", run.record()

    result = out / run.run_id
    manifest = json.loads((result / "manifest.json").read_text())
    assert [t["id"] for t in manifest["targets"]] == ["alpha", "beta"]
    for target in ("alpha", "beta"):
        structure = gemmi.read_structure(str(result / target / "ranked_0.pdb"))
        assert structure[0].count_atom_sites() > 0
        metrics = json.loads((result / target / "metrics.json").read_text())
        assert metrics["demo_weights"] is True and 0 <= metrics["mean_plddt"] <= 100
        assert (result / target / "plots" / "plddt.png").stat().st_size > 0
        assert (result / target / "plddt.tsv").exists()
    assert files_under(home / "scratch" / run.run_id) == []  # scratch cleaned

    again = LocalRunner(home).submit(request)
    assert again.run_id == run.run_id and again.status == "SUCCEEDED"
    assert again._execution is None  # returned the recorded run; nothing ran twice


@pytest.mark.slow
def test_alphafold2_run_has_msa_features_and_structure(home, tmp_path):
    fasta = write_fasta(tmp_path / "one.fasta", f">gamma\n{SEQ}\n")
    out = tmp_path / "out"
    run = LocalRunner(home).submit(RunRequest(inputs=(fasta,), output_uri=str(out), engine="alphafold2"))
    assert run.wait(900) == "SUCCEEDED", run.record()
    target = out / run.run_id / "gamma"
    assert (target / "msa" / "msa.a3m").read_text().startswith(">")
    provenance = json.loads((target / "msa" / "features.json").read_text())
    assert provenance  # tool and database versions, checksums
    assert gemmi.read_structure(str(target / "ranked_0.pdb"))[0].count_atom_sites() > 0
    states = [e.get("state") for e in events_named(run, "TaskStateEntered")]
    assert "Msa" in states and any(s and s.startswith("Predict_") for s in states)


def test_invalid_fasta_rejected_before_anything_is_written(home, tmp_path):
    fasta = write_fasta(tmp_path / "bad.fasta", f">ok\n{SEQ}\n>broken\nMKTA-YIAKQRQISF\n")
    out = tmp_path / "out"
    before = files_under(home / "scratch")
    with pytest.raises(InputValidationError) as info:
        LocalRunner(home).submit(RunRequest(inputs=(fasta,), output_uri=str(out), engine="esmfold"))
    assert info.value.details["line"] == 3 and info.value.details["record"] == "broken"
    assert files_under(home / "scratch") == before and not out.exists()


def test_validate_input_state_rejects_with_record_and_line(home, tmp_path):
    """Bypassing the client's check, the workflow itself fails in ValidateInput and cleans up."""
    from foldstack.local import LocalEngine

    runner = LocalRunner(home)
    bad = home / "inputs" / "direct" / "bad.fasta"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text(f">ok\n{SEQ}\n>broken\nMKTA-YIAKQRQISF\n")
    out = tmp_path / "out"
    engine = LocalEngine(
        runner._definition, jobs_yaml=runner.workflow.directory / "jobs.yaml",
        lambda_env=runner.lambda_env(str(out)), job_env={}, placeholders=runner.placeholders(),
        log_dir=tmp_path / "logs",
    )
    request = {"inputs": [str(bad)], "output_uri": str(out), "engine": "esmfold"}
    execution = engine.start_execution("bad-input-1", {"run_id": "bad-input-1", "request": request})
    execution.wait(60)
    assert execution.status == "FAILED"
    assert execution.error == "InputValidationError"
    assert "line 3" in execution.cause and "broken" in execution.cause
    entered = [e.state_name for e in execution.history() if e.type == "TaskStateEntered"]
    assert "StageInputs" not in entered and "CleanupOnFailure" in entered
    assert not (home / "scratch" / "bad-input-1").exists() and not out.exists()


def test_step_crash_of_one_target_fails_only_that_target(home, tmp_path, monkeypatch):
    """A crash of one target inside the batched Predict job: the other is published; the
    crash is recorded (code crash); 1 of 2 is beyond the default budget, so the run FAILS,
    coded, through cleanup, which keeps the published target and, for a retry, what finished."""
    fasta = write_fasta(tmp_path / "crash.fasta", f">delta\n{SEQ}\n>epsilon\n{SEQ[5:]}\n")
    out = tmp_path / "out"
    runner = LocalRunner(home, job_env={"FOLDSTACK_INJECT_FAULT": "predict:epsilon"})
    run = runner.submit(RunRequest(inputs=(fasta,), output_uri=str(out), engine="esmfold"))
    assert run.wait(300) == "FAILED"
    record = run.record()
    assert record["error"] == "TooManyFailuresError"
    entered = [e.get("state") for e in run.history() if e.get("type") == "TaskStateEntered"]
    assert "CleanupOnFailure" in entered and "CollectOutputs" in entered
    # Cleanup kept only what finished (delta's prediction) for a retry; the rest is gone
    scratch = home / "scratch" / run.run_id
    assert {"/".join(p.relative_to(scratch).parts[:2]) for p in files_under(scratch)} == {"predict/delta"}
    manifest = json.loads((out / run.run_id / "manifest.json").read_text())
    assert manifest["outcome"] == "failed" and [t["id"] for t in manifest["targets"]] == ["delta"]
    [failure] = manifest["failures"]
    assert (failure["target"], failure["step"], failure["code"]) == ("epsilon", "predict", "crash")
    assert "RuntimeError: injected fault" in failure["message"]
    assert (out / run.run_id / "delta" / "ranked_0.pdb").is_file() and not (out / run.run_id / "epsilon").exists()
