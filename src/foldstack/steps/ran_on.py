"""Where a step's job ran (``ran_on`` in every done record, written by the step contract,
:mod:`foldstack.steps.common`): what AWS Batch sets in each container, the job definition's
size class where it is set, the availability zone and task from the ECS task metadata
endpoint, and the instance type and purchase option from the EC2 instance metadata
(IMDSv2). The local engine sets the Batch variables (``foldstack.local.batch``) and has
no instance metadata. The cost estimate (:mod:`foldstack.cost`) prices each job by it.

Instance metadata is asked only where the ECS task metadata endpoint is set (a container on
ECS, as Batch runs it) or ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` names an endpoint (tests),
with a short timeout, and never where ``AWS_EC2_METADATA_DISABLED=true``; without it the
cost estimate falls back to the cheapest type of the job's queue and class, and says so.
The launch template's hop limit decides whether a container reaches it (1 blocks containers
on the bridge network).
"""

from __future__ import annotations

import functools
import os
import urllib.request
from typing import Any

from foldstack.steps import ecs_metadata
from foldstack.steps.ecs_metadata import METADATA_ENV, direct_open

SIZE_CLASS_ENV = "FOLDSTACK_SIZE_CLASS"
IMDS_ENDPOINT_ENV = "AWS_EC2_METADATA_SERVICE_ENDPOINT"  # botocore's name for the same override
IMDS_DEFAULT = "http://169.254.169.254"
IMDS_TIMEOUT_S = 0.5
# EC2's instance-life-cycle values -> jobs.yaml purchase options
_PURCHASE = {"spot": "spot", "on-demand": "on_demand", "scheduled": "on_demand"}


# GET/PUT a link-local metadata endpoint directly, never through ``$HTTP_PROXY`` (an image that
# sets a proxy would otherwise hand it the IMDS token request)
_open = direct_open


@functools.lru_cache(maxsize=4)
def _task_metadata(metadata_uri: str) -> dict[str, Any]:
    """The ECS task metadata endpoint v4's ``/task`` ({} if unreachable or past the deadline,
    :func:`foldstack.steps.ecs_metadata.get`)."""
    return ecs_metadata.get(metadata_uri, "/task") or {}


def _availability_zone(metadata_uri: str) -> str | None:
    zone = _task_metadata(metadata_uri).get("AvailabilityZone")
    return str(zone) if zone else None


@functools.lru_cache(maxsize=4)
def instance_metadata(endpoint: str) -> dict[str, str]:
    """``instance_type`` and ``purchase`` (``spot`` / ``on_demand``) from the EC2 instance
    metadata at `endpoint` (IMDSv2: a session token first), {} if it does not answer
    within :data:`IMDS_TIMEOUT_S`."""
    if not endpoint.startswith("http://"):
        return {}
    base = endpoint.rstrip("/")
    try:
        put = urllib.request.Request(base + "/latest/api/token", method="PUT",  # noqa: S310 - scheme checked
                                     headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
        with _open(put, timeout=IMDS_TIMEOUT_S) as resp:  # noqa: S310  # nosec B310 - scheme checked
            token = resp.read(4096).decode()
        out: dict[str, str] = {}
        for key, path in (("instance_type", "instance-type"), ("life_cycle", "instance-life-cycle")):
            get = urllib.request.Request(f"{base}/latest/meta-data/{path}",  # noqa: S310 - scheme checked
                                         headers={"X-aws-ec2-metadata-token": token})
            with _open(get, timeout=IMDS_TIMEOUT_S) as resp:  # noqa: S310  # nosec B310
                out[key] = resp.read(256).decode().strip()
    except Exception:  # noqa: BLE001 - best effort, as above
        return {}
    result = {"instance_type": out["instance_type"]} if out.get("instance_type") else {}
    if out.get("life_cycle") in _PURCHASE:
        result["purchase"] = _PURCHASE[out["life_cycle"]]
    return result


def _instance() -> dict[str, str]:
    env = os.environ
    if env.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true":
        return {}
    endpoint = env.get(IMDS_ENDPOINT_ENV) or (IMDS_DEFAULT if env.get(METADATA_ENV) else "")
    return instance_metadata(endpoint) if endpoint else {}


def batch_log_stream() -> str | None:
    """This Batch job's CloudWatch log stream, as Batch names it for the awslogs driver:
    ``<job definition name>/default/<ECS task id>`` (the job definition from
    ``FOLDSTACK_JOB_DEFINITION``, the task from the task metadata); None where either is
    unknown."""
    from foldstack.core.provenance import JOB_DEFINITION_ENV

    jobdef = os.environ.get(JOB_DEFINITION_ENV, "").strip()
    task_arn = str(_task_metadata(os.environ.get(METADATA_ENV, "")).get("TaskARN") or "")
    if not jobdef or not task_arn:
        return None
    name = jobdef.rsplit("/", 1)[-1].split(":", 1)[0]  # arn:...:job-definition/<name>:<revision>
    return f"{name}/default/{task_arn.rsplit('/', 1)[-1]}"


def ran_on() -> dict[str, Any] | None:
    """Where this job runs, from what AWS Batch sets in the container (``AWS_BATCH_JQ_NAME``,
    ``AWS_BATCH_CE_NAME``, ``AWS_BATCH_JOB_ID``, ``AWS_BATCH_JOB_ATTEMPT``), the job
    definition's size class (``FOLDSTACK_SIZE_CLASS``, where set), the task metadata's
    availability zone and the instance metadata's ``instance_type`` and ``purchase``
    (where reachable); None outside Batch."""
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
    zone = _availability_zone(env.get(METADATA_ENV, ""))
    if zone:
        out["availability_zone"] = zone
    out.update(_instance())
    return out
