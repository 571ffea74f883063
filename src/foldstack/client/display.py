"""What `Run.wait(progress=True)` and `RunSet.wait`/`submit_many` draw on the terminal (the
CLI's `run --local` and `wait` show the same table: one implementation)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from foldstack.client import history as _history
from foldstack.client.backends import TERMINAL


class CountBar:
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


def _clock_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class WaitDisplay:
    """The live table of `Run.wait(progress=True)` (the CLI's `run --local` and `wait`
    show this same table): the run's status, elapsed time and current state; per
    target-level step, how many of the run's targets are done, running and failed
    there, and the time spent in it. It is re-rendered on every refresh (4 per second),
    so times move between polls; on a non-terminal only the final table is printed."""

    def __init__(self, run: Any, console: Any = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.run_id, self._n = run.run_id, run.n_targets
        self._status, self._progress, self._start = "RUNNING", _history.Progress(), None
        self._t0 = time.monotonic()
        self._live = Live(self, console=console or Console(stderr=True), refresh_per_second=4, transient=False)
        self._live.start()

    def update(self, status: str, progress: _history.Progress | None, start: datetime | None = None) -> None:
        self._status = status
        if progress is not None:
            self._progress = progress
        if start is not None:
            self._start = _aware(start)
        self._live.refresh()

    def _elapsed(self, since: datetime | None, until: datetime | None, now: datetime) -> str:
        if since is None:
            return ""
        return _clock_text(((_aware(until) if until else now) - _aware(since)).total_seconds())

    def __rich__(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        now = datetime.now(UTC)
        total = self._n or self._progress.n_targets
        elapsed = (_clock_text((now - self._start).total_seconds()) if self._start
                   else _clock_text(time.monotonic() - self._t0))
        title = Text(f"{self.run_id}  {self._status}  {elapsed}")
        table = Table(title=title, title_justify="left", show_header=True, box=None, padding=(0, 2))
        for name, justify in (("step", "left"), ("done", "right"), ("running", "right"), ("failed", "right"),
                              ("time", "right")):
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        for row in self._progress.summary():
            done = f"{row.done}/{total}" if total and row.per_target else str(row.done)
            table.add_row(Text(row.step), done, str(row.running), str(row.failed),
                          self._elapsed(row.started, row.stopped, now))
        if self._progress.current_state and self._status not in TERMINAL:
            table.caption = Text(f"now: {self._progress.current_state}")
        return table

    def close(self) -> None:
        self._live.stop()
        if not self._live.console.is_terminal:  # rich ends the final table without a newline there
            self._live.console.line()
