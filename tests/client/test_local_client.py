"""`Client.local()`: the same Run API over the local engine (LocalRunner), with the
fake steps so it runs in a second."""

from __future__ import annotations

from pathlib import Path

import pytest

from foldstack.client import Client
from foldstack.client.errors import NotInstalledError
from foldstack.local.runner import LocalRunner
from foldstack.workflows.specs import Workflow
from tests.client.conftest import SEQ, fake_local_client
from tests.conftest import files_under

# the MSA cache lookup (a Lambda task per target, before the Msa job) is a step too
STEPS = {("lookupmsacache", "a1"), ("msa", "a1"), ("predict", "a1")}


def finished(client, fasta: Path, records: str, engine: str, status: str):
    """Write ``records`` to ``fasta``, submit it and wait for the run to end in ``status``."""
    fasta.write_text(records)
    run = client.submit(str(fasta), engine=engine)
    assert run.wait(timeout=60) == status
    return run


def test_local_client_same_api(tmp_path):
    client = fake_local_client(tmp_path)
    wf = tmp_path / "wf" / "fold"
    fasta = tmp_path / "x.fasta"
    run = finished(client, fasta, f">a1\n{SEQ}\n", "alphafold2", "SUCCEEDED")
    assert {(s.step, s.target) for s in run.steps() if s.target} == STEPS
    assert [r["id"] for r in run.metrics()] == ["a1"]
    root = run.download(tmp_path / "dl")
    assert (root / "a1" / "ranked_0.pdb").exists()
    assert any("fake predict for target a1" in line for line in run.logs("predict", "a1"))
    assert [r.run_id for r in client.runs()] == [run.run_id]
    assert client.submit(str(fasta), engine="alphafold2").run_id == run.run_id

    # another process (a fresh client on the same home) sees the recorded run
    later = Client.local(runner=LocalRunner(tmp_path / "home", workflow=Workflow(directory=wf)))
    again = later.run(run.run_id)
    assert again.status == "SUCCEEDED" and [r["id"] for r in again.metrics()] == ["a1"]
    assert {(s.step, s.target) for s in again.steps() if s.target} == STEPS


def test_inputs_are_checked_before_the_weights_and_nothing_starts_without_them(tmp_path):
    client = fake_local_client(tmp_path, install=False)
    bad = tmp_path / "bad.fasta"
    bad.write_text(f">g\n{SEQ[:5]}-{SEQ[5:]}\n")
    with pytest.raises(Exception) as info:
        client.submit(str(bad), engine="esmfold")
    assert info.value.code == "gap_character"
    good = tmp_path / "good.fasta"
    good.write_text(f">g\n{SEQ}\n")
    for engine, code in (("esmfold", "weights_missing"), ("alphafold2", "weights_missing")):
        with pytest.raises(NotInstalledError) as missing:
            client.submit(str(good), engine=engine)
        assert missing.value.code == code and "foldstack demo-data --home" in missing.value.details["hint"]
    (tmp_path / "home" / "weights" / "alphafold2").mkdir(parents=True)
    (tmp_path / "home" / "weights" / "alphafold2" / "params_model_1.npz").write_bytes(b"")
    with pytest.raises(NotInstalledError) as missing:
        client.submit(str(good), engine="alphafold2")
    assert missing.value.code == "databases_missing"
    assert files_under(tmp_path / "home" / "runs") == [] and client.runs() == []


@pytest.mark.slow
def test_failure_is_the_failing_steps_own_last_line_with_its_log(tmp_path):
    client = fake_local_client(tmp_path)
    run = finished(client, tmp_path / "x.fasta", f">ok1\n{SEQ}\n>boom1\n{SEQ[::-1]}\n", "esmfold", "FAILED")
    for handle in (run, fake_local_client(tmp_path).run(run.run_id)):  # this process, and a later one
        failure = handle.failure()
        # one Predict job folded both targets and its last line names neither
        assert (failure.step, failure.target, failure.message, failure.code) == (
            "predict", "boom1,ok1", "out of luck", "step_failed")
        assert failure.exit_code == 1 and failure.job_id
        log = Path(failure.log)
        assert log.is_file() and log.parent == tmp_path / "home" / "runs" / run.run_id / "logs"
        assert "out of luck" in log.read_text()
        doc = handle.to_dict()
        assert doc["code"] == "step_failed" and "out of luck" in doc["message"] and doc["failure"]["step"] == "predict"
        assert "JobId" not in doc["message"]

    run = finished(client, tmp_path / "c.fasta", f">coded1\n{SEQ}\n", "esmfold", "FAILED")
    failure = run.failure()
    assert failure.code == "weights_missing" and failure.exit_code == 2 and failure.target == "coded1"
    assert failure.message.startswith("FAILED (bad input, exit 2): no esmfold weights"), failure.message


@pytest.mark.slow
def test_logs_of_every_job_and_progress_summary(tmp_path):
    client = fake_local_client(tmp_path)
    run = finished(client, tmp_path / "x.fasta", f">a1\n{SEQ}\n>b2\n{SEQ[::-1]}\n", "alphafold2", "SUCCEEDED")
    assert run.n_targets == 2 and run.failure() is None and "failure" not in run.to_dict()
    summary = {row.step: row for row in run.progress().summary()}
    assert summary["msa"].done == 2 and summary["predict"].done == 2
    assert summary["predict"].running == summary["predict"].failed == 0
    later = fake_local_client(tmp_path).run(run.run_id)  # a recorded run, from another process
    for handle in (run, later):
        every = handle.logs()
        assert sum(line.startswith("==> ") for line in every) >= 3  # two msa jobs and the predict job
        assert any("fake msa for target a1" in line for line in every)
        assert any("fake predict for target b2" in line for line in every)
        msa_b2 = handle.logs("msa", "b2")
        assert any("fake msa for target b2" in line for line in msa_b2)
        assert not any("fake msa for target a1" in line for line in msa_b2)
        assert any("fake predict for target a1" in line for line in handle.logs("predict"))
