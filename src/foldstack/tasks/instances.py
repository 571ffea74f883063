"""Which EC2 instance type each Batch job of a batch ran on, asked of AWS by Publish Batch.

A step cannot see its instance type in the cloud: the Batch launch template keeps
``http_put_response_hop_limit = 1``, so containers cannot reach the instance metadata (nor,
with it, the instance role's credentials), and the step's ``ran_on``
(:mod:`foldstack.steps.ran_on`) carries its Batch job id and queue but no
``instance_type``. Publish Batch fills that in for the jobs of its batch once they ran:

* Batch ``DescribeJobs`` (100 job ids a call) → the container instance of the attempt that
  wrote the done record (``attempts[attempt - 1].container.containerInstanceArn``, else the
  job's latest ``container.containerInstanceArn``) and the job's queue;
* ECS ``DescribeContainerInstances`` (100 a call, per cluster; the cluster is the one the
  container instance ARN names) → the instance's ``ecs.instance-type`` attribute;
* the purchase option is the queue's: each queue has one compute environment, SPOT or EC2,
  as jobs.yaml ``queues.<key>.purchase`` says;
* the attempts before the one that wrote the done record (Batch retried the job after a
  Spot interruption or a lost host: ``attempts[]`` with ``startedAt``/``stoppedAt`` and their
  own container instances) go into ``ran_on.earlier_attempts`` (attempt, seconds, instance
  type), so the cost estimate charges the work they lost too.

Calls per invocation: ``ceil(jobs / 100)`` + at most ``clusters + ceil(instances / 100)``,
bounded by the batch's size, never the run's. They go through :func:`_call` (one client per
service, botocore's standard retries, as :mod:`foldstack.storage` does for S3).

Only where ``FOLDSTACK_INSTANCE_LOOKUP=batch`` (Terraform sets it on the cloud Lambdas; the
local engine has no Batch to ask). Best effort: a job Batch no longer reports, a container
instance ECS no longer knows (it keeps deregistered ones visible only for a while), a
permission or network error is logged and leaves ``ran_on`` as it was, so the cost estimate
prices the cheapest fitting type and flags it (``instance_source: cheapest_fit``). It never
fails the publish.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

LOOKUP_ENV = "FOLDSTACK_INSTANCE_LOOKUP"
LOOKUP_BATCH = "batch"
PAGE = 100  # the most ids DescribeJobs and DescribeContainerInstances take in one call
INSTANCE_TYPE_ATTRIBUTE = "ecs.instance-type"
REASONS_LOGGED = 5
# All calls of one invocation stop after this long (the Lambda has publishing to do within
# its own timeout); what is not resolved by then falls back like any other miss.
BUDGET_S = 60.0
# The long ARN format (ECS's default; the account setting containerInstanceLongArnFormat)
# names the cluster; the old short one (container-instance/<id>) does not, and such a job is
# left unresolved.
_CONTAINER_INSTANCE = re.compile(
    r"^arn:(?P<partition>[^:]+):ecs:(?P<region>[^:]+):(?P<account>\d+):container-instance/(?P<cluster>[^/]+)/[^/]+$")
log = logging.getLogger("foldstack.task")


@functools.lru_cache(maxsize=2)
def _client(service: str) -> Any:
    import boto3
    from botocore.config import Config

    # standard mode retries throttling and 5xx with backoff, and nothing else; short timeouts,
    # since this only refines an estimate inside a Lambda with a deadline
    return boto3.client(service, config=Config(retries={"mode": "standard", "max_attempts": 3},
                                               connect_timeout=3, read_timeout=10))


class OutOfTime(Exception):
    """The invocation's lookup budget (:data:`BUDGET_S`) is spent."""


def _call(service: str, operation: str, **params: Any) -> dict[str, Any]:
    """Every AWS call of this module: one client per service, one place to stub or count."""
    return getattr(_client(service), operation)(**params)


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return env.get(LOOKUP_ENV, "").strip().lower() == LOOKUP_BATCH


@dataclass
class Lookup:
    """What one invocation resolved: ``types[(job_id, attempt)]`` and ``queues[job_id]``
    (the job queue ARN), the AWS calls made and why the rest were not resolved."""

    types: dict[tuple[str, int | None], str] = field(default_factory=dict)
    queues: dict[str, str] = field(default_factory=dict)
    # (job_id, attempt) -> the attempts before it that ran: {attempt, seconds, instance_type}
    earlier: dict[tuple[str, int | None], list[dict[str, Any]]] = field(default_factory=dict)
    calls: int = 0
    unresolved: list[str] = field(default_factory=list)


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(items), PAGE):
        yield items[i:i + PAGE]


def _instance_of(job: Mapping[str, Any], attempt: int | None) -> str | None:
    """The container instance ARN of the attempt that wrote the done record (1-based, as
    ``AWS_BATCH_JOB_ATTEMPT``), else of the job's latest attempt."""
    attempts = job.get("attempts") or []
    if attempt is not None and 1 <= attempt <= len(attempts):
        arn = (attempts[attempt - 1].get("container") or {}).get("containerInstanceArn")
        if arn:
            return str(arn)
    arn = (job.get("container") or {}).get("containerInstanceArn")
    return str(arn) if arn else None


def _earlier_attempts(job: Mapping[str, Any], attempt: int | None) -> list[tuple[int, str | None, float]]:
    """(attempt number, container instance ARN, seconds) of each attempt before `attempt`
    that started and stopped (one that never started cost nothing)."""
    if attempt is None or attempt < 2:
        return []
    out = []
    for number, earlier in enumerate((job.get("attempts") or [])[:attempt - 1], start=1):
        started, stopped = earlier.get("startedAt"), earlier.get("stoppedAt")
        if isinstance(started, int) and isinstance(stopped, int) and stopped >= started > 0:
            arn = (earlier.get("container") or {}).get("containerInstanceArn")
            out.append((number, str(arn) if arn else None, (stopped - started) / 1000.0))
    return out


def lookup(wanted: Iterable[tuple[str, int | None]]) -> Lookup:
    """The instance type of each ``(job_id, attempt)`` that AWS still reports."""
    found = Lookup()
    deadline = time.monotonic() + BUDGET_S

    def ask(service: str, operation: str, **params: Any) -> dict[str, Any]:
        if time.monotonic() > deadline:
            raise OutOfTime(f"lookup budget of {BUDGET_S:.0f} s spent")
        found.calls += 1
        return _call(service, operation, **params)

    wanted = sorted(set(wanted), key=lambda w: (w[0], w[1] or 0))
    jobs: dict[str, Mapping[str, Any]] = {}
    jobs_unknown = False  # a DescribeJobs call failed: its jobs are said once, not each
    for ids in _chunks(sorted({job_id for job_id, _ in wanted})):
        try:
            reply = ask("batch", "describe_jobs", jobs=ids)
        except Exception as exc:  # noqa: BLE001 - best effort: never fails the publish
            found.unresolved.append(f"DescribeJobs: {type(exc).__name__}: {exc}")
            jobs_unknown = True
            continue
        jobs.update({str(j["jobId"]): j for j in reply.get("jobs") or [] if j.get("jobId")})
    # (job, attempt) -> container instance ARN; cluster ARN -> its container instances
    instance_of: dict[tuple[str, int | None], str] = {}
    by_cluster: dict[str, set[str]] = defaultdict(set)

    def to_describe(arn: str | None) -> bool:
        m = _CONTAINER_INSTANCE.match(arn or "")
        if m is not None:
            by_cluster[f"arn:{m['partition']}:ecs:{m['region']}:{m['account']}:cluster/{m['cluster']}"].add(str(arn))
        return m is not None

    earlier_arns: dict[tuple[str, int | None], list[tuple[int, str | None, float]]] = {}
    for job_id, attempt in wanted:
        job = jobs.get(job_id)
        if job is None:
            if not jobs_unknown:
                found.unresolved.append(f"job {job_id}: not reported by DescribeJobs")
            continue
        if job.get("jobQueue"):
            found.queues[job_id] = str(job["jobQueue"])
        earlier = _earlier_attempts(job, attempt)
        if earlier:  # their types are asked in the same calls; one not resolved is priced by its queue
            earlier_arns[(job_id, attempt)] = [(n, arn if to_describe(arn) else None, sec) for n, arn, sec in earlier]
        arn = _instance_of(job, attempt)
        if not to_describe(arn):
            found.unresolved.append(f"job {job_id}: no container instance ARN naming its cluster ({arn})")
            continue
        instance_of[(job_id, attempt)] = str(arn)
    types: dict[str, str] = {}
    said: set[str] = set()  # container instances whose failure is already in unresolved
    for cluster in sorted(by_cluster):
        for arns in _chunks(sorted(by_cluster[cluster])):
            try:
                reply = ask("ecs", "describe_container_instances", cluster=cluster, containerInstances=arns)
            except Exception as exc:  # noqa: BLE001 - as above
                found.unresolved.append(f"DescribeContainerInstances {cluster}: {type(exc).__name__}: {exc}")
                said.update(arns)
                continue
            for ci in reply.get("containerInstances") or []:
                value = next((a.get("value") for a in ci.get("attributes") or []
                              if a.get("name") == INSTANCE_TYPE_ATTRIBUTE), None)
                if value and ci.get("containerInstanceArn"):
                    types[str(ci["containerInstanceArn"])] = str(value)
            for failure in reply.get("failures") or []:  # MISSING: deregistered and no longer kept
                found.unresolved.append(f"container instance {failure.get('arn')}: {failure.get('reason')}")
                said.add(str(failure.get("arn")))
    for key, arn in instance_of.items():
        if arn in types:
            found.types[key] = types[arn]
        elif arn not in said:
            found.unresolved.append(f"container instance {arn}: no {INSTANCE_TYPE_ATTRIBUTE} attribute")
            said.add(arn)
    for key, earlier in earlier_arns.items():
        found.earlier[key] = [{"attempt": n, "seconds": round(sec, 3), "instance_type": types.get(arn or "")}
                              for n, arn, sec in earlier]
    return found


def _purchase(jobs: Any, queue: str | None) -> str | None:
    """``spot`` or ``on_demand``: the purchase option of the jobs.yaml queue a Batch queue
    name or ARN is (``<prefix>-<key>``), None if it is none of them."""
    if jobs is None or not queue:
        return None
    from foldstack.cost import queue_key

    key = queue_key(jobs, queue)
    return None if key is None else jobs.queues[key].purchase


def record_instance_types(ran_ons: Iterable[MutableMapping[str, Any]], *, jobs: Any = None,
                          task: str = "publish_batch") -> int:
    """Fill ``instance_type`` and ``purchase`` into each done record's ``ran_on`` (the
    cost estimate's one home for them) that has a Batch ``job_id`` and no type yet (a step
    that could read its instance metadata keeps its own). `jobs`: the workflow's jobs.yaml
    model, whose queues give the purchase option (without it only the type is filled; the
    cost code then takes the option of ``ran_on.queue``). Returns how many were filled;
    logs one line with what was asked and what was not resolved. Never raises."""
    if not enabled():
        return 0
    todo = [r for r in ran_ons if isinstance(r, MutableMapping) and r.get("job_id") and not r.get("instance_type")]
    if not todo:
        return 0
    filled = 0
    try:
        def attempt(r: Mapping[str, Any]) -> int | None:
            return r["attempt"] if isinstance(r.get("attempt"), int) else None

        found = lookup((str(r["job_id"]), attempt(r)) for r in todo)
        for r in todo:
            key = (str(r["job_id"]), attempt(r))
            if found.earlier.get(key):
                r["earlier_attempts"] = found.earlier[key]
            instance_type = found.types.get(key)
            if instance_type is None:
                continue
            r["instance_type"] = instance_type
            purchase = _purchase(jobs, found.queues.get(str(r["job_id"])) or r.get("queue"))
            if purchase is not None:
                r["purchase"] = purchase
            filled += 1
        line = {"task": task, "instance_lookup": {"records": len(todo), "filled": filled, "aws_calls": found.calls}}
        if found.unresolved:
            line["instance_lookup"]["unresolved"] = found.unresolved[:REASONS_LOGGED]
            line["instance_lookup"]["unresolved_count"] = len(found.unresolved)
        (log.warning if found.unresolved else log.info)(json.dumps(line, default=str))
    except Exception as exc:  # noqa: BLE001 - a bug here must not cost a publish; the estimate falls back
        log.warning(json.dumps({"task": task, "instance_lookup": {"error": f"{type(exc).__name__}: {exc}"}}))
    return filled
