"""Plan Batches: pack the validated targets into GPU jobs and pick the fan-out mode.

* **Batching**: targets of one size class, sorted by length (shortest
  first), are packed into batches of at most ``max_per_job`` targets; one batch = one
  Predict job, so the model is loaded (and for AlphaFold2 compiled) once per batch. A
  batch travels as ``{"batch", "size_class", "target_ids": "a,b,c", "targets": [...]}``:
  ``target_ids`` is the Predict job's ``target`` parameter (ids never contain ``,``);
  ``targets`` (id, sha256, length, chains) feeds the per-target MSA cache lookup.
* **Fan-out** (item 8): up to ``bulk_threshold`` targets the batches go back in the
  state for an inline Map; above it they are written to
  ``scratch/<run_id>/plan/batches.json`` and only a pointer (``bucket``/``key``, what a
  Distributed Map's ItemReader takes) goes back, keeping the state payload small.

The knobs come from the ASL payload (knobs.yaml, rendered), not from the environment.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from foldstack import storage
from foldstack.core.errors import InputValidationError
from foldstack.core.uris import parse_uri
from foldstack.tasks.settings import TaskSettings

MANIFEST_PARTS = ("plan", "batches.json")


def plan_batches(
    targets: Sequence[Mapping[str, Any]], size_classes: Sequence[str], max_per_job: int
) -> list[dict[str, Any]]:
    """Deterministic: same targets and knobs, same batches (class order, then length, id)."""
    if max_per_job < 1:
        raise InputValidationError("max targets per predict job must be >= 1", code="invalid_plan")
    order = {name: i for i, name in enumerate(size_classes)}
    unknown = sorted({str(t["size_class"]) for t in targets} - set(order))
    if unknown:
        raise InputValidationError(f"targets have size classes this workflow lacks: {unknown}",
                                   code="invalid_plan")
    batches: list[dict[str, Any]] = []
    for size_class in size_classes:
        members = sorted((t for t in targets if t["size_class"] == size_class),
                         key=lambda t: (int(t["length"]), str(t["id"])))
        for start in range(0, len(members), max_per_job):
            chunk = members[start:start + max_per_job]
            batches.append({
                "batch": f"b{len(batches):05d}",
                "size_class": size_class,
                "target_ids": ",".join(str(t["id"]) for t in chunk),
                "targets": [{"id": str(t["id"]), "sha256": str(t["sha256"]), "length": int(t["length"]),
                             "chains": int(t.get("chains", 1))} for t in chunk],
            })
    return batches


def manifest_location(scratch_root: str, run_id: str) -> dict[str, str]:
    """ItemReader Bucket/Key of the run's batch manifest. Locally the bucket is the scratch
    directory itself (the local engine reads an absolute-path Bucket as a directory)."""
    uri = storage.safe_join(scratch_root, run_id, *MANIFEST_PARTS)
    u = parse_uri(uri)
    if u.is_s3:
        return {"bucket": u.bucket, "key": u.key, "uri": uri}
    root = parse_uri(scratch_root).key.rstrip("/")
    return {"bucket": root, "key": "/".join((run_id, *MANIFEST_PARTS)), "uri": uri}


def plan_run(
    settings: TaskSettings, run_id: str, targets: Sequence[Mapping[str, Any]], *,
    max_per_job: int, bulk_threshold: int,
) -> dict[str, Any]:
    batches = plan_batches(targets, list(settings.size_classes), max_per_job)
    out: dict[str, Any] = {"n_targets": len(targets), "n_batches": len(batches)}
    if len(targets) <= bulk_threshold:
        return {**out, "mode": "inline", "batches": batches, "manifest": None}
    where = manifest_location(settings.scratch_root, run_id)
    from foldstack.tasks.stage import FILE_MODE, posix_metadata

    storage.write_bytes(where["uri"], json.dumps(batches).encode(), content_type="application/json",
                        metadata=posix_metadata(settings, FILE_MODE))
    return {**out, "mode": "distributed", "batches": [], "manifest": {"bucket": where["bucket"],
                                                                      "key": where["key"]}}
