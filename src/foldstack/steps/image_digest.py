"""The digest of the container image a step runs in, from the ECS task metadata endpoint v4.

``$FOLDSTACK_IMAGE`` (the job definition's image URI, :func:`foldstack.core.provenance.build_info`)
names the image by tag. AWS Batch on ECS also sets ``ECS_CONTAINER_METADATA_URI_V4``; a GET
of that URI returns this container's metadata, whose ``ImageID`` is the ``sha256:`` digest of
the image that was actually pulled. The step contract (:mod:`foldstack.steps.common`) records
it beside the tag (``build.image_digest`` in every done record, so in the manifest).

Best effort, like :mod:`foldstack.steps.ran_on`: outside ECS (local runs) there is no endpoint
and nothing is recorded; an endpoint that does not answer within :data:`TIMEOUT_S` or answers
something else is ignored — provenance never fails a step. Looked up once per process.

The GET goes straight to the endpoint, never through ``$HTTP_PROXY`` (a job whose image sets a
proxy would otherwise send a link-local request to it), and the whole lookup is bounded by
:data:`DEADLINE_S`, not only each socket operation: an endpoint that trickles its answer a
byte at a time would otherwise hold the step's done record for as long as it liked.
"""

from __future__ import annotations

import functools
import json
import os
import re
import threading
from typing import Any

METADATA_ENV = "ECS_CONTAINER_METADATA_URI_V4"
TIMEOUT_S = 1.0  # a local link-local endpoint answers in milliseconds
DEADLINE_S = 2 * TIMEOUT_S  # the whole lookup (connect, headers, body), however the endpoint answers
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def _fetch(metadata_uri: str, answer: dict[str, Any]) -> None:
    """GET `metadata_uri` without any proxy; the JSON body goes in ``answer["body"]``."""
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # link-local: never via a proxy
    try:
        with opener.open(metadata_uri.rstrip("/"), timeout=TIMEOUT_S) as resp:
            body = json.loads(resp.read(1 << 20))
    except Exception:  # noqa: BLE001 - best effort: the image digest is provenance, never a failure
        body = None
    answer["body"] = body


@functools.lru_cache(maxsize=4)
def _image_id(metadata_uri: str) -> str | None:
    """``ImageID`` of the container metadata at `metadata_uri` (None if unreachable, too slow
    or not a digest)."""
    if not metadata_uri.startswith("http://"):
        return None
    answer: dict[str, Any] = {}
    # a daemon thread, so a lookup past DEADLINE_S is abandoned (never joined) and the step goes on
    worker = threading.Thread(target=_fetch, args=(metadata_uri, answer), daemon=True, name="image-digest")
    worker.start()
    worker.join(DEADLINE_S)
    body = answer.get("body")
    image_id = body.get("ImageID") if isinstance(body, dict) else None
    return image_id if isinstance(image_id, str) and _DIGEST.fullmatch(image_id) else None


def container_image() -> dict[str, Any]:
    """``{"image_digest": "sha256:..."}`` of the running container's image, or ``{}``."""
    digest = _image_id(os.environ.get(METADATA_ENV, ""))
    return {"image_digest": digest} if digest else {}
