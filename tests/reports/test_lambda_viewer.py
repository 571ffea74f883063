"""The Lambda zips that make reports (Publish Batch: report.html; Collect Outputs: index.html
and the run's copy of the viewer) carry 3Dmol.js where foldstack.reports.viewer_script finds
it, and the build fails, naming the fix, when node_modules/3dmol is not installed."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from tests.conftest import REPO, load_repo_module
from tests.reports.chromium import REQUIRE_TOOLS


def _builder():
    return load_repo_module("scripts/build_lambdas.py", "build_lambdas_viewer")


def test_report_zips_carry_the_viewer_found_from_the_zip_root(tmp_path):
    builder = _builder()
    if not builder.VIEWER_JS.is_file():
        message = "node_modules/3dmol is not installed (npm ci)"
        if REQUIRE_TOOLS:
            pytest.fail(message)
        pytest.skip(message)
    builder.build(tmp_path / "zips", ["publish_batch", "collect_outputs"])
    for name in ("publish_batch", "collect_outputs"):
        with zipfile.ZipFile(tmp_path / "zips" / f"{name}.zip") as zf:
            assert zf.read(builder.VIEWER_ARCNAME) == builder.VIEWER_JS.read_bytes(), name
    root = tmp_path / "unzipped"
    zipfile.ZipFile(tmp_path / "zips" / "collect_outputs.zip").extractall(root)
    probe = ("import foldstack, foldstack.reports as r\n"
             f"assert foldstack.__file__.startswith({str(root)!r}), foldstack.__file__\n"
             "print(len(r.viewer_script() or b''))\n")
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1"}
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == builder.VIEWER_JS.stat().st_size > 100_000


def test_build_fails_without_the_viewer(tmp_path, monkeypatch):
    builder = _builder()
    monkeypatch.setattr(builder, "VIEWER_JS", tmp_path / "node_modules" / "3dmol" / "build" / "3Dmol-min.js")
    with pytest.raises(SystemExit, match="npm ci"):
        builder.build(tmp_path / "zips", ["collect_outputs"])
    assert not (tmp_path / "zips" / "collect_outputs.zip").exists()


def test_make_build_installs_the_viewer_where_it_is_missing(tmp_path):
    """`make plan` (the plan and deploy workflows, which never run `make setup`) builds the
    zips through `make build`: it runs `npm ci` first when the viewer is not installed."""
    import shutil

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    missing = tmp_path / "node_modules" / "3dmol" / "build" / "3Dmol-min.js"
    dry = subprocess.run(["make", "-n", "build", f"VIEWER_JS={missing}"], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    npm = next(i for i, line in enumerate(lines) if line.startswith("npm ci"))
    assert npm < next(i for i, line in enumerate(lines) if "scripts/build_lambdas.py" in line)
