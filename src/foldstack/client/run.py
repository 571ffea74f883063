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
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foldstack import storage
from foldstack.client import history as _history
from foldstack.client import stepnames
from foldstack.client.backends import TERMINAL, ExecutionInfo
from foldstack.client.config import DEFAULT_WORKFLOW
from foldstack.client.display import CountBar, WaitDisplay
from foldstack.client.errors import RunNotCompleteError, RunNotFoundError
from foldstack.client.failure import BAD_STATUSES, Failure, explain, log_sections
from foldstack.client.outcome import cost_sentence, outcome_sentence, outcome_summary
from foldstack.client.published import WorkloadManifest, read_manifest
from foldstack.core.errors import InputValidationError, OutputIntegrityError
from foldstack.core.manifest import MANIFEST, Manifest, TargetFailure, load_manifest
from foldstack.core.uris import join_under

SUMMARY_TSV = "summary.tsv"  # a fold run's summary, at its root (tasks.collect writes it)


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
                 existed: bool | None = None, info: ExecutionInfo | None = None,
                 workflow: str | None = None) -> None:
        self._ctx, self.run_id, self.existed = ctx, run_id, existed
        self._request = request
        self._info = info
        self._workflow = workflow
        self._manifest: Manifest | None = None
        self._published: WorkloadManifest | None = None
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
        if self._info.workflow and self._workflow is None:
            self._workflow = self._info.workflow
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

    @property
    def workflow(self) -> str:
        """The registered workflow that runs it (fold, cryoem, ...)."""
        if self._workflow is None:
            known = self._info.workflow if self._info is not None else None
            find = getattr(self._backend, "workflow_of", None)
            self._workflow = known or (find(self.run_id) if find else None) or self.refresh().workflow \
                or DEFAULT_WORKFLOW
        return self._workflow

    @property
    def is_fold(self) -> bool:
        return self.workflow == DEFAULT_WORKFLOW

    def progress(self) -> _history.Progress:
        events = self._backend.history(self.run_id)
        return _history.parse(events, stepnames.for_workflow(self.workflow))

    def steps(self) -> list[_history.StepState]:
        """Per-step state: which target is in MSA or Predict, with Batch job ids."""
        return self.progress().steps

    def wait(self, timeout: float | None = None, *, progress: bool = False,
             poll: float | None = None) -> str:
        """Block until the run ends (or `timeout` seconds pass); return the status."""
        clock, sleep = self._ctx.clock, self._ctx.sleep
        poll = self._ctx.poll_interval if poll is None else poll
        deadline = None if timeout is None else clock() + timeout
        bar = WaitDisplay(self) if progress else None
        try:
            while True:
                info = self.refresh()
                status = info.status
                if bar is not None:
                    bar.update(status, self.progress(), info.start)
                # UNKNOWN: a local run record that cannot be read; waiting would never end.
                if status in TERMINAL or status == "UNKNOWN":
                    return status
                if deadline is not None and clock() >= deadline:
                    return status
                sleep(poll if deadline is None else max(0.0, min(poll, deadline - clock())))
        finally:
            if bar is not None:
                bar.close()

    def cancel(self, reason: str = "cancelled by the user") -> str:
        """Stop the execution (its Batch jobs are terminated). Its scratch is cleaned up
        (in the cloud by the Cleanup Lambda, which an EventBridge rule on the ABORTED
        execution invokes; locally by the runner), keeping finished targets for `retry`."""
        if not self.is_done:
            self._backend.stop(self.run_id, reason)
        return self.refresh().status

    def retry(self) -> Run:
        """Start the next attempt of this FAILED, ABORTED or TIMED_OUT run: a new execution
        named ``<run_id>-a<N>`` with the same request, which reuses every target an earlier
        attempt finished and recomputes the rest. `RunStateError` (``run_running``,
        ``nothing_to_retry``) if it runs or succeeded. Returns this handle, which follows
        the new attempt (`existed`: a concurrent retry had started it already)."""
        self.existed = self._backend.retry(self.run_id)
        self._info, self._failure, self._manifest, self._published = None, None, None, None
        return self

    @property
    def n_targets(self) -> int | None:
        """How many targets the run folds, from its id (`<label>-<n>-<digest>`, see
        `foldstack.core.runid`); None for an id of another shape or another workflow's run."""
        known = self._workflow or (self._info.workflow if self._info is not None else None)
        if known not in (None, DEFAULT_WORKFLOW):
            return None
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
        for name, body in log_sections(lines):
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
        with the location of the full log. See `foldstack.client.failure`."""
        info = self.info
        if info.status not in BAD_STATUSES:
            return None
        if self._failure is None:
            self._failure = explain(self.run_id, info, self.progress(), self._backend)
        return self._failure

    # -- results
    def _manifest_bytes(self) -> tuple[bytes, str]:
        uri = join_under(self.output_uri, MANIFEST)
        data = self._backend.read(uri)
        if data is None:
            raise RunNotCompleteError(
                f"run {self.run_id} has no results yet (status {self.status}); manifest.json is written last",
                run_id=self.run_id, status=self.status,
            )
        return data, uri

    def manifest(self) -> Manifest:
        """The published manifest of a fold run (:class:`foldstack.core.manifest.Manifest`);
        another workflow's: `published()`."""
        if not self.is_fold:
            raise InputValidationError(f"run {self.run_id} is a {self.workflow} run: read its manifest with "
                                       "published()", code="invalid_request", run_id=self.run_id)
        if self._manifest is None:
            data, uri = self._manifest_bytes()
            self._manifest = load_manifest(data, source=uri)
        return self._manifest

    def published(self) -> WorkloadManifest:
        """The published manifest of any workflow's run, read generically: its files, outcome
        and metrics (`foldstack.client.published`)."""
        if self._published is None:
            data, uri = self._manifest_bytes()
            self._published = read_manifest(data, source=uri)
        return self._published

    def outcome(self) -> str | None:
        """``succeeded``, ``partial`` (SUCCEEDED with failures within the budget) or ``failed``
        (FAILED with more; what folded is published), from the manifest; None without one."""
        if not self.is_fold:
            try:
                return self.published().outcome
            except RunNotCompleteError:
                return None
        manifest = self._manifest_or_none()
        return manifest.outcome if manifest is not None else None

    def failures(self) -> list[TargetFailure]:
        """The targets that did not fold (target, step, code, message, log), from the manifest."""
        manifest = self._manifest_or_none()
        return list(manifest.failures) if manifest is not None else []

    def outcome_sentence(self) -> str | None:
        """``9,946 of 10,000 targets folded; 54 failed (...) — failures.tsv`` (None without a manifest)."""
        manifest = self._manifest_or_none()
        return outcome_sentence(manifest) if manifest is not None else None

    def cost_sentence(self) -> str | None:
        """``estimated cost 12.34 USD`` (and, when some jobs could not be priced, that the total
        is partial and why); None without a manifest or an estimate."""
        manifest = self._manifest_or_none()
        return cost_sentence(manifest) if manifest is not None else None

    def outcome_summary(self) -> dict[str, Any]:
        """``outcome``, ``targets_folded``, ``targets_failed``, ``failed_by_code`` and
        ``outcome_message`` from the manifest (empty without one), for JSON output."""
        manifest = self._manifest_or_none()
        return outcome_summary(manifest) if manifest is not None else {}

    def _manifest_or_none(self) -> Manifest | None:
        if not self.is_fold:
            return None  # per-target outcomes are fold's
        try:
            return self.manifest()
        except RunNotCompleteError:
            return None

    def outputs(self) -> list[OutputFile]:
        """Every published file (from the manifest: present means complete): each target's
        files, then the run-level ones (``run_files``: ``summary.tsv``, ``index.html``,
        ``failures.tsv``, ``assets/``, ``structures/<target>.cif``, the
        latter with its target set), then ``manifest.json``. Another workflow's run: the files
        its manifest lists (`published()`), then ``manifest.json``."""
        if not self.is_fold:
            return [*(OutputFile(e.target, e.path, join_under(self.output_uri, e.path), e.size, e.sha256)
                      for e in self.published().files),
                    OutputFile(None, MANIFEST, join_under(self.output_uri, MANIFEST))]
        manifest = self.manifest()
        ids = {t.id for t in manifest.targets}
        files = []
        for t in manifest.targets:
            for rel, meta in sorted(t.files.items()):
                files.append(OutputFile(t.id, f"{t.id}/{rel}", join_under(self.output_uri, t.id, rel),
                                        meta.size, meta.sha256))
        for rel, meta in sorted(manifest.run_files.items()):
            stem = rel[len("structures/"):].rsplit(".", 1)[0] if rel.startswith("structures/") else \
                rel.split("/", 1)[0] if rel.endswith("/target.json") else None  # a target's own
            files.append(OutputFile(stem if stem in ids else None, rel, join_under(self.output_uri, rel),
                                    meta.size, meta.sha256))
        files.append(OutputFile(None, MANIFEST, join_under(self.output_uri, MANIFEST)))
        return files

    def download(self, directory: str | Path, *, targets: Sequence[str] | None = None,
                 workers: int = 8) -> Path:
        """Fetch the results to `<directory>/<run_id>/`, checking every file's sha256: each
        target's files and the run-level ones (`outputs`; with `targets`, only theirs and the
        run's own). All or nothing: files arrive in a hidden sibling directory that replaces
        `<run_id>/` only once every file is there and verified (`foldstack.storage.publish`);
        on any failure it is deleted and an earlier download stays as it was."""
        root = Path(directory).expanduser().resolve() / self.run_id
        wanted = [f for f in self.outputs() if targets is None or f.target is None or f.target in targets]
        with storage.publish(root, marker=MANIFEST, replace=True) as pub:
            staging = pub.local_dir()

            def fetch(f: OutputFile) -> None:
                dest = staging / f.path
                self._backend.download(f.uri, dest)
                if f.sha256 and hashlib.sha256(dest.read_bytes()).hexdigest() != f.sha256:
                    raise OutputIntegrityError(f"{f.uri} does not match the checksum in the manifest")

            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                list(pool.map(fetch, wanted))
        return root

    def metrics(self) -> Rows:
        """One row per target, the published ones then the failed ones (summary.tsv has the
        same rows in the run's order): run_id, id, ``core.manifest.SUMMARY_COLUMNS`` in
        order, then the other predict metrics. ``.to_pandas()`` for a DataFrame."""
        from foldstack.core.manifest import SUMMARY_COLUMNS, failed_row, summary_row

        if not self.is_fold:  # one row: the run's own metrics (resolution, particles, ...)
            return Rows([{"run_id": self.run_id, **self.published().metrics}])
        rows, manifest = Rows(), self.manifest()
        for t in manifest.targets:
            row = {"run_id": self.run_id, "id": t.id, **summary_row(t)}
            rows.append({**row, **{k: v for k, v in t.metrics.items() if k not in row}})
        for f in manifest.failures:  # status failed, failure_code, what is known (no metrics)
            failed = failed_row(f)
            rows.append({"run_id": self.run_id, "id": f.target, **{c: failed.get(c) for c in SUMMARY_COLUMNS}})
        return rows

    def summary_tsv(self) -> str:
        """The run's ``summary.tsv`` alone (checked against the manifest; nothing else is
        downloaded); rebuilt from the manifest's rows for a manifest older than the file."""
        from foldstack.core.manifest import summary_tsv

        meta = self.manifest().run_files.get(SUMMARY_TSV)
        if meta is None:
            return summary_tsv(self.manifest().summary_rows())
        uri = join_under(self.output_uri, SUMMARY_TSV)
        data = self._backend.read(uri)
        if data is None or hashlib.sha256(data).hexdigest() != meta.sha256:
            raise OutputIntegrityError(f"{uri} is missing or does not match the checksum in the manifest")
        return data.decode()

    def to_dict(self, *, steps: bool = False) -> dict[str, Any]:
        """The run as JSON. A run that did not succeed also carries `code`, `message` and
        `failure` (see `failure()`), so the document doubles as an error object; an ended
        run with a manifest, its per-target outcome (`outcome_summary()`)."""
        d = self.info.to_dict()
        d["workflow"] = self.workflow
        if self.info.status in ("SUCCEEDED", "FAILED"):
            d.update(self.outcome_summary())
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
        bar = CountBar("runs finished", len(self.runs)) if progress else None
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
