"""`Run` (one execution) and `RunSet` (many, from `submit_many`).

`Run.failure()` says why a run did not succeed in the failing step's own words: the
step and target from the run's history, and the last non-empty line of the failing
Batch job's log (local: `<home>/runs/<run_id>/logs/`; cloud: CloudWatch), or the Lambda's
error message; never the Batch job description Step Functions puts in the cause.
`Run.wait(progress=True)` shows a live table (per step: targets done, running and
failed, and the time spent there); the CLI shows the same table.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from foldstack.client import history as _history
from foldstack.client.backends import TERMINAL, ExecutionInfo
from foldstack.client.errors import RunNotCompleteError, RunNotFoundError
from foldstack.core.errors import EXIT_BAD_INPUT, EXIT_OUT_OF_MEMORY, FoldstackError, OutputIntegrityError
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


@dataclass(frozen=True)
class Failure:
    """Why a run did not succeed, in the failing step's own words."""

    run_id: str
    status: str  # FAILED | TIMED_OUT | ABORTED
    # the step's stable code (its "[code]"), else step_failed | bad_input | out_of_memory |
    # timed_out | aborted | run_failed
    code: str
    message: str  # the failing step's last error line (its log's last non-empty line, or its error message)
    step: str | None = None  # msa | predict | validateinput | ... (None: the run itself)
    state: str | None = None  # the ASL state, e.g. Predict_small
    target: str | None = None  # several, joined by ',', when one job served a batch and its log names none
    error: str | None = None  # the Step Functions error name, e.g. States.TaskFailed
    job_id: str | None = None  # the Batch job, for steps that are Batch jobs
    log: str | None = None  # where the job's full log is: a local path, or a CloudWatch group and stream
    exit_code: int | None = None

    @property
    def where(self) -> str:
        if self.step and self.target:
            return f"{self.step} of target{'s' if ',' in self.target else ''} {self.target}"
        return self.state or self.step or "the run"

    def __str__(self) -> str:
        return f"run {self.run_id} {self.status} in {self.where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_BAD = ("FAILED", "TIMED_OUT", "ABORTED")
_STEP_LOG_PREFIX = re.compile(r"^\[\d\d:\d\d:\d\d\] foldstack step \S+ \[([^\]]*)\] ")
_CODE = re.compile(r"(?:^|: )\[([a-z][a-z0-9_]*)\] ")


def _loads(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return None


def _split_code(text: str) -> tuple[str | None, str]:
    """("gap_character", "…message…") from "…: [gap_character] …message…"."""
    text = _STEP_LOG_PREFIX.sub("", text.strip())
    m = _CODE.search(text)
    if m is None:
        return None, text
    return m.group(1), (text[:m.start()] + (": " if m.start() else "") + text[m.end():]).strip()


def _log_sections(lines: Sequence[str]) -> list[tuple[str | None, list[str]]]:
    """`log_lines` output ("==> name <==" then that log's lines) as (name, lines) pairs."""
    sections: list[tuple[str | None, list[str]]] = []
    for line in lines:
        if line.startswith("==> ") and line.endswith(" <=="):
            sections.append((line[4:-4], []))
        elif sections:
            sections[-1][1].append(line)
        else:
            sections.append((None, [line]))
    return sections


def _job_facts(job: Any) -> tuple[str | None, int | None, str | None]:
    """(log stream, exit code, reason) of a Batch job description's last attempt."""
    if not isinstance(job, Mapping):
        return None, None, None
    attempts = [a for a in job.get("Attempts") or [] if isinstance(a, Mapping)]
    last = attempts[-1] if attempts else {}
    container = last.get("Container") or job.get("Container") or {}
    whole = job.get("Container") or {}
    stream = container.get("LogStreamName") or whole.get("LogStreamName")
    exit_code = container.get("ExitCode", whole.get("ExitCode"))
    reason = container.get("Reason") or last.get("StatusReason") or job.get("StatusReason")
    return stream, exit_code if isinstance(exit_code, int) else None, reason


def _failing_step(progress: _history.Progress) -> _history.StepState | None:
    """The step that made the run fail: a target's latest step that failed (the first to
    stop), else a failed run-level step (ValidateInput, CollectOutputs, ...)."""
    latest = progress.targets()
    failed = [s for s in latest.values() if s.status in _BAD]
    if not failed:
        failed = [s for s in progress.steps if s.target is None and s.status in _BAD]
    if not failed:
        return None
    real = [s for s in failed if s.status != "ABORTED"] or failed
    return min(real, key=lambda s: (s.stopped is None, s.stopped or datetime.max.replace(tzinfo=UTC)))


class Run:
    """A handle on one run. Nothing is fetched until asked for (`status`, `steps()`...)."""

    def __init__(self, ctx: RunContext, run_id: str, *, request: dict[str, Any] | None = None,
                 existed: bool | None = None, info: ExecutionInfo | None = None) -> None:
        self._ctx, self.run_id, self.existed = ctx, run_id, existed
        self._request = request
        self._info = info
        self._manifest: Manifest | None = None
        self._failure: Failure | None = None

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
        bar = _WaitDisplay(self) if progress else None
        try:
            while True:
                info = self.refresh()
                status = info.status
                if bar is not None:
                    bar.update(status, self.progress(), info.start)
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

    @property
    def n_targets(self) -> int | None:
        """How many targets the run folds, from its id (`<label>-<n>-<digest>`, see
        `foldstack.core.runid`); None for an id of another shape."""
        parts = self.run_id.rsplit("-", 2)
        return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None

    def logs(self, step: str | None = None, target: str | None = None) -> list[str]:
        """The Batch job logs (every attempt) of `step` ("msa", "predict") for `target`;
        without `target`, of every job of that step; without either, of every job of
        the run, in the order they started. Each log starts with "==> <name> <==".
        Works for finished runs too (a local run's logs are under its home)."""
        progress = self.progress()
        if step is not None and target is not None:
            state = progress.find(step, target)
            if state is not None and state.job_id:
                return self._backend.log_lines(self.run_id, state.job_id)
            if state is None and not self._is_local:
                raise RunNotFoundError(f"run {self.run_id}: no step {step!r} for target {target!r}",
                                       run_id=self.run_id)
        else:
            jobs = [s.job_id for s in progress.steps if s.job_id and (step is None or s.step == step.lower())
                    and (target is None or s.target == target)]
            if jobs:
                lines: list[str] = []
                for job_id in dict.fromkeys(jobs):
                    lines.extend(self._backend.log_lines(self.run_id, job_id))
                return lines
        if self._is_local:  # a recorded local run's history has no job ids: find its logs by job name
            return self._local_logs(step, target)
        where = f"step {step!r} of target {target!r}" if step and target else f"step {step!r}" if step else "any step"
        raise RunNotFoundError(f"run {self.run_id}: no Batch job for {where} yet", run_id=self.run_id)

    @property
    def _is_local(self) -> bool:
        return getattr(self._backend, "name", None) == "local"

    def _local_logs(self, step: str | None, target: str | None) -> list[str]:
        """Local job logs are `<job name>-<job id>-<attempt>.log`, job names
        `<run_id>-<step>`; each log's first line is the command (`$ ... --target a,b`)."""
        pattern = f"{self.run_id}-{step.lower()}" if step else self.run_id
        try:
            lines = self._backend.log_lines(self.run_id, pattern)
        except RunNotFoundError:
            what = f"for step {step!r}" if step else "(it started no Batch job)"
            raise RunNotFoundError(f"run {self.run_id} has no job logs {what}", run_id=self.run_id) from None
        if target is None:
            return lines
        out: list[str] = []
        for name, body in _log_sections(lines):
            command = next((ln for ln in body[:3] if ln.startswith("$ ")), "")
            m = re.search(r"--target (\S+)", command)
            if m is None or target in m.group(1).split(","):
                out.extend([f"==> {name} <==", *body] if name else body)
        if not out:
            raise RunNotFoundError(f"run {self.run_id}: no job log of step {step!r} for target {target!r}",
                                   run_id=self.run_id)
        return out

    def failure(self) -> Failure | None:
        """Why the run failed (None unless it FAILED, TIMED_OUT or was ABORTED): the
        failing step and target from the history, and that step's own last error line
        (the last non-empty line of its Batch job's log, or the Lambda's error message)
        with the location of the full log."""
        info = self.info
        if info.status not in _BAD:
            return None
        if self._failure is not None:
            return self._failure
        default = {"TIMED_OUT": "timed_out", "ABORTED": "aborted"}.get(info.status)
        progress = self.progress()
        step = _failing_step(progress) if info.status != "ABORTED" else None
        if step is None:
            cause = _loads(info.cause)
            text = cause.get("errorMessage") if isinstance(cause, Mapping) else None
            first = str(text or info.cause or info.error or f"the run {info.status}").splitlines() or [""]
            code, message = _split_code(first[0])
            self._failure = Failure(self.run_id, info.status, code or default or "run_failed", message[:500],
                                    error=info.error)
            return self._failure
        cause = _loads(step.cause)
        job = cause if isinstance(cause, Mapping) and ("Attempts" in cause or "JobId" in cause) else None
        if step.job_id or job is not None:
            stream, exit_code, reason = _job_facts(job)
            line, section = self._last_log_line(step.job_id) if step.job_id else (None, None)
            code, message = _split_code(line) if line else (None, "")
            # One Predict job folds a batch of targets: name the one its log names, else all of them.
            served = {t for s in progress.steps if s.job_id and s.job_id == step.job_id and s.target
                      for t in s.target.split(",")} | set((step.target or "").split(",")) - {""}
            named = _STEP_LOG_PREFIX.match(line or "")
            target = named.group(1) if named and named.group(1) in served else ",".join(sorted(served)) or None
            if not message:
                message = (reason or f"the {step.step} job failed") + (f" (exit {exit_code})" if exit_code else "")
            code = code or {EXIT_BAD_INPUT: "bad_input", EXIT_OUT_OF_MEMORY: "out_of_memory"}.get(exit_code or 0)
            stream = stream or section
            where = getattr(self._backend, "log_location", None)
            self._failure = Failure(
                self.run_id, info.status, code or default or "step_failed", message[:500], step=step.step,
                state=step.state, target=target, error=step.error, job_id=step.job_id,
                log=where(stream) if (where and stream) else stream, exit_code=exit_code,
            )
            return self._failure
        text = cause.get("errorMessage") if isinstance(cause, Mapping) else step.cause
        error = (cause.get("errorType") if isinstance(cause, Mapping) else None) or step.error
        first = next((ln for ln in str(text or "").splitlines() if ln.strip()), "") or str(error or "failed")
        code, message = _split_code(first)
        self._failure = Failure(self.run_id, info.status, code or default or "step_failed", message[:500],
                                step=step.step, state=step.state, target=step.target, error=error)
        return self._failure

    def _last_log_line(self, job_id: str) -> tuple[str | None, str | None]:
        """(last non-empty line of the job's last attempt, that log's name), or Nones
        when the log cannot be read (Batch forgot the job, no access, no file)."""
        try:
            lines = self._backend.log_lines(self.run_id, job_id)
        except (FoldstackError, OSError):
            return None, None
        for name, body in reversed(_log_sections(lines)):
            last = next((ln.strip() for ln in reversed(body) if ln.strip()), None)
            if last is not None:
                return last, name
        return None, None

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
        """The run as JSON. A run that did not succeed also carries `code`, `message` and
        `failure` (see `failure()`), so the document doubles as an error object."""
        d = self.info.to_dict()
        d["output_uri"] = self.output_uri if self._request or self._info and self._info.request else None
        d["n_targets"] = self.n_targets
        if self.existed is not None:
            d["existing"] = self.existed
        failure = self.failure()
        if failure is not None:
            d.update(code=failure.code, message=str(failure), failure=failure.to_dict())
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


def _clock_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class _WaitDisplay:
    """The live table of `Run.wait(progress=True)` (the CLI's `run --local` and `wait`
    show this same table): the run's status, elapsed time and current state; per
    target-level step, how many of the run's targets are done, running and failed
    there, and the time spent in it. It is re-rendered on every refresh (4 per second),
    so times move between polls; on a non-terminal only the final table is printed."""

    def __init__(self, run: Run, console: Any = None) -> None:
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
            done = f"{row.done}/{total}" if total else str(row.done)
            table.add_row(Text(row.step), done, str(row.running), str(row.failed),
                          self._elapsed(row.started, row.stopped, now))
        if self._progress.current_state and self._status not in TERMINAL:
            table.caption = Text(f"now: {self._progress.current_state}")
        return table

    def close(self) -> None:
        self._live.stop()
        if not self._live.console.is_terminal:  # rich ends the final table without a newline there
            self._live.console.line()
