"""Stage Inputs: copy the validated inputs into the run's scratch prefix.

``input/targets.json`` (the normalised target list) is the source of truth for later
tasks: above ``state_targets_max`` targets the workflow state carries only the count and
the list's digest (``targets_digest``), and Plan Batches / Collect Outputs read the list
from scratch (`resolve_targets`), checking it against that digest.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from foldstack import storage
from foldstack.core.clock import utcnow
from foldstack.core.errors import FoldstackError, InputValidationError, StagingError
from foldstack.core.run_layout import (
    REQUEST_NAME,
    STAGE_DIR,
    STAGE_DONE_PARTS,
    TARGETS_NAME,
    TARGETS_PARTS,
    staged_fasta_name,
)
from foldstack.core.targets import targets_digest
from foldstack.tasks.settings import TaskSettings
from foldstack.tasks.validate import validate_run


def run_scratch(settings: TaskSettings, run_id: str) -> str:
    return storage.safe_join(settings.scratch_root, run_id)


# st_mode as FSx for Lustre reads it from x-amz-meta-file-permissions: <type><mode>, octal.
FILE_MODE, DIR_MODE = "0100664", "0040775"
# Directories the jobs write into: they must belong to the (non-root) job user.
JOB_DIRS = ("", STAGE_DIR, f"{STAGE_DIR}/targets", f"{STAGE_DIR}/sources", "msa", "predict")
# TARGETS_PARTS and STAGE_DONE_PARTS (the done record the jobs await) come from core.run_layout,
# which steps.readiness reads too: tasks may not import steps.
# Concurrent PUTs of one invocation: within botocore's default connection pool (10).
STAGE_WORKERS = 10
# targets.json of the largest run (10,000 records x ~150 bytes, indented) is ~2 MB.
TARGETS_MAX_BYTES = 64 << 20


def posix_metadata(settings: TaskSettings, mode: str) -> dict[str, str] | None:
    """FSx POSIX metadata for staged S3 objects, or None (local scratch, or no owner set)."""
    if settings.scratch_owner is None or not settings.scratch_root.startswith("s3://"):
        return None
    uid, gid = settings.scratch_owner
    return {"file-owner": str(uid), "file-group": str(gid), "file-permissions": mode}


def make_job_dirs(settings: TaskSettings, root: str, dirs: tuple[str, ...]) -> None:
    """The run's scratch directories the jobs write into (`dirs`, relative to `root`;
    "" is `root`), owned by the step images' user where scratch is FSx-linked S3
    (`posix_metadata`); nothing to do on plain storage."""
    dir_meta = posix_metadata(settings, DIR_MODE)
    if dir_meta is not None:
        for rel in dirs:
            storage.make_directory(storage.safe_join(root, rel) if rel else root, metadata=dir_meta)

def _source_name(index: int, uri: str) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", uri.rstrip("/").rsplit("/", 1)[-1]).lstrip(".") or "input"
    return f"{index:03d}-{base[:100]}"


def load_staged_targets(settings: TaskSettings, run_id: str, digest: str) -> list[dict[str, Any]]:
    """The target list Stage Inputs wrote, verified against Validate Input's digest."""
    uri = storage.safe_join(run_scratch(settings, run_id), *TARGETS_PARTS)
    if not storage.exists(uri):
        raise StagingError(f"the staged target list {uri} does not exist (was the run staged?)",
                           code="staged_targets_missing")
    try:
        targets = json.loads(storage.read_bytes(uri, max_bytes=TARGETS_MAX_BYTES))
    except ValueError as exc:
        raise StagingError(f"the staged target list {uri} is not valid JSON: {exc}",
                           code="staged_targets_mismatch") from None
    if not isinstance(targets, list) or not all(isinstance(t, dict) for t in targets):
        raise StagingError(f"the staged target list {uri} is not a list of targets", code="staged_targets_mismatch")
    if targets_digest(targets) != digest:
        raise StagingError(f"the staged target list {uri} does not match the validated one (digest "
                           f"{digest[:12]}...); submit the run again", code="staged_targets_mismatch")
    return targets


def resolve_targets(
    settings: TaskSettings, run_id: str, targets: Any, digest: Any
) -> list[dict[str, Any]]:
    """The targets a task works on: ``targets`` when the state carries them (small runs),
    else the staged ``input/targets.json`` checked against ``digest``."""
    if targets is not None:
        if not isinstance(targets, list):
            raise InputValidationError("targets must be a list", code="malformed_event")
        return targets
    if not isinstance(digest, str) or not digest:
        raise InputValidationError("event has neither targets nor targets_digest", code="malformed_event")
    return load_staged_targets(settings, run_id, digest)


def stage_record(run_id: str, files: Mapping[str, bytes]) -> bytes:
    """Stage Inputs' done record: each staged file's sha256 and size (names relative to
    ``input/``), in the step contract's shape, which ``steps.common.await_inputs`` checks."""
    record = {"step": "stage", "run_id": run_id, "target": "input",
              "outputs": {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()},
              "output_sizes": {rel: len(data) for rel, data in files.items()}, "finished_at": utcnow()}
    return json.dumps(record, indent=1, sort_keys=True).encode()


def stage_inputs(
    settings: TaskSettings, run_id: str, raw_request: Mapping[str, Any],
    targets: Sequence[Mapping[str, Any]] | None, *, digest: str | None = None,
) -> dict[str, Any]:
    """Re-validate (inputs may have changed since Validate Input), then write one FASTA
    per target plus the request and target list, and last their done record
    (:func:`stage_record`). Re-running overwrites identically.
    Validate Input's result arrives as the target list or, for large runs, its digest."""
    request, records, planned, _ = validate_run(
        raw_request, allowed_input_prefixes=settings.allowed_input_prefixes,
        allowed_output_prefixes=settings.allowed_output_prefixes, size_classes=settings.size_classes,
        limits=settings.limits, run_id=run_id,
    )
    if targets is None:
        if not digest:
            raise InputValidationError("event has neither targets nor targets_digest", code="malformed_event")
        changed = targets_digest(planned) != digest
    else:
        changed = {t["id"]: t["sha256"] for t in targets} != {t.id: t.sha256 for t in planned}
    if changed:
        raise StagingError("inputs changed between validation and staging; submit the run again")
    root = run_scratch(settings, run_id)
    meta = posix_metadata(settings, FILE_MODE)
    # what the jobs read, relative to input/ (the done record's names)
    files: dict[str, bytes] = {
        TARGETS_NAME: json.dumps([t.model_dump() for t in planned], indent=2).encode(),
        REQUEST_NAME: request.model_dump_json(indent=2).encode(),
    }
    files.update({staged_fasta_name(record.id): record.to_fasta().encode() for record in records})

    def put(rel: str) -> None:
        storage.write_bytes(storage.safe_join(root, STAGE_DIR, *rel.split("/")), files[rel], metadata=meta)

    try:
        make_job_dirs(settings, root, JOB_DIRS)
        for index, item in enumerate(request.inputs):
            if isinstance(item, str):
                dest = storage.safe_join(root, STAGE_DIR, "sources", _source_name(index, item))
                storage.copy(item, dest, metadata=meta)
        put(TARGETS_NAME)  # one first: the storage client is then built before the pool shares it
        with ThreadPoolExecutor(max_workers=STAGE_WORKERS) as pool:
            list(pool.map(put, [rel for rel in files if rel != TARGETS_NAME]))
        storage.write_bytes(storage.safe_join(root, *STAGE_DONE_PARTS), stage_record(run_id, files), metadata=meta)
    except FoldstackError:
        raise
    except Exception as exc:  # S3 or filesystem failure: name where, keep the cause
        raise StagingError(f"could not stage inputs into {root}: {exc}") from exc
    cache = settings.cache_root if (request.needs_msa and request.reuse_msa and settings.cache_root) else ""
    return {"scratch": root, "staged": len(records), "msa_cache_root": cache or ""}
