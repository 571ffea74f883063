"""Cleanup: delete the run's scratch, and on failure what unfinished publishes left.

Published targets (``<run_id>/<target>/`` with its ``target.json``) are never deleted, on
any path: a run that fails keeps every target it published (``tasks/publish.py``
``remove_partial`` removes only target folders whose publish did not finish).

After a success everything under ``scratch/<run_id>/`` goes. On a failure path (the
workflow's ``CleanupOnFailure``, an ABORTED or TIMED_OUT execution through the EventBridge
rule, a stopped local run) the finished targets' step outputs stay: every
``<step>/<target>/`` folder whose ``<step>.done.json`` names this step (and run and
target, where it says) and lists outputs that are all there, with the recorded sizes. The
next attempt of the run (``foldstack retry``, or locally the same request again) finds
them and its steps skip those targets (a step re-checks every sha256 before it skips);
everything else (staged inputs, attempt directories, unfinished targets, batch plans,
cache records) is removed. A partial run (some targets failed within its failure budget)
keeps them too (``keep_finished``), so its retry recomputes only the failed targets. What is
kept goes with the run's next success, with a rerun, or in the cloud with the scratch
bucket's lifecycle expiry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from foldstack import storage
from foldstack.core.errors import FoldstackError
from foldstack.core.runid import RUN_ID_PATTERN
from foldstack.core.uris import join_under, parse_uri, require_under
from foldstack.tasks.publish import remove_partial
from foldstack.tasks.settings import TaskSettings
from foldstack.tasks.validate import parse_request

DONE_MAX_BYTES = 1 << 20  # a done record is a few KB
READERS = 16  # done records read at once


def finished_folders(run_root: str, run_id: str) -> list[str]:
    """``<step>/<target>`` of every finished target under the run's scratch `run_root`:
    a done record for that step (run and target, when it names them) whose outputs are all
    listed there with the recorded sizes. Checksums are the step's to verify on reuse."""
    base = parse_uri(run_root).key.rstrip("/") + "/"
    sizes = {parse_uri(info.uri).key[len(base):]: info.size for info in storage.list_prefix(run_root)}
    candidates = []
    for rel in sorted(sizes):
        parts = rel.split("/")
        if len(parts) == 3 and parts[2] == f"{parts[0]}.done.json" and not parts[1].startswith("."):
            candidates.append((parts[0], parts[1]))

    def finished(item: tuple[str, str]) -> bool:
        step, target = item
        try:
            done = json.loads(storage.read_bytes(join_under(run_root, step, target, f"{step}.done.json"),
                                                 max_bytes=DONE_MAX_BYTES))
        except (OSError, ValueError, FoldstackError):
            return False
        return _usable(done, step, target, run_id, sizes)

    with ThreadPoolExecutor(max_workers=READERS) as pool:  # one GET per done record on S3
        verdicts = list(pool.map(finished, candidates))
    return [f"{step}/{target}" for (step, target), ok in zip(candidates, verdicts, strict=True) if ok]


def _usable(done: Any, step: str, target: str, run_id: str, sizes: Mapping[str, int]) -> bool:
    if not isinstance(done, dict) or done.get("step") != step:
        return False
    if done.get("run_id", run_id) != run_id or done.get("target", target) != target:
        return False
    outputs, recorded = done.get("outputs"), done.get("output_sizes") or {}
    if not isinstance(outputs, dict) or not outputs or not isinstance(recorded, dict):
        return False
    for name in outputs:
        size = sizes.get(f"{step}/{target}/{name}")
        if size is None or (name in recorded and recorded[name] != size):
            return False
    return True


def cleanup(
    settings: TaskSettings, run_id: str, raw_request: Mapping[str, Any] | None, *, failed: bool,
    keep_finished: bool | None = None, stopped_at: float | None = None,
) -> dict[str, Any]:
    """Safe to run twice, and on a run whose request never validated.

    `keep_finished` (default: `failed`) keeps the finished targets' step outputs for the
    next attempt. `stopped_at` (seconds since the epoch; the EventBridge path): when the
    stopped execution ended. Scratch written at or after it belongs to a newer attempt
    (a retry started right after a cancel) and stays, and no published results are
    touched (that attempt may be publishing; its own publish clears leftovers)."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
        # Nothing can have been written for a malformed id; never build a path from it.
        return {"run_id": None, "scratch_deleted": 0, "partial_outputs_deleted": 0}
    # join_under, not safe_join: a run dir that is a symbolic link is removed as a link.
    run_root = join_under(settings.scratch_root, run_id)
    kept = finished_folders(run_root, run_id) if (failed if keep_finished is None else keep_finished) else []
    scratch_deleted = storage.delete_prefix_except(run_root, kept, modified_before=stopped_at)
    partial = 0
    if failed and raw_request is not None and stopped_at is None:
        try:
            request = parse_request(raw_request)
            require_under(request.output_uri, settings.allowed_output_prefixes, what="output_uri")
        except FoldstackError:
            request = None  # an invalid request published nothing
        if request is not None:
            partial = remove_partial(request.output_uri, run_id)
    return {"run_id": run_id, "scratch_deleted": scratch_deleted, "partial_outputs_deleted": partial,
            "kept_targets": len(kept)}
