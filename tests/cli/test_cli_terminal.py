"""What a person sees in a real terminal: a multi-target `foldstack run --local` through a
pseudo-terminal shows the live table (per step: targets done/running, elapsed time, moving
while a step runs) and never the tasks' raw JSON log lines."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.client.conftest import SEQ
from tests.conftest import REPO

# The CLI's own entry point, with its local-mode client swapped for one whose Batch jobs are
# tests/client/fake_step.py taking FAKE_STEP_SLEEP seconds per target (the Lambda tasks,
# whose JSON log lines must stay off the terminal, are the real ones).
DRIVER = """
import sys
from pathlib import Path
from foldstack.cli import local, main
from tests.client.conftest import fake_local_client
work = Path(sys.argv[1])
local.make_local_client = lambda home, output: fake_local_client(
    work, output=output, job_env={"FAKE_STEP_SLEEP": "1.2"})
main(sys.argv[2:])
"""


def run_in_pty(argv: list[str], cwd: Path, timeout: float = 120) -> tuple[int, str]:
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # the child: a terminal of 100 columns
        os.chdir(cwd)
        os.environ.update({"COLUMNS": "100", "LINES": "40", "TERM": "xterm-256color",
                           "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'src'}"})
        os.environ.pop("NO_COLOR", None)
        os.execv(argv[0], argv)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if not ready:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode("utf-8", "replace")


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).replace("\r", "")


@pytest.mark.slow
def test_live_progress_and_no_raw_json_in_a_terminal(tmp_path):
    fasta = tmp_path / "three.fasta"
    fasta.write_text(f">t1\n{SEQ}\n>t2\n{SEQ[::-1]}\n>t3\n{SEQ[3:]}\n")
    (tmp_path / "driver.py").write_text(DRIVER)
    code, raw = run_in_pty([sys.executable, str(tmp_path / "driver.py"), str(tmp_path), "run", "--local",
                            str(fasta), "--engine", "esmfold", "--out", str(tmp_path / "out")], tmp_path)
    text = plain(raw)
    assert code == 0, text[-3000:]
    assert "\x1b[" in raw  # a terminal: rich redraws the table in place
    titles = re.findall(r"t1-3-[0-9a-f]{16}\s+RUNNING\s+(\d+:\d\d)", text)
    assert len(set(titles)) >= 2, text[-3000:]  # the elapsed time moved while it ran
    rows = re.findall(r"predict\s+(\d)/3\s+(\d)\s+(\d)\s+(\d+:\d\d)", text)
    assert ("0", "3", "0") in {r[:3] for r in rows} and ("3", "0", "0") in {r[:3] for r in rows}, rows
    assert "SUCCEEDED" in text and "t3: mean pLDDT" in text and "results:" in text
    assert '{"task"' not in text and '"outcome"' not in text  # the JSON log lines stayed in tasks.log
    logs = list((tmp_path / "home" / "runs").glob("*/logs/tasks.log"))
    assert logs and '{"task": "validate_input"' in logs[0].read_text()


@pytest.mark.slow
def test_progress_is_the_sdks_own_table(tmp_path):
    """`Run.wait(progress=True)` draws the same table (one implementation, in the SDK)."""
    script = tmp_path / "sdk.py"
    script.write_text(
        "import sys\nfrom pathlib import Path\nfrom tests.client.conftest import fake_local_client\n"
        "client = fake_local_client(Path(sys.argv[1]), job_env={'FAKE_STEP_SLEEP': '1.2'})\n"
        f"run = client.submit([('s1', '{SEQ}'), ('s2', '{SEQ[::-1]}')], engine='esmfold')\n"
        "print(run.wait(progress=True))\n")
    code, raw = run_in_pty([sys.executable, str(script), str(tmp_path)], tmp_path)
    text = plain(raw)
    assert code == 0, text[-2000:]
    assert re.search(r"predict\s+2/2\s+0\s+0", text) and re.search(r"RUNNING\s+\d+:\d\d", text)


@pytest.mark.slow
def test_json_mode_draws_nothing_on_stderr(tmp_path):
    fasta = tmp_path / "one.fasta"
    fasta.write_text(f">j1\n{SEQ}\n")
    (tmp_path / "driver.py").write_text(DRIVER.replace('"1.2"', '"0"'))
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'src'}"}
    proc = subprocess.run([sys.executable, str(tmp_path / "driver.py"), str(tmp_path), "run", "--local", str(fasta),
                           "--engine", "esmfold", "--out", str(tmp_path / "out"), "--json"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and '"status": "SUCCEEDED"' in proc.stdout
