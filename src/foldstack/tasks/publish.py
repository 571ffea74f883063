"""Publishing a run's results so they appear atomically or not at all.

Locally, files go to a hidden sibling folder that is renamed into place after the
manifest is written. On S3 (no rename), objects are written under the final prefix and
`manifest.json` goes last: its presence is the completeness marker, and a failed publish
deletes what it wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from foldstack import storage
from foldstack.core.uris import join_under, parse_uri

MANIFEST = "manifest.json"


def partial_prefix(run_id: str) -> str:
    return f".{run_id}.partial-"


class Publisher:
    def __init__(self, output_uri: str, run_id: str) -> None:
        self.final = join_under(output_uri, run_id)
        self._local = not parse_uri(output_uri).is_s3
        if self._local:
            self.root = join_under(output_uri, f"{partial_prefix(run_id)}{uuid.uuid4().hex[:12]}")
        else:
            self.root = self.final

    def put(self, relpath: str, data: bytes) -> None:
        storage.write_bytes(join_under(self.root, relpath), data)

    def commit(self, manifest: dict[str, Any]) -> None:
        body = json.dumps(manifest, indent=2, sort_keys=True).encode()
        storage.write_bytes(join_under(self.root, MANIFEST), body, content_type="application/json")
        if self._local:
            final = Path(parse_uri(self.final).key)
            if final.exists() and not (final / MANIFEST).exists():
                shutil.rmtree(final)  # leftover of an earlier failed attempt, never a complete run
            os.rename(parse_uri(self.root).key, final)

    def abort(self) -> None:
        if self._local or not storage.exists(join_under(self.final, MANIFEST)):
            storage.delete_prefix(self.root)


def is_complete(output_uri: str, run_id: str) -> bool:
    return storage.exists(join_under(output_uri, run_id, MANIFEST))


def remove_partial(output_uri: str, run_id: str) -> int:
    """Delete leftovers of an unfinished publish; never a complete run's results."""
    removed = 0
    if not is_complete(output_uri, run_id):
        removed += storage.delete_prefix(join_under(output_uri, run_id))
    root = parse_uri(output_uri)
    if not root.is_s3 and os.path.isdir(root.key):
        for entry in os.scandir(root.key):
            if entry.name.startswith(partial_prefix(run_id)):
                removed += storage.delete_prefix(entry.path)
    return removed
