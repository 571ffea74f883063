"""Publishing a run's results under ``<output_uri>/<run_id>/`` so they appear atomically
or not at all, with ``manifest.json`` as the completeness marker.

A thin layer over :func:`foldstack.storage.publish` (whose docstring says what a reader
can observe locally and on S3): locally the files go to a hidden sibling
``.<run_id>.partial-<hex>`` that is renamed into place after the manifest is written; on
S3 the objects go under the final prefix and ``manifest.json`` last, and a failed publish
deletes what it wrote. A complete run's results are never replaced or deleted here.
"""

from __future__ import annotations

import json
from typing import Any

from foldstack import storage
from foldstack.core.manifest import MANIFEST
from foldstack.core.uris import join_under
from foldstack.storage.publishing import partial_prefix as _partial_prefix


def partial_prefix(run_id: str) -> str:
    """The name prefix of a run's local staging directories, ``.<run_id>.partial-``."""
    return _partial_prefix(run_id)


class Publisher:
    def __init__(self, output_uri: str, run_id: str) -> None:
        self.final = join_under(output_uri, run_id)
        self._pub = storage.Publication(self.final, marker=MANIFEST)

    def put(self, relpath: str, data: bytes) -> None:
        self._pub.put(relpath, data)

    def commit(self, manifest: dict[str, Any]) -> None:
        body = json.dumps(manifest, indent=2, sort_keys=True).encode()
        self._pub.put(MANIFEST, body, content_type="application/json")
        self._pub.commit()

    def abort(self) -> None:
        self._pub.abort()


def is_complete(output_uri: str, run_id: str) -> bool:
    return storage.is_published(join_under(output_uri, run_id), marker=MANIFEST)


def remove_partial(output_uri: str, run_id: str) -> int:
    """Delete leftovers of an unfinished publish; never a complete run's results."""
    return storage.remove_partials(join_under(output_uri, run_id), marker=MANIFEST)
