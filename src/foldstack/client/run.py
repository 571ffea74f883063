"""`Run` (one execution) and `RunSet` (many, from `submit_many`)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foldstack.client import history as _history
from foldstack.client.backends import TERMINAL, ExecutionInfo
from foldstack.client.errors import RunNotCompleteError, RunNotFoundError
from foldstack.core.errors import OutputIntegrityError
from foldstack.core.manifest import MANIFEST, Manifest, load_manifest
from foldstack.core.uris import join_under


@dataclass(frozen=True)
class RunContext:
    """What a run handle needs from the client that made it: the backend it talks to,
    and the clock, sleep and poll interval that `wait` uses (tests pass fakes)."""

    backend: Any  # CloudBackend | LocalBackend
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    poll_interval: float


class Rows(list):
    """Metrics rows (a list of dicts); `.to_pandas()` when pandas is installed."""

    def to_pandas(self) -> Any:
        try:
            import pandas as pd
        except ImportError as exc:  # pandas is optional
            raise ImportError("metrics as a DataFrame needs pandas: pip install pandas") from exc
        return pd.DataFrame(list(self))


@dataclass(frozen=True)
class OutputFile:
    target: str | None
    path: str  # relative to the run's output folder
    uri: str
    size: int | None = None
    sha256: str | None = None


class Run:
    """A handle on one run. Nothing is fetched until asked for (`status`, `steps()`...)."""

    def __init__(self, ctx: RunContext, run_id: str, *, request: dict[str, Any] | None = None,
                 existed: bool | None = None, info: ExecutionInfo | None = None) -> None:
        self._ctx, self.run_id, self.existed = ctx, run_id, existed
        self._request = request
        self._info = info
        self._manifest: Manifest | None = None

    def __repr__(self) -> str:
        status = self._info.status if self._info else "?"
        return f"Run({self.run_id!r}, status={status!r})"

    @property
    def _backend(self) -> Any:
        return self._ctx.backend

    # -- state
    def refresh(self) -> ExecutionInfo:
        self._info = self._backend.describe(self.run_id)
        if self._info.request:
            self._request = self._info.request
        return self._info

    @property
    def info(self) -> ExecutionInfo:
        if self._info is None or self._info.status not in TERMINAL:
            return self.refresh()
        return self._info

    @property
    def status(self) -> str:
        return self.info.status

    @property
    def is_done(self) -> bool:
        return self.status in TERMINAL

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"

    @property
    def request(self) -> dict[str, Any]:
        if self._request is None:
            self.refresh()
        if self._request is None:
            raise RunNotFoundError(f"run {self.run_id!r}: its request is not available")
        return self._request

    @property
    def output_uri(self) -> str:
        """Where this run's results are (or will be): `<output_uri>/<run_id>`."""
        return join_under(self.request["output_uri"], self.run_id)

    def progress(self) -> _history.Progress:
        return _history.parse(self._backend.history(self.run_id))

    def steps(self) -> list[_history.StepState]:
        """Per-step state: which target is in MSA or Predict, with Batch job ids."""
        return self.progress().steps

    def wait(self, timeout: float | None = None, *, progress: bool = False,
             poll: float | None = None) -> str:
        """Block until the run ends (or `timeout` seconds pass); return the status."""
        clock, sleep = self._ctx.clock, self._ctx.sleep
        poll = self._ctx.poll_interval if poll is None else poll
        deadline = None if timeout is None else clock() + timeout
        bar = _WaitDisplay(self.run_id) if progress else None
        try:
            while True:
                status = self.refresh().status
                if bar is not None:
                    bar.update(status, self.progress() if status not in TERMINAL else None)
                if status in TERMINAL:
                    return status
                if deadline is not None and clock() >= deadline:
                    return status
                sleep(poll if deadline is None else max(0.0, min(poll, deadline - clock())))
        finally:
            if bar is not None:
                bar.close()

    def cancel(self, reason: str = "cancelled by the user") -> str:
        """Stop the execution (its Batch jobs are terminated; cleanup does not run)."""
        if not self.is_done:
            self._backend.stop(self.run_id, reason)
        return self.refresh().status

    def logs(self, step: str, target: str) -> list[str]:
        """The Batch job log of `step` ("msa" or "predict") for `target` (all attempts)."""
        state = self.progress().find(step, target)
        if state is None or not state.job_id:
            raise RunNotFoundError(f"run {self.run_id}: no Batch job for step {step!r} of target {target!r} yet")
        return self._backend.log_lines(self.run_id, state.job_id)

    # -- results
    def manifest(self) -> Manifest:
        """The published manifest (:class:`foldstack.core.manifest.Manifest`)."""
        if self._manifest is None:
            uri = join_under(self.output_uri, MANIFEST)
            data = self._backend.read(uri)
            if data is None:
                raise RunNotCompleteError(
                    f"run {self.run_id} has no results yet (status {self.status}); manifest.json is written last",
                    run_id=self.run_id, status=self.status,
                )
            self._manifest = load_manifest(data, source=uri)
        return self._manifest

    def outputs(self) -> list[OutputFile]:
        """Every published file (from the manifest: present means complete)."""
        files = [OutputFile(None, MANIFEST, join_under(self.output_uri, MANIFEST))]
        for t in self.manifest().targets:
            for rel, meta in sorted(t.files.items()):
                files.append(OutputFile(t.id, f"{t.id}/{rel}", join_under(self.output_uri, t.id, rel),
                                        meta.size, meta.sha256))
        return files

    def download(self, directory: str | Path, *, targets: Sequence[str] | None = None,
                 workers: int = 8) -> Path:
        """Fetch the results to `<directory>/<run_id>/`, checking every file's sha256."""
        root = Path(directory).expanduser().resolve() / self.run_id
        wanted = [f for f in self.outputs() if targets is None or f.target is None or f.target in targets]

        def fetch(f: OutputFile) -> None:
            dest = root / f.path
            self._backend.download(f.uri, dest)
            if f.sha256 and hashlib.sha256(dest.read_bytes()).hexdigest() != f.sha256:
                dest.unlink()
                raise OutputIntegrityError(f"{f.uri} does not match the checksum in the manifest")

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            list(pool.map(fetch, wanted))
        return root

    def metrics(self) -> Rows:
        """One row per target: id, size_class, length, chains, then the predict metrics."""
        rows = Rows()
        for t in self.manifest().targets:
            row = {"run_id": self.run_id, "id": t.id, "size_class": t.size_class,
                   "length": t.length, "chains": t.chains}
            row.update(t.metrics)
            rows.append(row)
        return rows

    def to_dict(self, *, steps: bool = False) -> dict[str, Any]:
        d = self.info.to_dict()
        d["output_uri"] = self.output_uri if self._request or self._info and self._info.request else None
        if self.existed is not None:
            d["existing"] = self.existed
        if steps:
            d["steps"] = [s.to_dict() for s in self.steps()]
        return d


class RunSet:
    """The runs of one campaign (`submit_many`)."""

    def __init__(self, ctx: RunContext, runs: Sequence[Run]) -> None:
        self._ctx, self.runs = ctx, list(runs)

    def __iter__(self) -> Iterator[Run]:
        return iter(self.runs)

    def __len__(self) -> int:
        return len(self.runs)

    def __getitem__(self, i: int) -> Run:
        return self.runs[i]

    @property
    def run_ids(self) -> list[str]:
        return [r.run_id for r in self.runs]

    def summary(self) -> dict[str, int]:
        """Status -> number of runs (only unfinished runs are asked again)."""
        counts: dict[str, int] = {}
        for run in self.runs:
            counts[run.status] = counts.get(run.status, 0) + 1
        return dict(sorted(counts.items()))

    @property
    def is_done(self) -> bool:
        return all(r.is_done for r in self.runs)

    def failed(self) -> list[Run]:
        return [r for r in self.runs if r.is_done and r.status != "SUCCEEDED"]

    def wait(self, timeout: float | None = None, *, progress: bool = False,
             poll: float | None = None) -> dict[str, int]:
        clock, sleep = self._ctx.clock, self._ctx.sleep
        poll = self._ctx.poll_interval if poll is None else poll
        deadline = None if timeout is None else clock() + timeout
        bar = _CountBar("runs finished", len(self.runs)) if progress else None
        try:
            while True:
                pending = [r for r in self.runs if not r.is_done]
                if bar is not None:
                    bar.set(len(self.runs) - len(pending))
                if not pending or (deadline is not None and clock() >= deadline):
                    return self.summary()
                sleep(poll if deadline is None else max(0.0, min(poll, deadline - clock())))
        finally:
            if bar is not None:
                bar.close()

    def metrics(self) -> Rows:
        rows = Rows()
        for run in self.runs:
            if run.status == "SUCCEEDED":
                rows.extend(run.metrics())
        return rows

    def cancel(self, reason: str = "cancelled by the user") -> dict[str, int]:
        for run in self.runs:
            run.cancel(reason)
        return self.summary()


# --------------------------------------------------------------------------- display


class _CountBar:
    def __init__(self, label: str, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TimeElapsedColumn(), transient=False)
        self._task = self._p.add_task(label, total=total)
        self._p.start()

    def advance(self, n: int = 1) -> None:
        self._p.advance(self._task, n)

    def set(self, done: int) -> None:
        self._p.update(self._task, completed=done)

    def close(self) -> None:
        self._p.stop()


class _WaitDisplay:
    def __init__(self, run_id: str) -> None:
        from rich.console import Console
        from rich.live import Live

        self.run_id = run_id
        self._live = Live(console=Console(stderr=True), refresh_per_second=4, transient=False)
        self._live.start()

    def update(self, status: str, progress: _history.Progress | None) -> None:
        from rich.table import Table

        table = Table(title=f"{self.run_id}: {status}", show_header=True)
        table.add_column("where")
        table.add_column("targets", justify="right")
        if progress is not None:
            if progress.current_state:
                table.caption = f"state: {progress.current_state}"
            for key, n in sorted(progress.counts().items()):
                table.add_row(key, str(n))
        self._live.update(table)

    def close(self) -> None:
        self._live.stop()
