"""Where local mode keeps its state: FOLDSTACK_HOME and its layout.

One default for every entry point (the CLI, `Client.local()`, `make demo`): the
``FOLDSTACK_HOME`` environment variable, else ``~/.foldstack``.

Layout under the home:
  db/ weights/     demo or real databases and model weights (`foldstack demo-data`)
  cache/           the MSA cache (``cache/msa/...``) and cryoem's preprocessing cache
                   (``cache/cryoem/preprocess/...``), kept across runs
  inputs/          content-addressed copies of submitted FASTA files
  scratch/         per-run scratch (what /fsx/scratch is in the cloud)
  runs/<run_id>/   run.json (the run record), events.jsonl (history as it happens),
                   driver.lock (held by the process driving the run), procs/ (job
                   process groups), cancel.json (a cancel request), logs/ (job logs and
                   tasks.log, the Lambda tasks' log lines)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from foldstack.core.errors import InputValidationError

HOME_ENV = "FOLDSTACK_HOME"
#: the home's own directories: an output inside one of them would be deleted or would
#: overwrite what foldstack keeps there.
OWN_DIRS = ("scratch", "runs", "cache", "db", "weights", "inputs")


def default_home() -> Path:
    """``$FOLDSTACK_HOME``, else ``~/.foldstack`` (symbolic links resolved)."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".foldstack").expanduser().resolve()


def home_description(home: Path | str | None = None) -> str:
    """One line for the CLI to print: which home is in use and where that came from,
    e.g. ``home: ~/.foldstack (default)``."""
    if home is not None:
        return f"home: {Path(home).expanduser().resolve()} (--home)"
    source = HOME_ENV if os.environ.get(HOME_ENV) else f"default; set {HOME_ENV} to change"
    return f"home: {default_home()} ({source})"


def _under_home(name: str) -> property:
    return property(lambda self: self.home / name, doc=f"``<home>/{name}``")


def _in_run_dir(name: str) -> Callable[[LocalPaths, str], Path]:
    def path(self: LocalPaths, run_id: str) -> Path:
        return self.run_dir(run_id) / name

    path.__doc__ = f"``<home>/runs/<run_id>/{name}``"
    return path


@dataclass(frozen=True)
class LocalPaths:
    """The layout under a home (the module docstring says what each part holds)."""

    home: Path

    db = _under_home("db")
    weights = _under_home("weights")
    cache = _under_home("cache")
    inputs = _under_home("inputs")
    scratch = _under_home("scratch")
    runs = _under_home("runs")

    def run_dir(self, run_id: str) -> Path:
        return self.runs / run_id

    record = _in_run_dir("run.json")
    events = _in_run_dir("events.jsonl")
    lock = _in_run_dir("driver.lock")
    procs = _in_run_dir("procs")
    cancel = _in_run_dir("cancel.json")
    driver_spec = _in_run_dir("driver.json")
    driver_log = _in_run_dir("driver.log")
    logs = _in_run_dir("logs")

    def tasks_log(self, run_id: str) -> Path:
        return self.logs(run_id) / "tasks.log"

    def ensure(self) -> LocalPaths:
        for d in (self.inputs, self.scratch, self.runs):
            d.mkdir(parents=True, exist_ok=True)
        return self


def check_output(output: Path, paths: LocalPaths) -> None:
    """Refuse an output directory that is the home or lies inside one of its own
    directories (after resolving symbolic links): Cleanup deletes ``scratch/<run_id>``,
    ``runs/<run_id>`` is the run's record, and the others hold data foldstack manages."""
    out = Path(os.path.realpath(output))
    home = Path(os.path.realpath(paths.home))
    fix = f"choose a directory outside {home}, e.g. --out ./foldstack-results"
    if out == home:
        raise InputValidationError(f"output {out} is the foldstack home", code="output_inside_home", hint=fix)
    for name in OWN_DIRS:
        own = home / name
        if out == own or own in out.parents:
            where = "is" if out == own else "is inside"
            raise InputValidationError(
                f"output {out} {where} {own}, which foldstack manages (it would delete or overwrite "
                "the results)", code="output_inside_home", hint=fix)
