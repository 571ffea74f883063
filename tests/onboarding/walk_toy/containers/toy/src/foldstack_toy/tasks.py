"""The toy's Lambda tasks (workloads.yaml ``tasks: foldstack_toy.tasks``).

The shared Lambdas (``lambdas/<name>/handler.py``) hand an event whose ``workflow`` is
``toy`` to :data:`HANDLERS` (foldstack.workflows.dispatch); each parses it into its
event model below and returns its result model (the contract the rendered ASL's
ResultSelector reads). Local mode also calls :func:`prepare_local` (the submission) and
``foldstack run --local --workflow toy DATASET`` :func:`local_request` (a dataset folder).

* Validate Input: the request, its inputs under the allowed input prefixes, its output
  under the allowed output prefixes, the run id; returns one Map item per input file.
* Stage Inputs: each input copied to ``<scratch>/<run_id>/input/item-NNN.dat``.
* Collect Outputs: the ``toy_work`` results published to ``<output_uri>/<run_id>/``
  through the one publish primitive, ``manifest.json`` last.
* Cleanup: the run's scratch deleted; on failure, what an interrupted publish left.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from foldstack import storage
from foldstack.core.clock import utcnow
from foldstack.core.errors import FoldstackError, InputValidationError, OutputsNotReadyError, StagingError
from foldstack.core.runid import RUN_ID_PATTERN
from foldstack.core.uris import join_under, require_under
from foldstack.tasks.events import CleanupEventFields, Contract
from foldstack.tasks.runtime import LambdaHandler, task_handler
from foldstack.tasks.settings import TaskSettings
from foldstack.tasks.stage import run_scratch
from foldstack_toy.request import ToyRequest

MANIFEST = "manifest.json"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToyEvent(_Model):
    workflow: Literal["toy"]
    run_id: str
    request: dict[str, Any]


class ValidateInputResult(_Model):
    run_id: str
    items: list[str] = Field(min_length=1)  # the Work Map's items


class StageInputsResult(_Model):
    scratch: str
    staged: int = Field(ge=0)


class CollectOutputsResult(_Model):
    output: str
    items: int = Field(ge=0)


class CleanupEvent(CleanupEventFields):
    """The shared Cleanup event (the workflow's own shape, and the one the EventBridge rule
    on an ABORTED or TIMED_OUT execution sends: terraform/modules/workflow/cancel_cleanup.tf),
    for a toy run."""

    workflow: Literal["toy"]


class CleanupResult(_Model):
    run_id: str | None
    scratch_deleted: int = Field(ge=0)
    partial_outputs_deleted: int = Field(ge=0)


def parse_request(raw: Any) -> ToyRequest:
    try:
        return ToyRequest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "request"
        raise InputValidationError(f"toy request field {where}: {first.get('msg')}", code="invalid_request") from None


def item_name(index: int) -> str:
    return f"item-{index:03d}"


def expand(uri: str) -> list[str]:
    """The files an input names: itself, or a folder's (prefix's) files, sorted."""
    listed = [o.uri for o in storage.list_prefix(uri)]
    if listed:
        return sorted(listed)
    if storage.exists(uri):
        return [uri]
    raise InputValidationError(f"input {uri!r} does not exist", code="missing_input")


def plan(raw: Any, settings: TaskSettings, run_id: str) -> tuple[ToyRequest, list[str]]:
    """The whole check (Validate Input and Stage Inputs); writes nothing."""
    request = parse_request(raw)
    require_under(request.output_uri, settings.allowed_output_prefixes, what="output_uri")
    for uri in request.files:
        require_under(uri, settings.allowed_input_prefixes, what="input")
    if request.run_id() != run_id:
        raise InputValidationError(f"run id {run_id!r} does not match the request (expected {request.run_id()!r})",
                                   code="run_id_mismatch")
    inputs = [f for uri in request.files for f in expand(uri)]
    return request, inputs


def validate_input(event: ToyEvent, settings: TaskSettings) -> ValidateInputResult:
    _, inputs = plan(event.request, settings, event.run_id)
    return ValidateInputResult(run_id=event.run_id, items=[item_name(i) for i in range(len(inputs))])


def stage_inputs(event: ToyEvent, settings: TaskSettings) -> StageInputsResult:
    _, inputs = plan(event.request, settings, event.run_id)  # again: the inputs may have changed
    root = run_scratch(settings, event.run_id)
    try:
        for i, uri in enumerate(inputs):
            storage.copy(uri, storage.safe_join(root, "input", f"{item_name(i)}.dat"))
        names = {item_name(i): uri for i, uri in enumerate(inputs)}
        storage.write_bytes(storage.safe_join(root, "input", "run.json"), json.dumps(names, indent=2).encode())
    except FoldstackError:
        raise
    except Exception as exc:  # S3 or file system: name where, keep the cause
        raise StagingError(f"could not stage inputs into {root}: {exc}") from exc
    return StageInputsResult(scratch=root, staged=len(inputs))


def collect_outputs(event: ToyEvent, settings: TaskSettings) -> CollectOutputsResult:
    request = parse_request(event.request)
    output = require_under(request.output_uri, settings.allowed_output_prefixes, what="output_uri")
    root = run_scratch(settings, event.run_id)
    try:
        names = json.loads(storage.read_bytes(storage.safe_join(root, "input", "run.json")))
        results = {item: storage.read_bytes(storage.safe_join(root, "out", f"{item}.json")) for item in names}
    except OSError as exc:  # a job's result not visible yet: the state retries
        raise OutputsNotReadyError(f"{root}: {exc}", code="outputs_not_ready") from None
    dest = join_under(output, event.run_id)
    manifest = {"run_id": event.run_id, "created_at": utcnow(), "request": request.model_dump(mode="json"),
                "files": {f"{item}.json": {"input": names[item], "sha256": hashlib.sha256(body).hexdigest()}
                          for item, body in results.items()}}
    with storage.publish(dest, marker=MANIFEST, replace=True, tag=event.run_id) as pub:
        for item, body in results.items():
            pub.put(f"{item}.json", body)
        pub.put(MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return CollectOutputsResult(output=dest, items=len(results))


def cleanup(event: CleanupEvent, settings: TaskSettings) -> CleanupResult:
    if event.run_id is None or not RUN_ID_PATTERN.fullmatch(event.run_id):
        return CleanupResult(run_id=None, scratch_deleted=0, partial_outputs_deleted=0)  # never a path from it
    # a stopped execution: what was written after it stopped belongs to a newer attempt
    stopped = event.stopped_at / 1000 if event.stopped_at is not None else None
    deleted = storage.delete_prefix_except(run_scratch(settings, event.run_id), (), modified_before=stopped)
    partial = 0
    if event.failed and event.request is not None:
        try:
            request = parse_request(event.request)
            require_under(request.output_uri, settings.allowed_output_prefixes, what="output_uri")
        except FoldstackError:
            request = None  # an invalid request published nothing
        if request is not None:
            partial = storage.remove_partials(join_under(request.output_uri, event.run_id), marker=MANIFEST,
                                              tag=event.run_id)
    return CleanupResult(run_id=event.run_id, scratch_deleted=deleted, partial_outputs_deleted=partial)


_TASKS: Mapping[str, tuple[Callable[[Any, TaskSettings], Any], Contract]] = {
    "validate_input": (validate_input, Contract(event=ToyEvent, result=ValidateInputResult)),
    "stage_inputs": (stage_inputs, Contract(event=ToyEvent, result=StageInputsResult)),
    "collect_outputs": (collect_outputs, Contract(event=ToyEvent, result=CollectOutputsResult)),
    "cleanup": (cleanup, Contract(event=CleanupEvent, result=CleanupResult)),
}
#: The Lambda handler of each task this workflow uses, by Lambda name (the dispatch reads it).
HANDLERS: dict[str, LambdaHandler] = {name: task_handler(name, contract)(fn) for name, (fn, contract) in _TASKS.items()}
CONTRACTS: dict[str, Contract] = {name: contract for name, (_, contract) in _TASKS.items()}


# -- local mode -------------------------------------------------------------------------------------


def local_request(dataset: Path, output: str) -> ToyRequest:
    """A dataset folder's ``request.json`` (files relative to the folder), output `output`."""
    data = json.loads((Path(dataset) / "request.json").read_text())
    files = [f if f.startswith("s3://") else str((Path(dataset) / f).resolve()) for f in data.get("files", [])]
    return parse_request({**data, "files": files, "output_uri": output})


def prepare_local(raw: Any, *, output: Path, inputs_dir: Path) -> tuple[ToyRequest, str, list[str]]:
    """Local mode's submission (foldstack.local.runner.LocalRunner): the inputs copied under
    the local input prefix (``<inputs_dir>/toy/<digest>/``), as the cloud client uploads
    them. Returns (the request as submitted, its run id, the Map's items)."""
    request = parse_request(raw if not isinstance(raw, BaseModel) else raw.model_dump(mode="json"))
    if any(f.startswith("s3://") for f in request.files):
        raise InputValidationError("local mode reads local files", code="unsupported_scheme")
    inputs = [f for uri in request.files for f in expand(uri)]
    dest = inputs_dir / "toy" / hashlib.sha256(json.dumps(inputs).encode()).hexdigest()[:16]
    dest.mkdir(parents=True, exist_ok=True)
    copies = []
    for i, source in enumerate(inputs):
        copy = dest / f"{item_name(i)}-{Path(source).name}"
        shutil.copyfile(source, copy)
        copies.append(str(copy))
    submitted = request.model_copy(update={"files": copies, "output_uri": str(output)})
    return submitted, submitted.run_id(), [item_name(i) for i in range(len(copies))]
