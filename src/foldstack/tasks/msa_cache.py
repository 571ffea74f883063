"""The MSA cache: no alignment is computed twice (keys: :mod:`foldstack.cachekeys`).

Layout: ``<cache_root>/msa/<search>/<db_version>/<sha256>/`` holding ``msa.a3m``,
``features.npz``, ``features.json`` and, written last, ``cache.json`` (the completeness
marker: the sha256 of each file). An entry without ``cache.json`` does not exist.

The key
  * ``sha256``: the target's sequence checksum (Validate Input's; for a complex it covers
    every chain: this level caches whole targets, the msa step's chain cache the chains);
  * ``search``: the MSA tool and database preset (:func:`foldstack.cachekeys.search_label`,
    e.g. ``jackhmmer-reduced_dbs``);
  * ``db_version``: the versions in use of every database under the database root
    (``<db_root>/<name>/CURRENT``, read the way the msa step's ``databases`` module finds
    them), as ``name@version`` joined by ``+`` in name order (a short hash when long). The
    lookup knows this *before* any job runs. It is deliberately over-specific: refreshing
    any database invalidates the cache, never serves a stale alignment;
  * ``PARAMS_VERSION``: bumped when the msa step's result-changing parameters change.

Lookup (the ``msa_cache`` Lambda, before the CPU job): an entry is a hit only if its
files match ``cache.json`` *and* its ``features.npz`` is features Predict can use, checked
by the function Predict uses (:func:`foldstack.core.npz.check_features`: it loads without
pickle, has AlphaFold's required features, their shapes fit the target's length) and
``features.json`` is a JSON object. Anything else (a missing or unreadable marker, a
missing file, a checksum mismatch, features that do not load) is a miss whose ``reason``
says why (``damaged: features.npz does not load (...)``); the Msa job recomputes it and the
fill below replaces the entry. On a hit the cached files are
copied into ``scratch/<run_id>/msa/<target>/`` with a valid ``msa.done.json`` (so Predict
and Collect need no special case) and the workflow skips the Msa job. Either way the key
is recorded in ``scratch/<run_id>/cache/<target>.json`` for the fill. On a miss the
lookup hands the cache root to the Msa job (``cache_root``; empty when ``reuse_msa`` is
off), which keeps and reuses each chain's searches (:mod:`foldstack.steps.chain_cache`):
a complex whose chains were all searched before costs a featurisation, not a search.

Fill (Collect Outputs, after the run's results are published): for each miss, copy the
msa step's outputs to the key, ``cache.json`` last. Only if every database the step
recorded in ``features.json`` still has the version the lookup resolved (a database
refreshed mid-run makes a miss, never a wrong entry), and only features that pass the
same check. An entry that is valid (another run filled it meanwhile) is left untouched; a
damaged or marker-less one is replaced: its ``cache.json`` is deleted first, so while the
files are rewritten the entry does not exist, and the new marker records what it
repaired. Fill failures never fail a run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from foldstack import storage
from foldstack.cachekeys import (
    CACHED_FILES,
    MARKER,
    cache_key,
    db_version_label,
    resolve_db_versions,
    search_label,
)
from foldstack.core.clock import utcnow
from foldstack.core.hashing import sha256_bytes
from foldstack.core.npz import FeaturesFileError, check_features
from foldstack.tasks.settings import TaskSettings

log = logging.getLogger("foldstack.task")
_MAX_MARKER_BYTES = 1 << 20
NOT_CACHED = "not cached"


def _record_uri(settings: TaskSettings, run_id: str, target: str) -> str:
    return storage.safe_join(settings.scratch_root, run_id, "cache", f"{target}.json")


def _posix(settings: TaskSettings) -> dict[str, str] | None:
    from foldstack.tasks.stage import FILE_MODE, posix_metadata

    return posix_metadata(settings, FILE_MODE)


def _read_marker(key: str) -> tuple[dict[str, Any] | None, str]:
    """(the entry's cache.json, "") or (None, why there is no usable one)."""
    uri = storage.safe_join(key, MARKER)
    if not storage.exists(uri):
        return None, NOT_CACHED
    try:
        marker = json.loads(storage.read_bytes(uri, max_bytes=_MAX_MARKER_BYTES))
    except ValueError:
        return None, f"damaged: {MARKER} is not JSON"
    files = marker.get("files") if isinstance(marker, dict) else None
    if not isinstance(files, dict) or set(files) != set(CACHED_FILES):
        return None, f"damaged: {MARKER} does not list {', '.join(CACHED_FILES)}"
    return marker, ""


def _verify(key: str, marker: Mapping[str, Any], length: int | None) -> tuple[dict[str, bytes] | None, str]:
    """({name: bytes}, "") if the entry is usable, else (None, "damaged: <why>"): every file
    present and matching cache.json, features.npz features Predict can use for `length`
    residues, features.json a JSON object."""
    blobs: dict[str, bytes] = {}
    for name in CACHED_FILES:
        uri = storage.safe_join(key, name)
        if not storage.exists(uri):
            return None, f"damaged: {name} is missing"
        data = storage.read_bytes(uri)
        if sha256_bytes(data) != marker["files"][name]:
            return None, f"damaged: {name} does not match {MARKER}"
        blobs[name] = data
    try:
        check_features(blobs["features.npz"], length, keep=False)
    except FeaturesFileError as exc:
        return None, f"damaged: features.npz {exc}"
    try:
        if not isinstance(json.loads(blobs["features.json"]), dict):
            return None, "damaged: features.json is not a JSON object"
    except ValueError:
        return None, "damaged: features.json is not JSON"
    return blobs, ""


def _length(target: Mapping[str, Any]) -> int | None:
    value = target.get("length")
    return int(value) if value is not None else None


def lookup(settings: TaskSettings, run_id: str, request: Mapping[str, Any],
           target: Mapping[str, Any]) -> dict[str, Any]:
    """Look the target's MSA up; on a hit, materialise it as the msa step's output."""
    tid, sha = str(target["id"]), str(target["sha256"])
    tool = search_label(request.get("msa_tool"), request.get("db_preset"))  # tool and database preset
    if not request.get("reuse_msa", True):
        return {"hit": False, "reason": "reuse_msa is false", "cache_root": ""}
    if not settings.cache_root or not settings.db_root:
        return {"hit": False, "reason": "no cache or database root configured", "cache_root": ""}
    versions = resolve_db_versions(settings.db_root, request.get("db_versions"))
    if not versions:
        return {"hit": False, "reason": f"no database versions under {settings.db_root}", "cache_root": ""}
    db_version = db_version_label(versions)
    key = cache_key(settings.cache_root, tool, db_version, sha)
    length = _length(target)
    record = {"target": tid, "sha256": sha, "length": length, "msa_tool": tool, "db_version": db_version,
              "databases": versions, "key": key, "hit": False}
    marker, reason = _read_marker(key)
    if marker is not None:
        blobs, reason = _verify(key, marker, length)
        if blobs is not None:
            _materialise(settings, run_id, tid, key, marker, blobs)
            record["hit"], reason = True, "cached"
    record["reason"] = reason
    storage.write_bytes(_record_uri(settings, run_id, tid), json.dumps(record, indent=2).encode())
    line = {"task": "msa_cache", "run_id": run_id, "target": tid, "hit": record["hit"], "key": key, "reason": reason}
    (log.warning if reason.startswith("damaged") else log.info)(json.dumps(line))
    # cache_root goes to the Msa job on a miss: it reuses the chains it finds there
    return {"hit": record["hit"], "reason": reason, "db_version": db_version, "cache_root": settings.cache_root}


def _materialise(settings: TaskSettings, run_id: str, tid: str, key: str, marker: dict[str, Any],
                 blobs: dict[str, bytes]) -> None:
    """Copy a verified cache entry (:func:`_verify`) to scratch/<run_id>/msa/<tid>/ with
    msa.done.json last."""
    final = storage.safe_join(settings.scratch_root, run_id, "msa", tid)
    meta = _posix(settings)
    for name, data in blobs.items():
        storage.write_bytes(storage.safe_join(final, name), data, metadata=meta)
    now = utcnow()
    done = {
        "step": "msa", "run_id": run_id, "target": tid,
        "outputs": dict(marker["files"]),
        "inputs": {}, "tool_versions": marker.get("tool_versions") or {},
        "timings": {"total": 0.0, **({"cached_from": marker["timings"]} if marker.get("timings") else {})},
        "started_at": now, "finished_at": now,
        "cache": {"hit": True, "key": key, "created_at": marker.get("created_at")},
    }
    # written last: its presence (with matching checksums) is what marks the step done
    storage.write_bytes(storage.safe_join(final, "msa.done.json"),
                        (json.dumps(done, indent=2, sort_keys=True) + "\n").encode(), metadata=meta)


def _used_versions(features_json: bytes) -> dict[str, str] | None:
    try:
        data = json.loads(features_json)
    except ValueError:
        return None
    dbs = data.get("databases") if isinstance(data, dict) else None
    if not isinstance(dbs, list):
        return None
    used = {}
    for db in dbs:
        if isinstance(db, dict) and db.get("name") and db.get("version"):
            used[str(db["name"])] = str(db["version"])
    return used


def fill(settings: TaskSettings, run_id: str, targets: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Store each missed target's MSA under its key (atomic: files, then cache.json).
    Returns counts; never raises for one target's failure."""
    counts = {"stored": 0, "skipped": 0, "failed": 0}
    if not settings.cache_root:
        return counts
    for target in targets:
        tid = str(target["id"])
        try:
            counts[_fill_one(settings, run_id, tid, _length(target))] += 1
        except Exception as exc:  # noqa: BLE001 - the cache is an optimisation
            counts["failed"] += 1
            log.warning(json.dumps({"task": "msa_cache_fill", "run_id": run_id, "target": tid,
                                    "error": f"{type(exc).__name__}: {exc}"}))
    return counts


def _fill_one(settings: TaskSettings, run_id: str, tid: str, length: int | None = None) -> str:
    rec_uri = _record_uri(settings, run_id, tid)
    if not storage.exists(rec_uri):
        return "skipped"  # reuse_msa off, or no cache configured at lookup time
    record = json.loads(storage.read_bytes(rec_uri, max_bytes=1 << 20))
    if record.get("hit"):
        return "skipped"
    if record.get("length") is not None:
        length = int(record["length"])
    key = cache_key(settings.cache_root or "", record["msa_tool"], record["db_version"], record["sha256"])
    old_marker, why = _read_marker(key)
    if old_marker is not None:
        kept, why = _verify(key, old_marker, length)
        if kept is not None:
            return "skipped"  # a valid entry (another run filled it meanwhile): untouched
    # absent, marker-less, or damaged (why): (re)written below
    src = storage.safe_join(settings.scratch_root, run_id, "msa", tid)
    done = json.loads(storage.read_bytes(storage.safe_join(src, "msa.done.json")))
    blobs = {}
    for name in CACHED_FILES:
        data = storage.read_bytes(storage.safe_join(src, name))
        if sha256_bytes(data) != done["outputs"].get(name):
            raise ValueError(f"msa/{tid}/{name} does not match msa.done.json")
        blobs[name] = data
    used = _used_versions(blobs["features.json"])
    resolved = record.get("databases") or {}
    if used is None or any(resolved.get(n) != v for n, v in used.items()):
        log.info(json.dumps({"task": "msa_cache_fill", "run_id": run_id, "target": tid,
                             "skipped": "database versions changed since the lookup", "used": used}))
        return "skipped"
    try:  # never store what the lookup would refuse
        check_features(blobs["features.npz"], length, keep=False)
    except FeaturesFileError as exc:
        log.warning(json.dumps({"task": "msa_cache_fill", "run_id": run_id, "target": tid,
                                "skipped": f"features.npz {exc}"}))
        return "skipped"
    marker_uri = storage.safe_join(key, MARKER)
    if storage.exists(marker_uri):
        storage.delete(marker_uri)  # a damaged entry: it does not exist while its files are rewritten
    for name, data in blobs.items():
        storage.write_bytes(storage.safe_join(key, name), data)
    marker = {
        "schema_version": 1, "key": key, "sha256": record["sha256"], "msa_tool": record["msa_tool"],
        "db_version": record["db_version"], "databases": resolved,
        "files": {n: done["outputs"][n] for n in CACHED_FILES},
        "tool_versions": done.get("tool_versions") or {}, "timings": done.get("timings") or {},
        "source_run": run_id, "created_at": utcnow(),
        **({"repaired": why} if why != NOT_CACHED else {}),
    }
    storage.write_bytes(storage.safe_join(key, MARKER), json.dumps(marker, indent=2, sort_keys=True).encode(),
                        content_type="application/json")
    return "stored"
