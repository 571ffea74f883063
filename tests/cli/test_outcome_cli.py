"""How the CLI tells a run whose targets did not all fold: one line, built in one place
(`foldstack.client.outcome`), e.g. `2 of 3 targets folded; 1 failed (1 crash) — failures.tsv`,
after `submit --wait`, `status` and `wait`; the SDK's `Run.outcome()` and `Run.failures()`."""

from __future__ import annotations

import json

import pytest
from tests.client.conftest import SEQ


@pytest.mark.slow
def test_a_run_with_a_failed_target_says_how_its_targets_ended(cli, deployed, tmp_path, monkeypatch):
    path = tmp_path / "in.fasta"  # one Predict batch, shortest first: the failing target last
    path.write_text(f">s1\n{SEQ[:30]}\n>s2\n{SEQ[:40]}\n>z3\n{SEQ}\n")
    monkeypatch.setenv("FOLDSTACK_TEST_FAIL", "predict:z3")
    code, out, _ = cli("submit", str(path), "--engine", "esmfold", "--wait", "--json")
    doc = json.loads(out)
    assert code == 1 and doc["status"] == "FAILED"  # 1 of 3 is beyond the default 10 %
    run_id = doc["run_id"]
    sentence = "2 of 3 targets folded; 1 failed (1 crash) — failures.tsv"
    assert (doc["outcome"], doc["targets_folded"], doc["targets_failed"], doc["failed_by_code"]) == \
        ("failed", 2, 1, {"crash": 1})
    assert doc["outcome_message"] == sentence
    for command in (("status", run_id), ("wait", run_id, "--timeout", "10")):
        code, out, _ = cli(*command)
        assert sentence in " ".join(out.split()), out
        assert "results:" in out

    run = deployed.client().run(run_id)
    assert run.outcome() == "failed" and run.outcome_sentence() == sentence
    [failure] = run.failures()
    assert (failure.target, failure.step, failure.code) == ("z3", "predict", "crash") and failure.job_id
    assert sorted(t.id for t in run.manifest().targets) == ["s1", "s2"]
