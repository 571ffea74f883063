"""One GET of the ECS task metadata endpoint v4 (``$ECS_CONTAINER_METADATA_URI_V4``), for the
provenance a step records: the container's image digest (:mod:`foldstack.steps.image_digest`)
and where it ran (:mod:`foldstack.steps.ran_on`, from ``<uri>/task``).

Best effort: anything but a JSON object within the deadline is ``None``, never a failure.
The GET goes straight to the link-local endpoint, never through ``$HTTP_PROXY`` (a job whose
image sets a proxy would otherwise send it there), and the whole lookup (connect, headers,
body) is bounded by :data:`DEADLINE_S`, not only each socket operation: an endpoint that
trickles its answer a byte at a time would otherwise hold the step's done record for as long
as it liked.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from typing import Any

METADATA_ENV = "ECS_CONTAINER_METADATA_URI_V4"
TIMEOUT_S = 1.0  # a local link-local endpoint answers in milliseconds
DEADLINE_S = 2 * TIMEOUT_S  # the whole lookup, however the endpoint answers
MAX_BYTES = 1 << 20


def direct_open(request: Any, timeout: float) -> Any:
    """Open `request` (a URL or :class:`urllib.request.Request`) without any proxy: link-local
    metadata endpoints (this one, EC2's IMDS) are never asked through ``$HTTP_PROXY``."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=timeout)


def _fetch(url: str, answer: dict[str, Any]) -> None:
    try:
        with direct_open(url, timeout=TIMEOUT_S) as resp:  # noqa: S310  # nosec B310 - scheme checked by the caller
            answer["body"] = json.loads(resp.read(MAX_BYTES))
    except Exception:  # noqa: BLE001 - best effort: metadata is provenance, never a failure
        answer["body"] = None


def get(metadata_uri: str, path: str = "") -> dict[str, Any] | None:
    """The JSON object at `metadata_uri` + `path` (``""``: this container, ``"/task"``: its task),
    or None if the URI is not ``http://``, the endpoint does not answer an object within
    :data:`DEADLINE_S`, or answers something else."""
    if not metadata_uri.startswith("http://"):
        return None
    answer: dict[str, Any] = {}
    # a daemon thread, so a lookup past DEADLINE_S is abandoned (never joined) and the step goes on
    worker = threading.Thread(target=_fetch, args=(metadata_uri.rstrip("/") + path, answer), daemon=True,
                              name="ecs-metadata")
    worker.start()
    worker.join(DEADLINE_S)
    body = answer.get("body")
    return body if isinstance(body, dict) else None
