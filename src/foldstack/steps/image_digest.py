"""The digest of the container image a step runs in, from the ECS task metadata endpoint v4.

``$FOLDSTACK_IMAGE`` (the job definition's image URI, :func:`foldstack.core.provenance.build_info`)
names the image by tag. AWS Batch on ECS also sets ``ECS_CONTAINER_METADATA_URI_V4``; a GET
of that URI returns this container's metadata, whose ``ImageID`` is the ``sha256:`` digest of
the image that was actually pulled. The step contract (:mod:`foldstack.steps.common`) records
it beside the tag (``build.image_digest`` in every done record, so in the manifest).

Best effort, like :mod:`foldstack.steps.ran_on`: outside ECS (local runs) there is no endpoint
and nothing is recorded; an endpoint that does not answer within :data:`TIMEOUT_S` or answers
something else is ignored — provenance never fails a step. Looked up once per process.

The GET (:func:`foldstack.steps.ecs_metadata.get`) goes straight to the endpoint, never through
``$HTTP_PROXY``, and the whole lookup is bounded by :data:`DEADLINE_S`, not only each socket
operation.
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any

from foldstack.steps import ecs_metadata
from foldstack.steps.ecs_metadata import DEADLINE_S as DEADLINE_S  # re-exported: the bounds documented here
from foldstack.steps.ecs_metadata import METADATA_ENV
from foldstack.steps.ecs_metadata import TIMEOUT_S as TIMEOUT_S

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@functools.lru_cache(maxsize=4)
def _image_id(metadata_uri: str) -> str | None:
    """``ImageID`` of the container metadata at `metadata_uri` (None if unreachable, too slow
    or not a digest)."""
    image_id = (ecs_metadata.get(metadata_uri) or {}).get("ImageID")
    return image_id if isinstance(image_id, str) and _DIGEST.fullmatch(image_id) else None


def container_image() -> dict[str, Any]:
    """``{"image_digest": "sha256:..."}`` of the running container's image, or ``{}``."""
    digest = _image_id(os.environ.get(METADATA_ENV, ""))
    return {"image_digest": digest} if digest else {}
