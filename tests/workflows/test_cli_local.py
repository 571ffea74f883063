"""`foldstack run --local` and `render` through typer's runner: output shapes and exit codes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from foldstack.cli import app

pytestmark = pytest.mark.e2e

SEQ = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQ"
runner = CliRunner()


def test_run_requires_local_flag(tmp_path):
    result = runner.invoke(app, ["run", str(tmp_path / "x.fasta")])
    assert result.exit_code == 2 and "--local" in result.output


def test_invalid_fasta_is_a_usage_error_naming_the_line(demo_home, tmp_path):
    bad = tmp_path / "bad.fasta"
    bad.write_text(f">a\n{SEQ}\n>b\nMK1TAYIAKQRQ\n")
    result = runner.invoke(app, ["run", "--local", str(bad), "--engine", "esmfold", "--home", str(demo_home),
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    text = " ".join(result.output.split())  # rich wraps long lines at the terminal width
    assert "line 3" in text and "'b'" in text
    assert not (tmp_path / "out").exists()


def test_run_local_json_and_failed_run_exit_code(demo_home, tmp_path, monkeypatch):
    fasta = tmp_path / "one.fasta"
    fasta.write_text(f">zeta\n{SEQ}\n")
    args = ["run", "--local", str(fasta), "--engine", "esmfold", "--home", str(demo_home),
            "--out", str(tmp_path / "out"), "--json"]
    ok = runner.invoke(app, args)
    assert ok.exit_code == 0, ok.output
    body = json.loads(ok.stdout[ok.stdout.index("{"):])
    assert body["status"] == "SUCCEEDED" and body["output"].endswith(body["run_id"])
    assert set(body) == {"run_id", "status", "output", "error", "cause", "outcome", "targets_folded",
                         "targets_failed", "failed_by_code", "outcome_message"}
    assert (body["outcome"], body["targets_folded"], body["targets_failed"]) == ("succeeded", 1, 0)

    monkeypatch.setenv("FOLDSTACK_INJECT_FAULT", "predict:*")
    failing = tmp_path / "two.fasta"
    failing.write_text(f">eta\n{SEQ[3:]}\n")
    bad = runner.invoke(app, [*args[:2], str(failing), *args[3:]])
    assert bad.exit_code == 1
    assert json.loads(bad.stdout[bad.stdout.index("{"):])["status"] == "FAILED"


def test_render_check_passes_on_committed_files():
    assert runner.invoke(app, ["render", "--check"]).exit_code == 0
