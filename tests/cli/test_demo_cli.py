"""`foldstack demo` (what `make demo` runs) ends by printing each run's index.html: the real
command over the real rendered fold workflow, with the fake steps (tests/client/fake_step.py)
and the fake weights and database instead of building the demo data."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner


@pytest.mark.slow
def test_demo_ends_with_the_path_of_each_runs_index_html(fake_local, tmp_path, monkeypatch):
    from tests.client.conftest import install_fake_data

    import foldstack.demo_data
    from foldstack.cli import app

    monkeypatch.setattr(foldstack.demo_data, "build_demo_data", install_fake_data)
    home, results = tmp_path / "demo-home", tmp_path / "demo-results"
    result = CliRunner().invoke(app, ["demo", "--home", str(home), "--out", str(results)])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) >= 2
    printed = [line.removeprefix("report: ") for line in lines[-2:]]
    assert all(line.startswith("report: ") for line in lines[-2:]), lines
    for index in printed:
        path = Path(index)
        assert path.name == "index.html" and path.is_file() and path.parent.parent == results.resolve()
        assert "<table id=\"targets\">" in path.read_text()
    assert len({Path(p).parent.name for p in printed}) == 2  # alphafold2's run, then esmfold's
