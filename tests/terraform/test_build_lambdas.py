"""scripts/build_lambdas.py: deterministic zips with the handler and the foldstack core."""

from __future__ import annotations

import zipfile

import pytest

from tests.conftest import load_repo_module


def _builder():
    return load_repo_module("scripts/build_lambdas.py", "build_lambdas")


def test_zips_are_deterministic_and_complete(tmp_path):
    builder = _builder()
    first = builder.build(tmp_path / "a")
    second = builder.build(tmp_path / "b")
    assert first == second, "same sources must give byte-identical zips"
    assert set(first) >= {"validate_input", "stage_inputs", "collect_outputs", "cleanup"}
    with zipfile.ZipFile(tmp_path / "a" / "cleanup.zip") as zf:
        names = zf.namelist()
        assert names == sorted(names)
        assert "handler.py" in names and "foldstack/__init__.py" in names
        assert any(n.startswith("foldstack/core/") for n in names)
        assert not any(n.endswith(".pyc") or "__pycache__" in n for n in names)
        assert {i.date_time for i in zf.infolist()} == {builder.FIXED_DATE}
        # Only the Lambda-side parts of the package, never the heavy step/local code.
        assert not any(n.startswith(("foldstack/steps/", "foldstack/local/", "foldstack/cli/")) for n in names)


@pytest.mark.slow
def test_collect_zip_carries_what_the_cost_estimate_reads(tmp_path):
    """Collect Outputs estimates cost from jobs.yaml and the price table: both must be in
    the zip, found from the zip root exactly as the Lambda runtime would."""
    import subprocess
    import sys

    builder = _builder()
    builder.build(tmp_path / "zips", ["collect_outputs"])
    root = tmp_path / "unzipped"
    zipfile.ZipFile(tmp_path / "zips" / "collect_outputs.zip").extractall(root)
    probe = (
        "import foldstack, foldstack.cost as cost\n"
        "from foldstack.workflows.specs import load_workflow\n"
        f"assert foldstack.__file__.startswith({str(root)!r}), foldstack.__file__\n"
        "jobs = load_workflow('fold').jobs\n"
        "print(cost.rate_for(jobs, 'msa', None, cost.load_price_table()).hourly_usd > 0)\n"
    )
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1"}
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "True", result.stderr
