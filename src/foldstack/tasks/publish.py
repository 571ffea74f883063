"""Publishing a run's results under ``<output_uri>/<run_id>/``: each target atomically as
its batch finishes, and the run's manifest last.

A target is one publish (:func:`foldstack.storage.publish`, whose docstring says what a
reader can observe locally and on S3) of ``<run_id>/<target>/`` with ``target.json`` (its
:class:`~foldstack.core.manifest.TargetResult`) as the completeness marker: locally the files
go to a hidden sibling ``.<target>.partial-<hex>`` renamed into place after the marker is
written; on S3 the objects go under the final prefix and the marker last, and a failed
publish deletes what it wrote. Run-level files (``summary.tsv``, ``failures.tsv``,
``index.html``, ``structures/<target>.cif``, the viewer script) are single atomic writes, and
``manifest.json`` — written last — marks the run complete. A published target is never
replaced or deleted here, whatever happens to its run afterwards.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from foldstack import storage
from foldstack.core.hashing import sha256_bytes
from foldstack.core.manifest import MANIFEST
from foldstack.core.uris import join_under, parse_uri
from foldstack.storage.publishing import PARTIAL, STALE
from foldstack.storage.publishing import partial_prefix as _partial_prefix


def partial_prefix(run_id: str) -> str:
    """The name prefix of a run's local staging directories, ``.<run_id>.partial-``."""
    return _partial_prefix(run_id)


TARGET_MARKER = "target.json"
# Entries of a run's folder that are not targets (run-level files and folders).
RUN_LEVEL = ("assets", "structures")


class Publisher:
    """One publish: a target's folder (`target` given; marker ``target.json``) or, for
    callers that publish a whole run at once, the run's folder (marker ``manifest.json``)."""

    def __init__(self, output_uri: str, run_id: str, target: str | None = None) -> None:
        self.final = join_under(output_uri, run_id) if target is None else join_under(output_uri, run_id, target)
        self.marker = MANIFEST if target is None else TARGET_MARKER
        self._pub = storage.Publication(self.final, marker=self.marker)

    def put(self, relpath: str, data: bytes) -> None:
        self._pub.put(relpath, data)

    def commit(self, record: dict[str, Any]) -> dict[str, Any]:
        """Write the marker (the manifest, or the target's result) last and make it all
        visible; returns the marker's ``{"sha256", "size"}``."""
        body = json.dumps(record, indent=2, sort_keys=True).encode()
        self._pub.put(self.marker, body, content_type="application/json")
        self._pub.commit()
        return {"sha256": sha256_bytes(body), "size": len(body)}

    def abort(self) -> None:
        self._pub.abort()


def is_complete(output_uri: str, run_id: str) -> bool:
    return storage.is_published(join_under(output_uri, run_id), marker=MANIFEST)


def published_target(output_uri: str, run_id: str, target: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """A published target's ``target.json`` (its TargetResult) and that file's
    ``{"sha256", "size"}``, or None if the target is not published."""
    uri = join_under(output_uri, run_id, target, TARGET_MARKER)
    if not storage.exists(uri):
        return None
    data = storage.read_bytes(uri)
    try:
        record = json.loads(data)
    except ValueError:
        return None
    return (record, {"sha256": sha256_bytes(data), "size": len(data)}) if isinstance(record, dict) else None


def put_run_file(output_uri: str, run_id: str, relpath: str, data: bytes) -> None:
    """One run-level file, written atomically (readers see the old one or the new one)."""
    storage.write_bytes(join_under(output_uri, run_id, relpath), data)


def remove_temp_files(output_uri: str, run_id: str) -> int:
    """Locally: hidden ``.<name>.*.tmp`` files an interrupted run-level write left in the
    run's folder, ``assets/`` or ``structures/`` (``storage.write_bytes`` writes a temp file
    beside its target and renames it; on S3 a write is one PutObject and leaves none)."""
    u = parse_uri(join_under(output_uri, run_id))
    if u.is_s3:
        return 0
    root = Path(u.key)
    removed = 0
    for folder in (root, *(root / d for d in RUN_LEVEL)):
        if folder.is_dir() and not folder.is_symlink():
            for tmp in folder.glob(".*.tmp"):
                if tmp.is_file() and not tmp.is_symlink():
                    tmp.unlink(missing_ok=True)
                    removed += 1
    return removed


def remove_partial(output_uri: str, run_id: str) -> int:
    """Delete what unfinished publishes of the run left: a target folder without its
    ``target.json``, a best model in ``structures/`` whose target never published, and
    (locally) hidden ``.partial-``/``.stale-`` staging folders. Never a published target,
    never a complete run's files. Returns the number of files/objects removed."""
    root = join_under(output_uri, run_id)
    if storage.is_published(root, marker=MANIFEST):
        return 0  # complete (its targets may predate target.json): the next publish clears leftovers
    if parse_uri(root).is_s3:
        return _remove_partial_s3(root)
    removed = storage.remove_partials(root, marker=None)  # the run folder's own siblings (older layout)
    removed += remove_temp_files(output_uri, run_id)
    path = Path(parse_uri(root).key)
    if not path.is_dir():
        return removed
    for entry in sorted(path.iterdir()):
        name = entry.name
        if name.startswith(".") and (PARTIAL in name or STALE in name):
            removed += max(storage.delete_prefix(str(entry)), 1)
        elif entry.is_dir() and not entry.is_symlink() and name not in RUN_LEVEL \
                and not (entry / TARGET_MARKER).is_file():
            removed += storage.delete_prefix(str(entry))
    for cif in sorted((path / "structures").glob("*.cif")):
        if not (path / cif.stem / TARGET_MARKER).is_file():
            cif.unlink(missing_ok=True)
            removed += 1
    for empty in (path / "structures", path):  # nothing was published: no empty folder either
        with contextlib.suppress(OSError):
            empty.rmdir()
    return removed


def _remove_partial_s3(root: str) -> int:
    base = parse_uri(root).key.rstrip("/") + "/"
    groups: dict[str, list[str]] = {}
    for info in storage.list_prefix(root + "/"):
        rel = parse_uri(info.uri).key[len(base):]
        groups.setdefault(rel.split("/", 1)[0] if "/" in rel else "", []).append(rel)
    done = {g for g, rels in groups.items() if f"{g}/{TARGET_MARKER}" in rels}
    doomed = [rel for g, rels in groups.items() if g and g not in RUN_LEVEL and g not in done for rel in rels]
    doomed += [rel for rel in groups.get("structures", []) if rel.endswith(".cif")
               and rel[len("structures/"):-len(".cif")] not in done]
    for rel in doomed:
        storage.delete(join_under(root, rel))
    return len(doomed)
