"""The published results of a run of a workflow other than fold, read generically.

Fold's ``manifest.json`` has its own model (:class:`foldstack.core.manifest.Manifest`:
targets, summary, failures). Another workload's collect step writes its own manifest, last,
at ``<output_uri>/<run_id>/manifest.json``; the client needs only what every manifest
says: which files are published (with size and sha256 when given), the run's ``outcome``
and its figures (``metrics``, else ``results``: cryoem's resolution, particles, ...).
Files are read from ``files`` and ``run_files``, each either a mapping ``{relative path:
{"size": n, "sha256": hex}}`` or a list of such entries with a ``path`` (or plain relative
paths), and from fold-shaped ``targets[].files`` (relative to the target's folder).
Anything else in the manifest is kept as it is (`raw`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from foldstack.core.manifest import MANIFEST, ManifestError


@dataclass(frozen=True)
class PublishedEntry:
    path: str  # relative to the run's output folder
    size: int | None = None
    sha256: str | None = None
    target: str | None = None


@dataclass
class WorkloadManifest:
    run_id: str | None
    outcome: str | None
    files: list[PublishedEntry]
    metrics: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)


def _entries(value: Any, prefix: str = "", target: str | None = None) -> list[PublishedEntry]:
    def one(path: Any, meta: Any) -> PublishedEntry | None:
        if not isinstance(path, str) or not path or path.startswith("/") or ".." in path.split("/"):
            return None  # never a path outside the run's folder
        meta = meta if isinstance(meta, Mapping) else {}
        size, digest = meta.get("size"), meta.get("sha256")
        return PublishedEntry(prefix + path, size if isinstance(size, int) else None,
                              digest if isinstance(digest, str) else None, target)

    found: list[PublishedEntry | None] = []
    if isinstance(value, Mapping):
        found = [one(path, meta) for path, meta in value.items()]
    elif isinstance(value, list):
        found = [one(item, {}) if isinstance(item, str) else one(item.get("path"), item)
                 for item in value if isinstance(item, str | Mapping)]
    return [e for e in found if e is not None]


def read_manifest(data: bytes | str, *, source: str = MANIFEST) -> WorkloadManifest:
    try:
        raw = json.loads(data)
    except ValueError as exc:
        raise ManifestError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{source}: expected a JSON object")
    files = _entries(raw.get("files")) + _entries(raw.get("run_files"))
    for t in raw.get("targets") or []:
        if isinstance(t, Mapping) and isinstance(t.get("id"), str):
            files += _entries(t.get("files"), f"{t['id']}/", t["id"])
    unique = list({e.path: e for e in files if e.path != MANIFEST}.values())
    metrics = next((raw[k] for k in ("metrics", "results") if isinstance(raw.get(k), Mapping)), {})
    return WorkloadManifest(run_id=raw.get("run_id") if isinstance(raw.get("run_id"), str) else None,
                            outcome=raw.get("outcome") if isinstance(raw.get("outcome"), str) else None,
                            files=unique, metrics=dict(metrics) if isinstance(metrics, Mapping) else {}, raw=raw)
