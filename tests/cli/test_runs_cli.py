"""The cloud commands through typer's runner, against the offline deployment of tests/client."""

from __future__ import annotations

import json

import pytest
from tests.client.conftest import SEQ
from typer.testing import CliRunner

from foldstack.cli import app, runs

runner = CliRunner()



def fasta(tmp_path, text):
    path = tmp_path / "in.fasta"
    path.write_text(text)
    return str(path)


@pytest.mark.slow
def test_submit_wait_status_results_list_json(cli, tmp_path):
    path = fasta(tmp_path, f">t1\n{SEQ}\n>t2\n{SEQ[::-1]}\n")
    code, text, _ = cli("submit", path, "--engine", "esmfold", "--tag", "project=x", "--json")
    assert code == 0, text
    submitted = json.loads(text)
    assert set(submitted) >= {"run_id", "status", "existing", "output_uri", "start", "stop", "error", "cause"}
    run_id = submitted["run_id"]
    assert submitted["existing"] is False and submitted["output_uri"].endswith(run_id)

    code, text, _ = cli("wait", run_id, "--timeout", "60", "--json")
    assert code == 0, text
    waited = json.loads(text)
    assert waited["status"] == "SUCCEEDED"
    assert {(s["step"], s["target"]) for s in waited["steps"] if s["target"]} == {("predict", "t1"),
                                                                                ("predict", "t2")}
    assert all(s["job_id"] for s in waited["steps"] if s["target"])

    code, text, _ = cli("status", run_id, "--json")
    assert code == 0 and json.loads(text)["status"] == "SUCCEEDED"
    code, text, _ = cli("status", run_id)
    assert code == 0 and "SUCCEEDED" in text and "predict" in text

    code, text, _ = cli("results", run_id, "--dir", str(tmp_path / "dl"), "--json")
    assert code == 0, text
    results = json.loads(text)
    assert {"manifest.json", "t1/ranked_0.pdb"} <= set(results["files"])
    assert [m["id"] for m in results["metrics"]] == ["t1", "t2"]
    assert (tmp_path / "dl" / run_id / "t2" / "ranked_0.pdb").exists()

    code, text, _ = cli("submit", path, "--engine", "esmfold", "--json")
    assert code == 0 and json.loads(text)["existing"] is True and json.loads(text)["run_id"] == run_id

    code, text, _ = cli("list", "--json")
    listed = json.loads(text)
    assert code == 0 and listed["count"] == 1 and listed["runs"][0]["run_id"] == run_id
    code, text, _ = cli("list", "--status", "FAILED", "--json")
    assert json.loads(text) == {"count": 0, "runs": [], "env": "test"}

    code, text, _ = cli("config", "show", "--json")
    assert code == 0 and json.loads(text)["output_prefix"] == "s3://fs-results/runs"


@pytest.mark.slow
def test_exit_codes_distinguish_failed_runs_from_usage_errors(cli, tmp_path):
    code, text, _ = cli("submit", fasta(tmp_path, ">x\nMKT1AYIAKQRQISFV\n"), "--engine", "esmfold", "--json")
    assert code == 2 and json.loads(text)["code"] == "digit_in_sequence"
    code, text, _ = cli("submit", "s3://elsewhere/x.fasta", "--json")
    assert code == 2 and json.loads(text)["error"] == "AccessDeniedError"
    code, text, _ = cli("submit", fasta(tmp_path, f">ok\n{SEQ}\n"), "--tag", "novalue", "--json")
    assert code == 2
    code, text, _ = cli("status", "no-such-run", "--json")
    assert code == 2 and json.loads(text)["code"] == "run_not_found"

    code, text, _ = cli("submit", fasta(tmp_path, f">boom1\n{SEQ}\n"), "--engine", "esmfold", "--wait", "--json")
    assert code == 1 and json.loads(text)["status"] == "FAILED"
    run_id = json.loads(text)["run_id"]
    # a failed run still publishes its manifest and failures.tsv (and what folded: nothing here)
    code, text, _ = cli("results", run_id, "--dir", str(tmp_path / "dl"), "--json")
    files = json.loads(text)["files"]
    assert code == 0 and {"manifest.json", "failures.tsv"} <= set(files)
    assert not [f for f in files if f.startswith("boom1/")]


@pytest.mark.slow
def test_wait_timeout_then_cancel(cli, tmp_path):
    code, text, _ = cli("submit", fasta(tmp_path, f">slow1\n{SEQ}\n"), "--engine", "esmfold", "--json")
    run_id = json.loads(text)["run_id"]
    code, text, _ = cli("wait", run_id, "--timeout", "0.2", "--json")
    assert code == 3 and json.loads(text)["status"] == "RUNNING"
    code, text, _ = cli("cancel", run_id, "--json")
    assert code == 0 and json.loads(text)["status"] in ("ABORTED", "FAILED")  # see test_cancelled_run_is_aborted


def test_missing_configuration_is_a_configuration_error(aws):
    result = runner.invoke(app, ["config", "show", "--env", "nowhere", "--json"])
    assert result.exit_code == 4
    error = json.loads(result.stdout)
    assert error["error"] == "ConfigurationError" and "state_machine_arn" in error["missing"]


def test_doctor_table_json_and_exit_code(monkeypatch):
    from foldstack.client.doctor import Check

    class FakeClient:
        def doctor(self):
            return [Check("ecr-images", "pass", "2 images"), Check("subnet-ips", "fail", "10 free", "add subnets")]

    monkeypatch.setattr(runs, "make_client", lambda env, home=None: FakeClient())
    result = runner.invoke(app, ["doctor", "--env", "prod", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"env": "prod", "ok": False, "checks": [
        {"name": "ecr-images", "status": "pass", "detail": "2 images", "fix": ""},
        {"name": "subnet-ips", "status": "fail", "detail": "10 free", "fix": "add subnets"}]}
    result = runner.invoke(app, ["doctor", "--env", "prod"])
    assert result.exit_code == 1 and "FAIL" in result.stdout and "add subnets" in result.stdout


@pytest.mark.slow
def test_results_tsv_prints_the_run_summary(cli, tmp_path):
    from foldstack.core.manifest import SUMMARY_COLUMNS

    code, text, _ = cli("submit", fasta(tmp_path, f">t1\n{SEQ}\n>t2\n{SEQ[::-1]}\n"), "--engine", "esmfold", "--json")
    assert code == 0, text
    run_id = json.loads(text)["run_id"]
    assert cli("wait", run_id, "--timeout", "60", "--json")[0] == 0
    code, text, _ = cli("results", run_id, "--dir", str(tmp_path / "dl"), "--tsv")
    assert code == 0, text
    lines = text.splitlines()
    assert tuple(lines[0].split("\t")) == SUMMARY_COLUMNS
    assert [line.split("\t")[:2] for line in lines[1:]] == [["t1", "succeeded"], ["t2", "succeeded"]]
    assert not (tmp_path / "dl").exists()  # --tsv reads summary.tsv alone: nothing is downloaded
