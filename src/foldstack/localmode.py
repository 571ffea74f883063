"""Local mode: run the rendered fold workflow on this machine.

The same rendered ASL as in the cloud runs on the local engine (moto's interpreter);
Lambda tasks call the real handlers, Batch tasks run the jobs.yaml commands as
subprocesses. Like the cloud client, local files are first copied under an input
prefix (`<home>/inputs/`), and the run id names the execution, so submitting the same
request twice returns the first run instead of folding again.

Layout under FOLDSTACK_HOME (default ~/.foldstack):
  db/ weights/     demo or real databases and model weights (`foldstack demo-data`)
  inputs/          content-addressed copies of submitted FASTA files
  scratch/         per-run scratch (what /fsx/scratch is in the cloud)
  runs/<run_id>/   run record (run.json) and job logs
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from foldstack import storage
from foldstack.core.fasta import FastaLimits
from foldstack.core.request import InlineRecord, RunRequest
from foldstack.core.uris import parse_uri
from foldstack.tasks.validate import validate_run
from foldstack.workflows.render import dumps, render_definition
from foldstack.workflows.specs import Workflow, load_workflow

TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


def _target_of(path: tuple[int, ...], target_ids: Sequence[str | Sequence[str]]) -> str | None:
    """The target a Map path belongs to. ``target_ids`` items are target ids (one Map
    iteration per target) or batches of ids (the fold workflow: outer Map per batch,
    inner Map per target; a batch-level event names the batch's ids joined by ',')."""
    if not path or path[0] >= len(target_ids):
        return None
    item = target_ids[path[0]]
    if isinstance(item, str):
        return item
    if len(path) > 1 and path[1] < len(item):
        return item[path[1]]
    return ",".join(item)


def event_dict(event: Any, target_ids: Sequence[str | Sequence[str]] = ()) -> dict[str, Any]:
    """A history event as plain JSON: type, state, target (for Map iterations), error."""
    path = tuple(event.map_path)
    target = _target_of(path, target_ids)
    return {
        "id": event.id,
        "type": event.type,
        "timestamp": event.timestamp.isoformat(),
        "state": event.state_name,
        "map_path": list(path),
        "target": target,
        "error": event.error,
        "cause": event.cause,
    }


def default_home() -> Path:
    return Path(os.environ.get("FOLDSTACK_HOME") or Path.home() / ".foldstack").resolve()


@dataclass(frozen=True)
class LocalPaths:
    home: Path

    @property
    def db(self) -> Path:
        return self.home / "db"

    @property
    def weights(self) -> Path:
        return self.home / "weights"

    @property
    def inputs(self) -> Path:
        return self.home / "inputs"

    @property
    def scratch(self) -> Path:
        return self.home / "scratch"

    @property
    def runs(self) -> Path:
        return self.home / "runs"

    def run_dir(self, run_id: str) -> Path:
        return self.runs / run_id

    def ensure(self) -> LocalPaths:
        for d in (self.inputs, self.scratch, self.runs):
            d.mkdir(parents=True, exist_ok=True)
        return self


def upload_inputs(inputs: Sequence[str | InlineRecord], dest: Path) -> list[str | InlineRecord]:
    """Copy local files under `dest/<sha256>/<name>` (like the cloud client's upload)."""
    out: list[str | InlineRecord] = []
    for item in inputs:
        if isinstance(item, InlineRecord) or str(item).startswith("s3://"):
            out.append(item)
            continue
        src = Path(str(item).removeprefix("file://")).expanduser()
        if not src.is_file():
            from foldstack.core.errors import InputValidationError

            raise InputValidationError(f"input file {str(src)!r} does not exist", code="missing_input")
        data = src.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        target = dest / digest[:16] / src.name
        # Content-addressed: reuse a copy only if it is complete (written atomically, and
        # its checksum still matches).
        if not target.is_file() or hashlib.sha256(target.read_bytes()).hexdigest() != digest:
            storage.write_bytes(str(target), data)
        out.append(str(target))
    return out


@dataclass
class LocalRun:
    """A handle on one local execution; `status` reads the run record lazily."""

    run_id: str
    paths: LocalPaths
    request: RunRequest
    target_ids: tuple[str, ...] | tuple[tuple[str, ...], ...] = ()
    _execution: Any = field(default=None, repr=False)

    @property
    def record_path(self) -> Path:
        return self.paths.run_dir(self.run_id) / "run.json"

    def record(self) -> dict[str, Any]:
        return json.loads(self.record_path.read_text())

    @property
    def status(self) -> str:
        return self.record()["status"]

    @property
    def output(self) -> Path:
        return Path(self.request.output_uri) / self.run_id

    def wait(self, timeout: float | None = None) -> str:
        if self._execution is not None:
            self._execution.wait(timeout)
        return self.status

    def history(self) -> list[dict[str, Any]]:
        if self._execution is not None:
            return [event_dict(e, self.target_ids) for e in self._execution.history()]
        return self.record().get("history", [])


class LocalRunner:
    """Submits runs to the local engine. One engine per run keeps each run's Lambda
    environment (its allowed prefixes) exact."""

    def __init__(
        self,
        home: Path | None = None,
        *,
        workflow: Workflow | None = None,
        wait_scale: float = 0.0,
        injector: Any = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        job_env: dict[str, str] | None = None,
        limits: FastaLimits | None = None,
    ) -> None:
        self.paths = LocalPaths((home or default_home()).resolve()).ensure()
        self.workflow = workflow or load_workflow("fold")
        self.wait_scale = wait_scale
        self.injector = injector
        self.on_event = on_event
        self.job_env = job_env or {}
        self.limits = limits or FastaLimits()
        self._definition = dumps(render_definition(self.workflow))
        self._lock = threading.Lock()

    # -- configuration the engine needs -------------------------------------------------
    def lambda_env(self, output_uri: str) -> dict[str, str]:
        classes = {k: v.model_dump() for k, v in self.workflow.jobs.size_classes.items()}
        return {
            "FOLDSTACK_SCRATCH_ROOT": str(self.paths.scratch),
            "FOLDSTACK_CACHE_ROOT": str(self.paths.home / "cache"),  # MSA cache: <home>/cache/msa/...
            "FOLDSTACK_DB_ROOT": str(self.paths.db),
            "FOLDSTACK_ALLOWED_INPUT_PREFIXES": str(self.paths.inputs),
            "FOLDSTACK_ALLOWED_OUTPUT_PREFIXES": output_uri,
            "FOLDSTACK_SIZE_CLASSES": json.dumps(classes),
            "FOLDSTACK_LIMITS": self.limits.model_dump_json(),
        }

    def placeholders(self) -> dict[str, str]:
        from foldstack.local import local_values

        return local_values(
            self.workflow.directory / "jobs.yaml",
            scratch_mount=str(self.paths.scratch), db_mount=str(self.paths.db),
            weights_dir=str(self.paths.weights),
        )

    # -- submission ---------------------------------------------------------------------
    def prepare(self, request: RunRequest) -> tuple[RunRequest, list[str], str]:
        """Validate exactly as Validate Input will, then copy local inputs under the input
        prefix. Returns (request as submitted, target ids, run id)."""
        raw = request.output_uri
        output = str(Path(parse_uri(raw if raw.startswith("file://") else os.path.expanduser(raw)).key).resolve())
        local_files = tuple(i for i in request.inputs if isinstance(i, str) and not i.startswith("s3://"))
        allowed = tuple(str(Path(f.removeprefix("file://")).expanduser().resolve().parent) for f in local_files)
        validate_run(
            request.model_copy(update={"output_uri": output}),
            allowed_input_prefixes=allowed or (str(self.paths.inputs),), allowed_output_prefixes=(output,),
            size_classes=self.workflow.jobs.size_classes, limits=self.limits,
        )
        uploaded = upload_inputs(request.inputs, self.paths.inputs)
        request = request.model_copy(update={"inputs": tuple(uploaded), "output_uri": output})
        _, _, targets, run_id = validate_run(
            request, allowed_input_prefixes=(str(self.paths.inputs),), allowed_output_prefixes=(output,),
            size_classes=self.workflow.jobs.size_classes, limits=self.limits,
        )
        return request, [t.id for t in targets], run_id

    def submit(self, request: RunRequest, *, force: bool = False) -> LocalRun:
        request, target_ids, run_id = self.prepare(request)
        run = LocalRun(run_id, self.paths, request, self._batch_layout(request) or tuple(target_ids))
        with self._lock:
            if run.record_path.exists() and not force:
                existing = run.record()
                if existing["status"] in TERMINAL or existing.get("pid") == os.getpid():
                    return run  # idempotent: same request, same run
            self._start(run)
        return run

    def _batch_layout(self, request: RunRequest) -> tuple[tuple[str, ...], ...]:
        """The fold workflow's Map layout (Plan Batches' batches, computed the same way),
        so history events can name their target."""
        from foldstack.tasks.plan import plan_batches

        knobs = self.workflow.knobs.get("batching") or {}
        if "max_targets_per_job" not in knobs or (self.workflow.knobs.get("bulk") or {}).get(
                "threshold_targets", 0) < 1:
            return ()
        _, _, targets, _ = validate_run(
            request, allowed_input_prefixes=(str(self.paths.inputs),), allowed_output_prefixes=(request.output_uri,),
            size_classes=self.workflow.jobs.size_classes, limits=self.limits,
        )
        if len(targets) > self.workflow.knobs["bulk"]["threshold_targets"]:
            return ()  # Distributed Map: child executions' events are not in this history
        batches = plan_batches([t.model_dump() for t in targets], list(self.workflow.jobs.size_classes),
                               int(knobs["max_targets_per_job"]))
        return tuple(tuple(t["id"] for t in b["targets"]) for b in batches)

    def _write_record(self, run: LocalRun, **fields: Any) -> None:
        run.record_path.parent.mkdir(parents=True, exist_ok=True)
        current = json.loads(run.record_path.read_text()) if run.record_path.exists() else {}
        current.update(fields)
        storage.write_pointer(str(run.record_path), json.dumps(current, indent=2, default=str))

    def _start(self, run: LocalRun) -> None:
        from foldstack.local import LocalEngine

        engine = LocalEngine(
            self._definition,
            jobs_yaml=self.workflow.directory / "jobs.yaml",
            lambda_env=self.lambda_env(run.request.output_uri),
            # Local databases are never half-imported (no FSx): fail at once, not after 5 minutes.
            job_env={"HF_HUB_OFFLINE": "1", "FOLDSTACK_DB_IMPORT_RETRIES": "0", **self.job_env},
            placeholders=self.placeholders(),
            log_dir=self.paths.run_dir(run.run_id) / "logs",
            wait_scale=self.wait_scale,
            injector=self.injector,
            on_event=(lambda e: self.on_event(event_dict(e, run.target_ids))) if self.on_event else None,
        )
        now = datetime.now(UTC).isoformat(timespec="seconds")
        self._write_record(run, run_id=run.run_id, status="RUNNING", started_at=now, pid=os.getpid(),
                           request=run.request.model_dump(mode="json"), output=str(run.output))
        execution = engine.start_execution(
            run.run_id, {"run_id": run.run_id, "request": run.request.model_dump(mode="json")}
        )
        run._execution = execution

        def finish() -> None:
            # States.Runtime errors are bugs in the definition, not run failures: they
            # are recorded on the run (and asserted absent by the tests), never swallowed.
            execution.wait(None, raise_on_runtime_error=False)
            self._write_record(
                run,
                status=execution.status,
                runtime_errors=execution.runtime_errors,
                stopped_at=datetime.now(UTC).isoformat(timespec="seconds"),
                error=execution.error,
                cause=execution.cause,
                result=execution.output,
                history=[event_dict(e, run.target_ids) for e in execution.history()],
            )

        watcher = threading.Thread(target=finish, name=f"foldstack-run-{run.run_id}", daemon=True)
        watcher.start()
        run._execution = _Joined(execution, watcher)


class _Joined:
    """Execution plus the thread that records its end: waiting means both are done."""

    def __init__(self, execution: Any, watcher: threading.Thread) -> None:
        self._execution, self._watcher = execution, watcher

    def wait(self, timeout: float | None) -> None:
        self._watcher.join(timeout)

    def history(self) -> list[Any]:
        return self._execution.history()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._execution, name)
