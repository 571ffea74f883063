"""bench/gpu/bench_gpu.py on a machine without a GPU: argument parsing and the dry run
(the plan and the environment, nothing run)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu" / "bench_gpu.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    plan = doc["plan"]
    assert plan["sections"] == ["af2", "esmfold", "mmseqs"]
    assert plan["lengths"][0] <= 128 and plan["lengths"][-1] >= 2500
    assert {int(k): v for k, v in plan["af2_buckets"].items()}[2048] == 2048
    assert plan["esmfold"]["num_hidden_layers"] == 36 and plan["esmfold"]["hidden_size"] == 2560
    assert "gpus" in doc["environment"] and not out.exists()


def test_arguments(bench):
    args = bench.parse_args(["--sections", "af2", "--lengths", "2500,100,100", "--budget-s", "60"])
    assert args.sections == ["af2"] and args.lengths == [100, 2500] and args.budget_s == 60
    for bad in (["--sections", "gpu"], ["--lengths", "ten"], ["--lengths", "5"], ["--repeats", "0"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)
