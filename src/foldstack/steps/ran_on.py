"""Where a step's job ran (``ran_on`` in every done record, written by the step contract,
:mod:`foldstack.steps.common`): what AWS Batch sets in each container, the job definition's
size class where it is set, and the availability zone from the ECS task metadata endpoint.
The local engine sets the same variables (``foldstack.local.batch``). The cost estimate
(:mod:`foldstack.cost`) prices each job by it."""

from __future__ import annotations

import functools
import json
import os
from typing import Any

SIZE_CLASS_ENV = "FOLDSTACK_SIZE_CLASS"


@functools.lru_cache(maxsize=4)
def _availability_zone(metadata_uri: str) -> str | None:
    """``AvailabilityZone`` of the ECS task metadata endpoint v4's ``/task`` (None if unreachable)."""
    import urllib.request

    if not metadata_uri.startswith("http://"):
        return None
    try:
        with urllib.request.urlopen(metadata_uri.rstrip("/") + "/task", timeout=1) as resp:  # noqa: S310  # nosec B310 - scheme checked
            zone = json.loads(resp.read(1 << 20)).get("AvailabilityZone")
    except Exception:  # noqa: BLE001 - best effort: where it ran is provenance, never a failure
        return None
    return str(zone) if zone else None


def ran_on() -> dict[str, Any] | None:
    """Where this job runs, from what AWS Batch sets in the container (``AWS_BATCH_JQ_NAME``,
    ``AWS_BATCH_CE_NAME``, ``AWS_BATCH_JOB_ID``, ``AWS_BATCH_JOB_ATTEMPT``), the job
    definition's size class (``FOLDSTACK_SIZE_CLASS``, where set) and the task metadata's
    availability zone; None outside Batch. The instance type is not in the EC2 launch
    type's task metadata: the cost estimate derives it from the queue and size class."""
    env = os.environ
    if not (env.get("AWS_BATCH_JOB_ID") or env.get("AWS_BATCH_JQ_NAME")):
        return None
    attempt = env.get("AWS_BATCH_JOB_ATTEMPT", "")
    out: dict[str, Any] = {
        "queue": env.get("AWS_BATCH_JQ_NAME") or None,
        "compute_environment": env.get("AWS_BATCH_CE_NAME") or None,
        "size_class": env.get(SIZE_CLASS_ENV) or None,
        "attempt": int(attempt) if attempt.isdigit() else None,
        "job_id": env.get("AWS_BATCH_JOB_ID") or None,
    }
    zone = _availability_zone(env.get("ECS_CONTAINER_METADATA_URI_V4", ""))
    if zone:
        out["availability_zone"] = zone
    return out
