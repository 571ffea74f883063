"""Running Debian's RELION (3.1, CPU, non-MPI programs) from the stages.

Every call goes through :func:`run_relion`: the program is looked up on PATH (a missing
RELION is bad input naming the install script, not a crash), its output goes to a log
file in the stage's attempt dir, and a non-zero exit raises :class:`RelionError` (a
:class:`StepError`, exit 1: a retry may help) or :class:`OutOfMemoryError` whose one-line
message carries RELION's own ERROR line."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

from foldstack.core.errors import BadInputError, OutOfMemoryError, StepError

MAX_THREADS = 2
_OOM = ("std::bad_alloc", "out of memory", "Cannot allocate memory")


class RelionError(StepError):
    """A RELION program failed."""

    code = "relion_failed"

    def __str__(self) -> str:
        return f"[{self.code}] {super().__str__()}"


def threads() -> int:
    """Threads per RELION program: ``FOLDSTACK_CRYOEM_THREADS`` (default and cap 2; the
    local machine is shared)."""
    raw = os.environ.get("FOLDSTACK_CRYOEM_THREADS", "").strip()
    try:
        value = int(raw) if raw else MAX_THREADS
    except ValueError as exc:
        raise BadInputError(f"FOLDSTACK_CRYOEM_THREADS={raw!r}: expected a whole number") from exc
    return max(1, min(value, MAX_THREADS))


def mpi_refine() -> list[str]:
    """The command prefix for ``relion_refine`` with gold-standard half sets: RELION 3.1
    refuses ``--split_random_halves`` without MPI, so this one step runs
    ``relion_refine_mpi`` as three ranks (a leader that only coordinates and one follower
    per half set), one thread each: two busy cores, like the other stages."""
    prefix = [require("mpirun"), "-np", "3", "--oversubscribe", "--bind-to", "none"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        prefix.append("--allow-run-as-root")  # containers and CI run as root; Open MPI refuses otherwise
    return [*prefix, require("relion_refine_mpi")]


def require(program: str) -> str:
    found = shutil.which(program)
    if found is None:
        raise BadInputError(f"{program} not found on PATH: install Debian's relion (scripts/install_system_deps.sh)")
    return found


@functools.lru_cache(maxsize=1)
def relion_version() -> str:
    try:
        out = subprocess.run([require("relion_refine"), "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    for line in (out.stdout + out.stderr).splitlines():
        if "RELION version" in line:
            return line.split(":", 1)[1].strip()
    return "unknown"


def _error_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if line.startswith("ERROR"):
            rest = " ".join(lines[i:i + 3])
            return rest[:300]
    return lines[-1][:300] if lines else "no output"


def run_relion(args: list[str], *, cwd: Path, log: Path, timeout: float | None = None) -> None:
    """Run a RELION program (args[0]: a name on PATH or a path) in `cwd`, its output
    appended to `log`."""
    exe = args[0] if os.path.isabs(args[0]) else require(args[0])
    with open(log, "a") as fh:
        fh.write("$ " + " ".join(args) + "\n")
        fh.flush()
        try:
            proc = subprocess.run([exe, *args[1:]], cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout,
                                  check=False)
        except subprocess.TimeoutExpired as exc:
            raise RelionError(f"{args[0]} ran past {timeout:g}s (log: {log})") from exc
    if proc.returncode != 0:
        text = log.read_text(errors="replace")[-20000:]
        message = f"{args[0]} exited {proc.returncode}: {_error_line(text)} (log: {log})"
        if any(marker in text for marker in _OOM):
            raise OutOfMemoryError(message)
        raise RelionError(message)
