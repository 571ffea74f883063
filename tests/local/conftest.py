"""A local home and a copy of the fold workflow whose Batch jobs run `durable_step.py`
(milliseconds per job, with hooks to count and to hold a step), for the durability tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from foldstack.core.request import RunRequest
from foldstack.local.runner import LocalRunner
from foldstack.workflows.specs import Workflow
from tests.conftest import REPO

STEP = Path(__file__).with_name("durable_step.py")
DRIVER = Path(__file__).with_name("run_driver.py")
SEQ_A = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQ"
SEQ_B = "MSTNPKPQRKTKRNTNRRPQDVKFPGGGQIVGGVYLLPRRGPRLGVRATRKTSE"


def until(predicate: Any, timeout: float = 30.0, what: str = "a condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def live_group_members(pgids: list[int]) -> list[int]:
    """Pids of live (not zombie) processes in any of `pgids`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue
            fields = text[text.rfind(")") + 2:].split()
            if fields[0] not in ("Z", "X") and int(fields[2]) in pgids:
                found.append(int(entry.name))
    return found


@dataclass
class LocalSetup:
    home: Path
    workflow: Workflow
    counters: Path
    out: Path
    fasta: Path

    @property
    def request(self) -> RunRequest:
        return RunRequest(inputs=(str(self.fasta),), output_uri=str(self.out), engine="alphafold2")

    def env(self, sleep: str = "", fail: str = "") -> dict[str, str]:
        return {"FOLDSTACK_TEST_COUNTER_DIR": str(self.counters), **({"FOLDSTACK_TEST_SLEEP": sleep} if sleep else {}),
                **({"FOLDSTACK_TEST_FAIL": fail} if fail else {})}

    def runner(self, sleep: str = "", fail: str = "", **kwargs: Any) -> LocalRunner:
        return LocalRunner(self.home, workflow=self.workflow, job_env=self.env(sleep, fail), grace=1.0, **kwargs)

    def starts(self) -> dict[str, int]:
        """How many times each step started per target (``msa-a``, ``predict-b``...)."""
        return {p.name: p.read_text().count("start") for p in sorted(self.counters.iterdir())}

    def done(self, name: str) -> bool:
        path = self.counters / name
        return path.exists() and "done" in path.read_text()

    def started(self, name: str) -> bool:
        path = self.counters / name
        return path.exists() and "start" in path.read_text()

    def record(self, run_id: str) -> dict[str, Any]:
        return json.loads((self.home / "runs" / run_id / "run.json").read_text())

    def foreground(self, sleep: str = "") -> subprocess.Popen:
        """A driver process (like `foldstack run --local`) running the request."""
        spec = {"home": str(self.home), "workflow": str(self.workflow.directory), "job_env": self.env(sleep),
                "request": self.request.model_dump(mode="json")}
        return subprocess.Popen([sys.executable, str(DRIVER), json.dumps(spec)], cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.fixture
def local(tmp_path) -> LocalSetup:
    home = tmp_path / "home"
    (home / "db" / "fake").mkdir(parents=True)
    (home / "db" / "fake" / "CURRENT").write_text("v1\n")  # one database version: the MSA cache keys on it
    wf = tmp_path / "wf" / "fold"
    shutil.copytree(REPO / "statemachines" / "fold", wf)
    jobs = yaml.safe_load((wf / "jobs.yaml").read_text())
    for job in jobs["jobs"].values():
        job["command"] = ["python", str(STEP), *job["command"][2:]]
    (wf / "jobs.yaml").write_text(yaml.safe_dump(jobs, sort_keys=False))  # size classes keep their order
    counters = tmp_path / "counters"
    counters.mkdir()
    fasta = tmp_path / "two.fasta"
    fasta.write_text(f">a\n{SEQ_A}\n>b\n{SEQ_B}\n")
    return LocalSetup(home, Workflow(directory=wf), counters, tmp_path / "out", fasta)
