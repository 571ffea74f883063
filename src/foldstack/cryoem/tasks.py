"""The cryoem workflow's Lambda tasks (the registry's ``tasks`` for ``cryoem``).

The shared Lambdas (``lambdas/<name>/handler.py``) hand an event whose ``workflow`` is
``cryoem`` to :data:`HANDLERS` (:mod:`foldstack.workflows.dispatch`); each parses it into
its :mod:`foldstack.cryoem.task_events` model, like fold's tasks.

* Validate Input: the request (:func:`foldstack.cryoem.request.parse_run_request`), its
  movies (listed; every header read, on S3 with one ranged GET per MRC) and reference, the output
  prefix; returns the run id, the preprocessing batches and the size class. Writes nothing.
* Stage Inputs: the movies and reference copied (hard-linked on one local file system)
  into ``<scratch>/<run_id>/input/``, with ``request.json`` as the stages read it (a
  dataset's) and ``run.json`` (batches, knobs, size class) for the step commands.
* Collect Outputs: the results the ``postprocess`` job assembled
  (``<scratch>/<run_id>/results/all/``, checked against its done record) published to
  ``<output_uri>/<run_id>/`` through the one publish primitive (:func:`foldstack.storage.publish`),
  ``manifest.json`` last.
* Cleanup: the shared one (the stages keep fold's ``<step>/<target>/`` layout and done
  records), then, on failure, whatever an interrupted publish left.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from foldstack import storage
from foldstack.core.clock import utcnow
from foldstack.core.errors import FoldstackError, InputValidationError, OutputsNotReadyError, StagingError
from foldstack.core.runid import RUN_ID_PATTERN
from foldstack.core.uris import join_under, parse_uri, require_under
from foldstack.cryoem.costs import stage_costs
from foldstack.cryoem.knobs import Knobs
from foldstack.cryoem.manifest import MANIFEST, CryoemManifest
from foldstack.cryoem.request import CryoemRunRequest, parse_run_request
from foldstack.cryoem.submission import (
    batches_of,
    check_movie_headers,
    request_from_dataset,
    resolve_movies,
    resolve_reference,
    run_id_for,
    size_class_for,
)
from foldstack.cryoem.task_events import (
    CONTRACTS,
    CleanupEvent,
    CleanupResult,
    CollectOutputsEvent,
    CollectOutputsResult,
    StageInputsEvent,
    StageInputsResult,
    ValidateInputEvent,
    ValidateInputResult,
)
from foldstack.tasks.runtime import LambdaHandler, task_handler
from foldstack.tasks.settings import TaskSettings
from foldstack.tasks.stage import FILE_MODE, make_job_dirs, posix_metadata, run_scratch

INPUT = "input"
RUN_FILE = "run.json"  # what the step commands read: batches, knobs, size class
RESULTS = ("results", "all")  # the postprocess job's assembled results (foldstack.cryoem.pipeline)
SUMMARY = "summary.json"
JOB_DIRS = ("", INPUT, f"{INPUT}/movies", f"{INPUT}/reference")
DONE_MAX_BYTES = 1 << 20


# -- planning (shared by Validate Input, Stage Inputs and local mode) ---------------------------


class Plan:
    """A validated request and what the workflow makes of it."""

    def __init__(self, request: CryoemRunRequest, movies: list[str], reference: str | None, run_id: str,
                 size_class: str | None) -> None:
        self.request, self.movies, self.reference = request, movies, reference
        self.run_id, self.size_class = run_id, size_class
        self.batches = batches_of(movies, request.batch_size)

    @property
    def bias_guard(self) -> bool:
        return self.reference is not None and self.request.bias_guard

    @property
    def guard_denovo(self) -> bool:
        return self.bias_guard and bool(Knobs.with_overrides(self.request.knobs).guard_denovo)


def plan_run(raw_request: Any, *, size_classes: list[tuple[str, int]] | None, allowed_input_prefixes: tuple[str, ...],
             allowed_output_prefixes: tuple[str, ...], run_id: str | None = None, base: Path | None = None) -> Plan:
    """The whole check; writes nothing. `run_id`, when given, must be the request's.
    `size_classes` (jobs.yaml's, in order): the run's class; None: not asked for."""
    request = parse_run_request(raw_request)
    require_under(request.output_uri, allowed_output_prefixes, what="output_uri")
    movies = resolve_movies(request, base=base, allowed_prefixes=allowed_input_prefixes)
    check_movie_headers(movies, request.box_size)
    reference = resolve_reference(request, base=base, allowed_prefixes=allowed_input_prefixes)
    expected = run_id_for(request, movies)
    if run_id is not None and run_id != expected:
        raise InputValidationError(f"run id {run_id!r} does not match the request (expected {expected!r})",
                                   code="run_id_mismatch", hint="let the client compute the run id")
    size_class = size_class_for(request.box_size, size_classes) if size_classes is not None else None
    return Plan(request, movies, reference, expected, size_class)


#: Local mode's reading of a dataset folder (``foldstack run --local --workflow cryoem DATASET``).
local_request = request_from_dataset


def prepare_local(raw_request: Any, *, output: Path, inputs_dir: Path,
                  base: Path | None = None) -> tuple[CryoemRunRequest, str, list[str]]:
    """Local mode's submission (:class:`foldstack.local.runner.LocalRunner`): validate as
    Validate Input will, then hard-link (else copy) the movies and reference under the
    local input prefix (``<inputs_dir>/cryoem/<run_id>/``), as the cloud client uploads
    them. Returns (the request as submitted: inputs there, output absolute; run id;
    batch ids)."""
    request = parse_run_request(raw_request)
    for uri in [*([request.movies] if isinstance(request.movies, str) else request.movies),
                *([request.reference] if request.reference else [])]:
        if uri.startswith("s3://"):
            raise InputValidationError(f"{uri}: local mode reads local files", code="unsupported_scheme",
                                       hint="download it first, or submit the run to AWS")
    request = request.model_copy(update={"output_uri": str(output)})
    plan = plan_run(request, size_classes=None, allowed_input_prefixes=(), allowed_output_prefixes=(str(output),),
                    base=base)
    dest = inputs_dir / "cryoem" / plan.run_id
    for movie in plan.movies:
        _copy(movie, str(dest / "movies" / _name(movie)), None)
    reference = None
    if plan.reference is not None:
        reference = str(dest / "reference" / _name(plan.reference))
        _copy(plan.reference, reference, None)
    submitted = request.model_copy(update={"movies": str(dest / "movies"), "reference": reference})
    return submitted, plan.run_id, list(plan.batches)


# -- validate / stage -------------------------------------------------------------------------------


def validate_input(event: ValidateInputEvent, settings: TaskSettings) -> ValidateInputResult:
    plan = plan_run(event.request, size_classes=list(event.size_classes),
                    allowed_input_prefixes=settings.allowed_input_prefixes,
                    allowed_output_prefixes=settings.allowed_output_prefixes, run_id=event.run_id)
    assert plan.size_class is not None
    return ValidateInputResult(run_id=plan.run_id, n_movies=len(plan.movies), batches=list(plan.batches),
                               size_class=plan.size_class, has_reference=plan.reference is not None,
                               bias_guard=plan.bias_guard, guard_denovo=plan.guard_denovo)


def _name(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def _copy(src: str, dest: str, metadata: dict[str, str] | None) -> None:
    """One input into scratch: a hard link when both are on one local file system (movies
    are big and read-only), else a copy (S3 server-side, or streamed)."""
    if not src.startswith("s3://") and not dest.startswith("s3://"):
        target = Path(parse_uri(dest).key)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target.unlink()
        try:
            os.link(src, target)
            return
        except OSError:
            pass
    storage.copy(src, dest, metadata=metadata)


def dataset_request(plan: Plan) -> dict[str, Any]:
    """The staged ``request.json`` in a dataset's form (:func:`foldstack.cryoem.request.load_request`),
    paths relative to ``input/``."""
    req = plan.request
    data: dict[str, Any] = {"movies": "movies", "optics": req.optics.model_dump(),
                            "particle_diameter": req.particle_diameter, "box_size": req.box_size,
                            "symmetry": req.symmetry}
    if plan.reference is not None:
        data["reference"] = f"reference/{_name(plan.reference)}"
    return data


def run_file(plan: Plan) -> dict[str, Any]:
    return {"run_id": plan.run_id, "request": plan.request.model_dump(mode="json"), "size_class": plan.size_class,
            "batches": {b: [_name(m) for m in movies] for b, movies in plan.batches.items()},
            "knobs": Knobs.with_overrides(plan.request.knobs).to_json(), "bias_guard": plan.bias_guard}


def stage_plan(settings: TaskSettings, plan: Plan) -> StageInputsResult:
    root = run_scratch(settings, plan.run_id)
    meta = posix_metadata(settings, FILE_MODE)
    try:
        make_job_dirs(settings, root, JOB_DIRS)
        for movie in plan.movies:
            _copy(movie, storage.safe_join(root, INPUT, "movies", _name(movie)), meta)
        if plan.reference is not None:
            _copy(plan.reference, storage.safe_join(root, INPUT, "reference", _name(plan.reference)), meta)
        for name, body in (("request.json", dataset_request(plan)), (RUN_FILE, run_file(plan))):
            storage.write_bytes(storage.safe_join(root, INPUT, name),
                                (json.dumps(body, indent=2, sort_keys=True) + "\n").encode(), metadata=meta)
    except FoldstackError:
        raise
    except Exception as exc:  # S3 or file system: name where, keep the cause
        raise StagingError(f"could not stage inputs into {root}: {exc}") from exc
    # the preprocessing cache's root goes to every preprocess job (foldstack.cryoem.cache):
    # empty when the request turned it off or none is configured
    cache = settings.cache_root if (plan.request.reuse_cache and settings.cache_root) else ""
    return StageInputsResult(scratch=root, staged=len(plan.movies), cache_root=cache or "")


def stage_inputs(event: StageInputsEvent, settings: TaskSettings) -> StageInputsResult:
    # Re-validated: the movies may have changed since Validate Input (the run id says which).
    plan = plan_run(event.request, size_classes=None,
                    allowed_input_prefixes=settings.allowed_input_prefixes,
                    allowed_output_prefixes=settings.allowed_output_prefixes, run_id=event.run_id)
    return stage_plan(settings, plan)


# -- collect ---------------------------------------------------------------------------------------


def _read_json(uri: str) -> Any:
    try:
        return json.loads(storage.read_bytes(uri, max_bytes=DONE_MAX_BYTES))
    except (OSError, ValueError) as exc:
        raise OutputsNotReadyError(f"{uri} is missing or unreadable: {exc}", code="outputs_not_ready") from None


def collect_outputs(event: CollectOutputsEvent, settings: TaskSettings) -> CollectOutputsResult:
    request = parse_run_request(event.request)
    output_uri = require_under(request.output_uri, settings.allowed_output_prefixes, what="output_uri")
    folder = storage.safe_join(run_scratch(settings, event.run_id), *RESULTS)
    done = _read_json(join_under(folder, "results.done.json"))
    outputs, sizes = done.get("outputs") or {}, done.get("output_sizes") or {}
    if done.get("run_id") != event.run_id or SUMMARY not in outputs:
        raise OutputsNotReadyError(f"{folder}: its done record is not this run's results", code="outputs_not_ready")
    present = {_name(i.uri): i.size for i in storage.list_prefix(folder)}
    missing = [n for n in outputs if n not in present or (n in sizes and sizes[n] != present[n])]
    if missing:
        raise OutputsNotReadyError(f"{folder}: {', '.join(sorted(missing)[:5])} not there (yet)",
                                   code="outputs_not_ready")
    summary = _read_json(join_under(folder, SUMMARY))
    files = {n: {"sha256": outputs[n], "size": sizes.get(n, present[n])} for n in sorted(outputs) if n != SUMMARY}
    stages, cost = summary["stages"], summary.get("cost")
    if not cost or cost.get("estimated_total_usd") is None:
        # the job priced nothing (an image without jobs.yaml or the price tables): this
        # Lambda carries both, and the stages' done records name where each ran
        cost = stage_costs(stages, summary.get("size_class"))
    manifest = CryoemManifest(
        run_id=event.run_id, created_at=utcnow(), request=request.model_dump(mode="json"),
        relion_version=summary["relion_version"], initial_model=summary["initial_model"],
        results=summary["results"], bias_guard=summary.get("bias_guard"), micrographs=summary["micrographs"],
        stages=stages, cpu_seconds=summary["cpu_seconds"], size_class=summary.get("size_class"), cost=cost,
        files=files)  # type: ignore[arg-type]
    dest = join_under(output_uri, event.run_id)
    with storage.publish(dest, marker=MANIFEST, replace=True, tag=event.run_id) as pub:
        pub.open()  # S3: leftovers of an earlier attempt cleared; a failure below deletes what was copied
        for name in files:
            source = join_under(folder, name)
            if source.startswith("s3://") and dest.startswith("s3://"):
                # server-side (a box-800 map is 2 GB: never through the Lambda's memory); under
                # the publish's prefix, so its rollback removes it, and the marker still comes last
                storage.copy(source, join_under(dest, name))
            elif source.startswith("s3://"):
                pub.put(name, storage.read_bytes(source))
            else:
                pub.put_file(name, source)
        pub.put(MANIFEST, (manifest.model_dump_json(indent=2) + "\n").encode())
    guard = manifest.bias_guard
    return CollectOutputsResult(output=dest, resolution=manifest.results.resolution, outcome="succeeded",
                                bias_guard_flagged=None if guard is None else bool(guard.get("flagged")))


# -- cleanup ---------------------------------------------------------------------------------------


def cleanup(event: CleanupEvent, settings: TaskSettings) -> CleanupResult:
    from foldstack.tasks.cleanup import cleanup as shared_cleanup

    run_id = event.run_id
    if run_id is None or not RUN_ID_PATTERN.fullmatch(run_id):
        return CleanupResult(run_id=None, scratch_deleted=0, partial_outputs_deleted=0)
    # request None: the shared cleanup would read it as fold's; the publish leftovers are ours below
    stopped = {"stopped_at": event.stopped_at / 1000} if event.stopped_at is not None else {}
    result = shared_cleanup(settings, run_id, None, failed=event.failed, **stopped)
    partial = 0
    if event.failed and event.request is not None and event.stopped_at is None:
        try:
            request = parse_run_request(event.request)
            require_under(request.output_uri, settings.allowed_output_prefixes, what="output_uri")
        except FoldstackError:
            request = None  # an invalid request published nothing
        if request is not None:
            partial = storage.remove_partials(join_under(request.output_uri, run_id), marker=MANIFEST, tag=run_id)
    return CleanupResult(run_id=run_id, scratch_deleted=result["scratch_deleted"], partial_outputs_deleted=partial,
                         kept_targets=result.get("kept_targets", 0))


# -- the Lambda side ------------------------------------------------------------------------------

_FUNCTIONS: Mapping[str, Callable[[Any, TaskSettings], Any]] = {
    "validate_input": validate_input, "stage_inputs": stage_inputs,
    "collect_outputs": collect_outputs, "cleanup": cleanup,
}
#: The Lambda handler of each task this workflow uses, by Lambda name.
HANDLERS: dict[str, LambdaHandler] = {name: task_handler(name, CONTRACTS[name])(fn) for name, fn in _FUNCTIONS.items()}
