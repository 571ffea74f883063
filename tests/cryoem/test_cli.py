"""`foldstack cryoem ...` reports errors the one way (cli/output.py): one line, exit 2 for bad input."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from foldstack.cli import app


def test_run_local_without_a_dataset(tmp_path):
    result = CliRunner().invoke(app, ["cryoem", "run-local", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "request not found" in lines[0]
    assert not (tmp_path / "o").exists()


def test_run_local_bad_request_json(tmp_path):
    (tmp_path / "request.json").write_text(json.dumps({"movies": "m", "optics": {}}))
    result = CliRunner().invoke(app, ["cryoem", "run-local", str(tmp_path), "--out", str(tmp_path / "o"), "--json"])
    assert result.exit_code == 2
    err = json.loads(result.output)
    assert err["error"] == "InputValidationError" and "optics.pixel_size is missing" in err["message"]


def test_demo_data_bad_box(tmp_path):
    result = CliRunner().invoke(app, ["cryoem", "demo-data", "--out", str(tmp_path / "d"), "--box", "31"])
    assert result.exit_code == 2
    assert "--box 31" in result.output and not (tmp_path / "d").exists()
