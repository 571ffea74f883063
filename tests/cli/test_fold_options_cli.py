"""The fold options `run --local` and `submit` share (`foldstack.cli.options`: --db,
--db-preset, --num-models, --num-seeds, --relax, --max-failed-fraction,
--msa-gpu), and `foldstack rerun`, through typer's
runner with the fake steps (conftest.py: `fake_local`)."""

from __future__ import annotations

import json

import pytest
from tests.client.conftest import SEQ
from tests.conftest import files_under
from typer.testing import CliRunner

from foldstack.cli import app

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def _record(home, run_id):
    return json.loads((home / "runs" / run_id / "run.json").read_text())


@pytest.mark.parametrize("command", ["run", "submit"])
@pytest.mark.slow
def test_options_reach_the_request(fake_local, tmp_path, command):
    fasta = tmp_path / "x.fasta"
    fasta.write_text(f">a1\n{SEQ}\n")
    options = ["--db", "fake_uniref=1", "--db", "other=2024_01", "--db-preset", "full_dbs", "--num-models", "2",
               "--num-seeds", "3", "--relax", "none", "--max-failed-fraction", "0.25", "--json"]
    if command == "run":
        args = ["run", "--local", str(fasta), "--out", str(tmp_path / "out"), *options]
    else:
        args = ["submit", str(fasta), "--env", "local", "--output", str(tmp_path / "out"), "--wait", *options]
    code, stdout, stderr = invoke(*args)
    assert code == 0, stderr
    run_id = json.loads(stdout[stdout.index("{"):])["run_id"]
    request = _record(fake_local, run_id)["request"]
    assert request["db_versions"] == {"fake_uniref": "1", "other": "2024_01"}
    assert (request["db_preset"], request["num_models"], request["num_seeds"], request["relax"],
            request["max_failed_fraction"]) == ("full_dbs", 2, 3, "none", 0.25)


@pytest.mark.parametrize("bad,code,text", [
    (["--db", "uniref90"], "invalid_request", "--db 'uniref90': use NAME=VERSION"),
    (["--db", "uniref90=../v1"], "invalid_request", "--db: db_versions"),
    (["--db", "a=1", "--db", "a=2"], "invalid_request", "--db a given twice (1 and 2)"),
    (["--db-preset", "huge"], "invalid_request", "--db-preset 'huge' is not one of: full_dbs, reduced_dbs, colabfold"),
    (["--num-models", "6"], "invalid_request", "--num-models: Input should be less than or equal to 5"),
    (["--num-seeds", "0"], "invalid_request", "--num-seeds: Input should be greater than or equal to 1"),
    (["--relax", "some"], "invalid_request", "--relax 'some' is not one of: none, best, all"),
    (["--max-failed-fraction", "1.5"], "invalid_request",
     "--max-failed-fraction: Input should be less than or equal to 1"),
    (["--engine", "esmfold", "--db", "a=1"], "invalid_request", "apply to alphafold2 only"),
    (["--engine", "esmfold", "--msa-gpu"], "invalid_request", "apply to alphafold2 only"),
    (["--msa-gpu"], "invalid_request", "msa_gpu searches with MMseqs2 on a GPU"),
])
@pytest.mark.parametrize("command", ["run", "submit"])
def test_bad_values_are_one_line_and_exit_2_writing_nothing(fake_local, tmp_path, command, bad, code, text):
    fasta = tmp_path / "x.fasta"
    fasta.write_text(f">a1\n{SEQ}\n")
    home = tmp_path / "home"
    home.mkdir()
    before = files_under(tmp_path)
    args = (["run", "--local", str(fasta), "--out", str(tmp_path / "out")] if command == "run" else
            ["submit", str(fasta), "--env", "local", "--output", str(tmp_path / "out")])
    exit_code, stdout, stderr = invoke(*args, "--home", str(home), *bad)
    assert exit_code == 2, (stdout, stderr)
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: [{code}] ") and text in lines[0], stderr
    assert files_under(tmp_path) == before  # nothing read into the home, nothing started


@pytest.mark.slow
def test_msa_gpu_reaches_the_request_with_mmseqs2(fake_local, tmp_path):
    fasta = tmp_path / "x.fasta"
    fasta.write_text(f">a1\n{SEQ}\n")
    code, stdout, stderr = invoke("run", "--local", str(fasta), "--out", str(tmp_path / "out"), "--msa-tool", "mmseqs2",
                                  "--msa-gpu", "--json")
    assert code == 0, stderr
    run_id = json.loads(stdout[stdout.index("{"):])["run_id"]
    request = _record(fake_local, run_id)["request"]
    assert (request["msa_tool"], request["msa_gpu"]) == ("mmseqs2", True)


@pytest.mark.slow
def test_rerun_command_pins_versions_and_refuses_a_missing_one(fake_local, tmp_path):
    fasta = tmp_path / "x.fasta"
    fasta.write_text(f">a1\n{SEQ}\n")
    version = tmp_path / "home" / "db" / "fake_uniref" / "7"
    code, stdout, stderr = invoke("run", "--local", str(fasta), "--out", str(tmp_path / "out"), "--json")
    assert code == 0, stderr
    run_id = json.loads(stdout[stdout.index("{"):])["run_id"]
    manifest = tmp_path / "out" / run_id / "manifest.json"
    raw = json.loads(manifest.read_text())
    raw["provenance"]["databases"] = {"fake_uniref": "7"}  # as if its msa steps had searched version 7
    saved = tmp_path / "saved.json"
    saved.write_text(json.dumps(raw))

    code, stdout, stderr = invoke("rerun", str(saved), "--local", "--wait")
    assert code == 2 and stderr.count("error:") == 1
    assert "error: [db_version_missing] cannot rerun" in stderr and "fake_uniref=7" in stderr

    version.mkdir(parents=True)
    (version / "manifest.json").write_text("{}")
    code, stdout, stderr = invoke("rerun", str(saved), "--local", "--wait", "--json")
    assert code == 0, stderr
    again = json.loads(stdout[stdout.index("{"):])
    assert again["status"] == "SUCCEEDED" and again["run_id"] != run_id
    assert _record(tmp_path / "home", again["run_id"])["request"]["db_versions"] == {"fake_uniref": "7"}

    code, _, stderr = invoke("rerun", str(saved))
    assert code == 2 and "error: [usage] say where to rerun: --local, or --env ENV" in stderr
