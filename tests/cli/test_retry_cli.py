"""`foldstack retry RUN [--wait]` and `submit --rerun`, against the offline deployment of
tests/client (cloud commands), and `run --local --rerun`; errors the one way
(`foldstack.cli.output`): `[nothing_to_retry]`, `[run_not_found]`, exit 2."""

from __future__ import annotations

import json

import pytest
from tests.client.conftest import SEQ
from typer.testing import CliRunner

from foldstack.cli import app

runner = CliRunner()



@pytest.mark.slow
def test_retry_and_rerun_on_the_command_line(cli, tmp_path, monkeypatch):
    path = tmp_path / "in.fasta"
    path.write_text(f">t1\n{SEQ}\n")
    monkeypatch.setenv("FOLDSTACK_TEST_FAIL", "predict:t1")
    code, out, _ = cli("submit", str(path), "--engine", "esmfold", "--wait", "--json")
    assert code == 1 and json.loads(out)["status"] == "FAILED"
    run_id = json.loads(out)["run_id"]

    monkeypatch.delenv("FOLDSTACK_TEST_FAIL")
    code, out, _ = cli("retry", run_id, "--wait", "--json")
    assert code == 0, out
    doc = json.loads(out)
    assert (doc["status"], doc["attempt"], doc["execution_name"]) == ("SUCCEEDED", 2, f"{run_id}-a2")

    code, out, _ = cli("retry", run_id, "--json")
    assert code == 2 and json.loads(out)["code"] == "nothing_to_retry"
    code, _, err = cli("retry", run_id)
    assert code == 2 and err.startswith(f"error: [nothing_to_retry] run {run_id} is SUCCEEDED")
    assert "--rerun" in err
    code, out, _ = cli("retry", "no-such-run", "--json")
    assert code == 2 and json.loads(out)["code"] == "run_not_found"

    code, out, err = cli("submit", str(path), "--engine", "esmfold", "--rerun")
    assert code == 0 and "rerun" in err
    code, out, _ = cli("wait", run_id, "--timeout", "60", "--json")
    assert code == 0 and (json.loads(out)["attempt"], json.loads(out)["status"]) == (3, "SUCCEEDED")


@pytest.mark.slow
def test_run_local_rerun(fake_local, tmp_path):
    path = tmp_path / "in.fasta"
    path.write_text(f">t1\n{SEQ}\n")
    out_dir = tmp_path / "results"
    first = runner.invoke(app, ["run", "--local", str(path), "--engine", "esmfold", "--out", str(out_dir), "--json"])
    assert first.exit_code == 0, first.stderr
    again = runner.invoke(app, ["run", "--local", str(path), "--engine", "esmfold", "--out", str(out_dir), "--rerun",
                                "--json"])
    assert again.exit_code == 0, again.stderr
    run_id = json.loads(again.stdout)["run_id"]
    assert run_id == json.loads(first.stdout)["run_id"]
    record = json.loads((fake_local / "runs" / run_id / "run.json").read_text())
    assert (record["execution_name"], record["trigger"]) == (f"{run_id}-a2", "rerun")
    assert (out_dir / run_id / "manifest.json").exists()
