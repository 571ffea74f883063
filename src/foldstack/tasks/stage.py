"""Stage Inputs: copy the validated inputs into the run's scratch prefix."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from foldstack import storage
from foldstack.core.errors import FoldstackError, StagingError
from foldstack.tasks.settings import TaskSettings
from foldstack.tasks.validate import validate_run


def run_scratch(settings: TaskSettings, run_id: str) -> str:
    return storage.safe_join(settings.scratch_root, run_id)


# st_mode as FSx for Lustre reads it from x-amz-meta-file-permissions: <type><mode>, octal.
FILE_MODE, DIR_MODE = "0100664", "0040775"
# Directories the jobs write into: they must belong to the (non-root) job user.
JOB_DIRS = ("", "input", "input/targets", "input/sources", "msa", "predict")


def posix_metadata(settings: TaskSettings, mode: str) -> dict[str, str] | None:
    """FSx POSIX metadata for staged S3 objects, or None (local scratch, or no owner set)."""
    if settings.scratch_owner is None or not settings.scratch_root.startswith("s3://"):
        return None
    uid, gid = settings.scratch_owner
    return {"file-owner": str(uid), "file-group": str(gid), "file-permissions": mode}


def _source_name(index: int, uri: str) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", uri.rstrip("/").rsplit("/", 1)[-1]).lstrip(".") or "input"
    return f"{index:03d}-{base[:100]}"


def stage_inputs(
    settings: TaskSettings, run_id: str, raw_request: Mapping[str, Any], targets: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Re-validate (inputs may have changed since Validate Input), then write one FASTA
    per target plus the request and target list. Re-running overwrites identically."""
    request, records, planned, _ = validate_run(
        raw_request, allowed_input_prefixes=settings.allowed_input_prefixes,
        allowed_output_prefixes=settings.allowed_output_prefixes, size_classes=settings.size_classes,
        limits=settings.limits, run_id=run_id,
    )
    expected = {t["id"]: t["sha256"] for t in targets}
    if expected != {t.id: t.sha256 for t in planned}:
        raise StagingError("inputs changed between validation and staging; submit the run again")
    root = run_scratch(settings, run_id)
    meta = posix_metadata(settings, FILE_MODE)
    try:
        dir_meta = posix_metadata(settings, DIR_MODE)
        if dir_meta is not None:
            for rel in JOB_DIRS:
                storage.make_directory(storage.safe_join(root, rel) if rel else root, metadata=dir_meta)
        for index, item in enumerate(request.inputs):
            if isinstance(item, str):
                dest = storage.safe_join(root, "input", "sources", _source_name(index, item))
                storage.copy(item, dest, metadata=meta)
        for record in records:
            storage.write_bytes(storage.safe_join(root, "input", "targets", f"{record.id}.fasta"),
                                record.to_fasta().encode(), metadata=meta)
        storage.write_bytes(storage.safe_join(root, "input", "targets.json"),
                            json.dumps([t.model_dump() for t in planned], indent=2).encode(), metadata=meta)
        storage.write_bytes(storage.safe_join(root, "input", "request.json"),
                            request.model_dump_json(indent=2).encode(), metadata=meta)
    except FoldstackError:
        raise
    except Exception as exc:  # S3 or filesystem failure: name where, keep the cause
        raise StagingError(f"could not stage inputs into {root}: {exc}") from exc
    return {"scratch": root, "staged": len(records)}
