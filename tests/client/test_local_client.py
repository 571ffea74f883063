"""`Client.local()`: the same Run API over the local engine (LocalRunner), with the
fake steps so it runs in a second."""

from __future__ import annotations

import shutil

from foldstack.client import Client
from foldstack.localmode import LocalRunner
from foldstack.workflows.specs import Workflow
from tests.client.conftest import SEQ, fake_jobs_yaml
from tests.conftest import REPO

# the MSA cache lookup (a Lambda task per target, before the Msa job) is a step too
STEPS = {("lookupmsacache", "a1"), ("msa", "a1"), ("predict", "a1")}


def test_local_client_same_api(tmp_path):
    wf = tmp_path / "wf" / "fold"
    shutil.copytree(REPO / "statemachines" / "fold", wf)
    shutil.copy(fake_jobs_yaml(tmp_path), wf / "jobs.yaml")
    runner = LocalRunner(tmp_path / "home", workflow=Workflow(directory=wf),
                            job_env={"PYTHONPATH": str(REPO / "src")})
    client = Client.local(runner=runner, output=tmp_path / "out")
    fasta = tmp_path / "x.fasta"
    fasta.write_text(f">a1\n{SEQ}\n")
    run = client.submit(str(fasta), engine="alphafold2")
    assert run.wait(timeout=60) == "SUCCEEDED"
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
