"""Local mode's backend: the client's Run API over the local engine (`LocalRunner`).
Split from `foldstack.client.backends` (the interface and the cloud backend), whose types
it speaks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from foldstack.client.backends import ExecutionInfo, Prepared, as_aware, write_stream
from foldstack.client.config import DEFAULT_WORKFLOW
from foldstack.client.errors import RunNotFoundError, RunStateError
from foldstack.core.errors import InputValidationError
from foldstack.core.request import RunRequest
from foldstack.core.uris import parse_uri


class LocalBackend:
    """Local mode: the same Run API over `foldstack.local.runner.LocalRunner`.

    Thin on purpose: it only translates between the client's types (`ExecutionInfo`,
    `Prepared`, `RunNotFoundError`, AWS-shaped history) and the local runner, which owns
    everything else (drivers, run records, locks, finding dead drivers, cleanup). It lives
    here because those types are the client's and `foldstack.local` is a layer below.
    `detach=True`: `start` hands each run to a background driver process that outlives
    this one (`foldstack submit --env local` without `--wait`)."""

    name = "local"

    def __init__(self, runner: Any, output: str | None = None, *, detach: bool = False) -> None:
        self.runner = runner
        self._runners: dict[str, Any] = {}  # workflow -> its runner (the same home), other than `runner`'s
        self._workflows: dict[str, str] = {}  # run id -> workflow, as submitted or recorded
        self._output = output
        self.detach = detach

    def default_output(self) -> str:
        return self._output or str(Path.cwd() / "foldstack-results")

    def prepare(self, request: RunRequest, *, inline_as_file: bool = False) -> Prepared:
        prepared = self.runner.prepare(request)  # (request, [target ids,] run id)
        return Prepared(prepared[0], prepared[-1], [])

    def prepare_workload(self, workflow: str, request: Any, *, fields: Mapping[str, Any] | None = None,
                         base: Path | None = None) -> Prepared:
        """Another registered workload's run on the local engine, by a runner of that workflow
        in the same home: a dataset folder / request file is read by the workload's
        ``local_request`` (its task module), a model or dict of fields is taken as it is;
        the runner then checks it as Validate Input will and links its inputs under the home."""
        from pydantic import BaseModel

        from foldstack.workflows.registry import get_workload

        module = get_workload(workflow).tasks_module()
        fields = dict(fields or {})
        output = str(fields.pop("output_uri", None) or self.default_output())
        runner = self._runner_for(workflow)
        if isinstance(request, str | Path):
            reader = getattr(module, "local_request", None)
            if reader is None:
                raise InputValidationError(f"workflow {workflow!r} has no local dataset reader", code="invalid_request")
            raw = reader(Path(request).expanduser(), output, **fields)
        else:
            data = request.model_dump(mode="json") if isinstance(request, BaseModel) else dict(request or {})
            raw = runner.parse_request({**data, **fields, "output_uri": data.get("output_uri") or output})
        _submitted, _items, run_id = runner.prepare(raw)  # every check, and the run id
        self._workflows[run_id] = workflow
        # the request as given: `start` prepares it again (inputs linked from where they are)
        return Prepared(raw, run_id, [], workflow=workflow)

    def _runner_for(self, workflow: str) -> Any:
        if self.runner.workflow.name == workflow:
            return self.runner
        if workflow not in self._runners:
            self._runners[workflow] = type(self.runner)(
                self.runner.paths.home, workflow=workflow, wait_scale=self.runner.wait_scale,
                job_env=self.runner.job_env)
        return self._runners[workflow]

    def _runner_of(self, run_id: str, *, look_up: bool = False) -> Any:
        """The runner of the run's workflow (`look_up`: read its record when not known yet, for
        what drives the run: retry, cancel); reading records and histories needs none."""
        workflow = self._workflows.get(run_id)
        if workflow is None and look_up:
            try:
                workflow = self.runner.describe(run_id).get("workflow")
            except Exception:  # noqa: BLE001 - not found: the caller's own call says so
                workflow = None
        return self._runner_for(workflow) if workflow else self.runner

    def upload(self, prepared: Prepared) -> None:
        return None  # LocalRunner.prepare copied the inputs under <home>/inputs already

    def start(self, prepared: Prepared, *, rerun: bool = False) -> bool:
        with _run_state():
            runner = self._runner_for(prepared.workflow) if prepared.workflow != DEFAULT_WORKFLOW else self.runner
            return bool(runner.submit(prepared.request, detach=self.detach, rerun=rerun).existed)

    def retry(self, run_id: str) -> bool:
        from foldstack.local.errors import LocalRunNotFound

        try:
            with _run_state():
                return bool(self._runner_of(run_id, look_up=True).retry(run_id, detach=self.detach).existed)
        except LocalRunNotFound as exc:
            raise RunNotFoundError(exc.message, run_id=run_id) from None

    def _record(self, run_id: str) -> dict[str, Any]:
        from foldstack.local.errors import LocalRunNotFound

        try:
            return self._runner_of(run_id).describe(run_id)  # a run whose driver died is recorded ABORTED here
        except LocalRunNotFound as exc:
            raise RunNotFoundError(exc.message, run_id=run_id) from None

    @staticmethod
    def _info(rec: dict[str, Any]) -> ExecutionInfo:
        return ExecutionInfo(
            run_id=str(rec.get("run_id")), status=str(rec.get("status") or "UNKNOWN"),
            start=_dt(rec.get("started_at")), stop=_dt(rec.get("stopped_at")), error=rec.get("error"),
            cause=rec.get("cause"), request=rec.get("request"), output=rec.get("result"),
            attempt=int(rec.get("execution") or 1), execution_name=rec.get("execution_name"),
            workflow=rec.get("workflow") or DEFAULT_WORKFLOW,
        )

    def describe(self, run_id: str) -> ExecutionInfo:
        return self._info({**self._record(run_id), "run_id": run_id})

    def history(self, run_id: str) -> list[dict[str, Any]]:
        from foldstack.client.history import from_engine

        self._record(run_id)
        return from_engine(e for e in self._runner_of(run_id).history(run_id)
                           if not isinstance(e, Mapping) or e.get("type"))

    def stop(self, run_id: str, cause: str) -> None:
        from foldstack.local.errors import LocalRunNotFound

        try:
            self._runner_of(run_id, look_up=True).cancel(run_id, cause)  # wherever it is driven; it is cleaned up
        except LocalRunNotFound as exc:
            raise RunNotFoundError(exc.message, run_id=run_id) from None

    def list_runs(self, status: str | None, since: datetime | None) -> Iterator[ExecutionInfo]:
        infos = []
        for rec in self.runner.list_runs():  # a corrupt record is listed as UNKNOWN
            info = self._info(rec)
            if status and info.status != status:
                continue
            if since and info.start and as_aware(info.start) < as_aware(since):
                continue
            infos.append(info)
        yield from sorted(infos, key=lambda i: as_aware(i.start or datetime.min), reverse=True)

    def log_lines(self, run_id: str, job_id: str) -> list[str]:
        logs = self.runner.paths.run_dir(run_id) / "logs"
        files = sorted(logs.glob(f"*{job_id}*.log")) if logs.is_dir() else []
        if not files:
            raise RunNotFoundError(f"no local log for job {job_id} under {logs}")
        lines: list[str] = []
        for f in files:
            lines.append(f"==> {f.name} <==")
            lines.extend(f.read_text(errors="replace").splitlines())
        return lines

    def read(self, uri: str) -> bytes | None:
        path = Path(parse_uri(uri).key)
        return path.read_bytes() if path.is_file() else None

    def missing_db_versions(self, pins: Mapping[str, str]) -> tuple[dict[str, str], str]:
        """({name: version} of `pins` not installed under ``<home>/db``, that directory): a
        version is installed when ``<name>/<version>/manifest.json`` is (what `db build` and
        the demo write last, and what the msa step opens)."""
        root = Path(self.runner.paths.db)
        return {n: v for n, v in pins.items() if not (root / n / v / "manifest.json").is_file()}, str(root)

    def download(self, uri: str, path: Path) -> None:
        src = Path(parse_uri(uri).key)
        with src.open("rb") as fh:
            write_stream(path, iter(lambda: fh.read(1 << 20), b""))


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _run_state() -> Iterator[None]:
    """The local runner's RunStateConflict as the client's RunStateError (same code)."""
    from foldstack.local.errors import RunStateConflict

    try:
        yield
    except RunStateConflict as exc:
        raise RunStateError(exc.message, code=exc.code, **exc.details) from None


def _dt(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None
