"""Requests of the registered workloads other than fold (``statemachines/workloads.yaml``,
``submitted_by: client``): built from the workload's own request model, checked offline,
their local input files mapped to upload URIs, and the run id the execution is named by.

Fold keeps its own path (``Client.request`` / ``CloudBackend.prepare``: FASTA checks, size
classes, targets). Everything here is generic over the request model:

* **Input files.** The fields a model names in ``upload_fields`` (a class attribute: a tuple
  of field names) hold input locations: a string or a list of strings, each an ``s3://`` URI
  or a local file or folder (``file://`` or a path; relative paths are relative to the
  request file's folder). A model that names none: every top-level string (or list of
  strings) that names an existing local file or folder, ``output_uri`` apart. A local file
  is uploaded to ``<input_prefix>/<sha256[:16]>/<name>`` (content addressed, as fold's
  FASTA files), a folder's files to ``<input_prefix>/<digest of the listing>/<name>`` and
  the field then names that folder's URI. ``s3://`` inputs must lie under an allowed input
  prefix, the output under an allowed output prefix (what Validate Input checks again).
* **Checks.** The model is validated twice: on the local paths (so a model that reads
  headers of local files checks them before anything is uploaded) and on the upload URIs
  (the request the execution carries).
* **Run id.** The execution is named by it and Validate Input recomputes it, so the client
  asks the workload: its task module's ``plan_run(request, size_classes=None,
  allowed_input_prefixes=(), allowed_output_prefixes=..., base=...)`` (cryoem's: the whole
  offline check, movie headers included, on the request with its local paths, whose run id
  depends on the inputs' names, kept by the upload) returns a plan with ``run_id``; else the
  model's own ``run_id()``; else ``<workflow>-<sha256 of the canonical request>[:16]``. The
  same request with the same files gives the same id, so submitting twice finds the run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from foldstack.core.errors import InputValidationError
from foldstack.core.runid import RUN_ID_MAX_WITH_ATTEMPTS, RUN_ID_PATTERN
from foldstack.core.uris import join_under, require_under

REQUEST_FILE = "request.json"  # what a dataset folder holds (`foldstack cryoem demo-data` writes it)
_CHUNK = 1 << 20
MAX_UPLOAD = 5 * 1024**3  # one S3 PutObject; larger inputs are uploaded beforehand and named by s3:// URI


@dataclass
class WorkloadRequest:
    """A checked request of one workload, its local files and where they go."""

    workflow: str
    request: BaseModel  # with every local input replaced by its upload URI
    run_id: str
    files: dict[str, Path] = field(default_factory=dict)  # upload URI -> local file

    @property
    def output_uri(self) -> str | None:
        value = getattr(self.request, "output_uri", None)
        return str(value) if value else None


def request_class(workflow: str) -> type[BaseModel]:
    """The registered request model of `workflow`; one-line errors for an unknown
    workflow or one users do not submit."""
    from foldstack.workflows.registry import client_workflows, get_workload

    workload = get_workload(workflow)
    if workload.submitted_by != "client":
        raise InputValidationError(
            f"workflow {workflow!r} is not submitted by users; client workflows: {', '.join(client_workflows())}",
            code="invalid_request")
    return workload.request_class()


def read_request_file(path: str | Path) -> tuple[dict[str, Any], Path]:
    """(request fields, the folder relative paths are relative to) from a request JSON file
    or a dataset folder holding ``request.json``."""
    source = Path(path).expanduser()
    if source.is_dir():
        source = source / REQUEST_FILE
    if not source.is_file():
        raise InputValidationError(f"request not found: {source} (a dataset folder holds {REQUEST_FILE})",
                                   code="missing_input", source=str(source))
    try:
        data = json.loads(source.read_text())
    except (OSError, ValueError) as exc:
        raise InputValidationError(f"not valid JSON: {exc}", code="invalid_request", source=str(source)) from None
    if not isinstance(data, dict):
        raise InputValidationError("expected a JSON object", code="invalid_request", source=str(source))
    return data, source.parent.resolve()


def upload_fields(model: type[BaseModel], data: Mapping[str, Any], base: Path) -> tuple[str, ...]:
    """The fields that hold input locations (see the module docstring)."""
    declared = getattr(model, "upload_fields", None)
    if declared is not None:
        return tuple(declared)
    found = []
    for name, value in data.items():
        if name == "output_uri" or name not in model.model_fields:
            continue
        values = value if isinstance(value, list) else [value]
        if values and all(isinstance(v, str) for v in values) and \
                any(not v.startswith("s3://") and _local(v, base).exists() for v in values):
            found.append(name)
    return tuple(found)


def _local(value: str, base: Path) -> Path:
    path = Path(value.removeprefix("file://")).expanduser()
    return path if path.is_absolute() else base / path


def _validate(model: type[BaseModel], data: Mapping[str, Any], workflow: str) -> BaseModel:
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "request"
        message = str(first.get("msg", exc)).removeprefix("Value error, ")
        raise InputValidationError(f"{workflow} request field {where}: {message}", code="invalid_request") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _safe_name(name: str) -> str:
    return ("".join(c if c.isalnum() or c in "._-" else "_" for c in name).lstrip(".") or "input")[:120]


def _check_size(path: Path, where: str) -> None:
    if path.stat().st_size > MAX_UPLOAD:
        raise InputValidationError(f"{path.name} is {path.stat().st_size} bytes; the client uploads at most "
                                   f"{MAX_UPLOAD}", code="too_large", source=where,
                                   hint="copy it to S3 under an allowed input prefix and give its s3:// URI")


def _map_local(value: str, base: Path, input_prefix: str, files: dict[str, Path], where: str) -> str:
    """The upload URI of one local file or folder (its files added to `files`)."""
    path = _local(value, base)
    for member in [path] if path.is_file() else sorted(path.iterdir()) if path.is_dir() else []:
        if member.is_file():
            _check_size(member, where)
    if path.is_file():
        uri = join_under(input_prefix, _sha256(path)[:16], _safe_name(path.name))
        files[uri] = path
        return uri
    if path.is_dir():
        members = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not members:
            raise InputValidationError(f"folder {str(path)!r} holds no files", code="missing_input", source=where)
        sums = [(_safe_name(p.name), _sha256(p), p) for p in members]
        folder = join_under(input_prefix, hashlib.sha256(
            "".join(f"{n}\0{s}\n" for n, s, _ in sums).encode()).hexdigest()[:16])
        for name, _sum, member in sums:
            files[join_under(folder, name)] = member
        return folder
    raise InputValidationError(f"input {str(path)!r} does not exist", code="missing_input", source=where)


def _inputs(value: Any) -> Iterable[str]:
    return [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)]


def _planned_run_id(workflow: str, local: Mapping[str, Any], base: Path,
                    output_prefixes: tuple[str, ...]) -> str | None:
    """The run id the workload's own planning gives (its offline checks run too), or None
    when its task module has no ``plan_run``."""
    from foldstack.workflows.registry import get_workload

    try:
        module = get_workload(workflow).tasks_module()
    except ImportError as exc:
        raise InputValidationError(f"submitting {workflow} needs its package ({exc.name} is not installed)",
                                   code="invalid_request", hint=f"pip install 'foldstack[{workflow}]'") from None
    plan_run = getattr(module, "plan_run", None)
    if plan_run is None:
        return None
    plan = plan_run(dict(local), size_classes=None, allowed_input_prefixes=(),
                    allowed_output_prefixes=output_prefixes, base=base)
    return str(plan.run_id)


def run_id_for(workflow: str, request: BaseModel) -> str:
    """The model's ``run_id()`` if it has one, else ``<workflow>-<16 hex digits>``."""
    own = getattr(request, "run_id", None)
    run_id = own() if callable(own) else None
    if run_id is None:
        canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        run_id = f"{workflow.replace('_', '-')[:40]}-{hashlib.sha256(canonical.encode()).hexdigest()[:16]}"
    if not RUN_ID_PATTERN.fullmatch(run_id) or len(run_id) > RUN_ID_MAX_WITH_ATTEMPTS:
        raise InputValidationError(f"{workflow} request: run id {run_id!r} is not 1-{RUN_ID_MAX_WITH_ATTEMPTS} "
                                   "of [A-Za-z0-9_-]", code="invalid_request")
    return run_id


def prepare(
    workflow: str,
    request: BaseModel | Mapping[str, Any] | str | Path | None = None,
    *,
    fields: Mapping[str, Any] | None = None,
    base: Path | None = None,
    input_prefix: str,
    allowed_input_prefixes: tuple[str, ...],
    output_prefixes: tuple[str, ...],
    default_output: str,
) -> WorkloadRequest:
    """Build, check and map one request of `workflow` (nothing is read from or written to
    the cloud). `request`: the model, its fields, or a request JSON file / dataset folder;
    `fields` override or complete it."""
    model = request_class(workflow)
    if isinstance(request, str | Path):
        data, base = read_request_file(request)
    elif isinstance(request, BaseModel):
        data = request.model_dump(mode="json", exclude_unset=True)
    else:
        data = dict(request or {})
    data.update({k: v for k, v in (fields or {}).items() if v is not None})
    base = (base or Path.cwd()).resolve()
    if "output_uri" in model.model_fields and not data.get("output_uri"):
        data["output_uri"] = default_output
    names = upload_fields(model, data, base)
    # relative local paths resolved against the request's folder, so the model checks the right files
    local = dict(data)
    for name in names:
        value = data.get(name)
        resolved = [v if v.startswith("s3://") else str(_local(v, base)) for v in _inputs(value)]
        if value is not None:
            local[name] = resolved if isinstance(value, list) else resolved[0]
    _validate(model, local, workflow)
    planned = _planned_run_id(workflow, local, base, output_prefixes)

    files: dict[str, Path] = {}
    mapped = dict(data)
    for name in names:
        value = data.get(name)
        if value is None:
            continue
        uris = []
        for item in _inputs(value):
            if item.startswith("s3://"):
                uris.append(require_under(item, allowed_input_prefixes, what=f"{workflow} input {name}"))
            else:
                uris.append(_map_local(item, base, input_prefix, files, f"{workflow} request field {name}"))
        mapped[name] = uris if isinstance(value, list) else uris[0]
    if mapped.get("output_uri"):
        require_under(str(mapped["output_uri"]), output_prefixes, what="output")
    checked = _validate(model, mapped, workflow)
    return WorkloadRequest(workflow, checked, planned or run_id_for(workflow, checked), files)


def execution_input(prepared: WorkloadRequest) -> str:
    """The execution's input: the run id, the request and the workflow that runs it."""
    body = {"run_id": prepared.run_id, "request": prepared.request.model_dump(mode="json"),
            "workflow": prepared.workflow}
    return json.dumps(body, sort_keys=True, separators=(",", ":"))
