"""Local names of a workflow's Batch resources, from the jobs.yaml model.

The model itself is :class:`foldstack.workflows.specs.JobsFile`; these helpers name what
it defines the way the local engine's placeholders resolve them, and map names back:

* Lambda:          ``arn:aws:lambda:us-east-1:000000000000:function:foldstack-local-<lambda>``
* Batch queue:     ``arn:aws:batch:us-east-1:000000000000:job-queue/foldstack-local-<queue key>``
* job definition:  ``arn:aws:batch:us-east-1:000000000000:job-definition/foldstack-local-<job>[-<size class>]:1``

and a job's command as Batch resolves it (``Ref::`` parameters, :func:`build_argv`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping

from foldstack.local.errors import BatchApiError
from foldstack.workflows.specs import JobsFile, JobSpec

ACCOUNT_ID = "000000000000"
REGION = "us-east-1"
NAME_PREFIX = "foldstack-local"


def lambda_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{NAME_PREFIX}-{name}"


def queue_arn(queue_key: str) -> str:
    return f"arn:aws:batch:{REGION}:{ACCOUNT_ID}:job-queue/{NAME_PREFIX}-{queue_key}"


def job_definition_arn(job: str, size_class: str | None = None) -> str:
    suffix = f"-{size_class}" if size_class else ""
    return f"arn:aws:batch:{REGION}:{ACCOUNT_ID}:job-definition/{NAME_PREFIX}-{job}{suffix}:1"


def placeholder_key(*parts: str) -> str:
    """`queue`, `cpu-spot`, `arn` -> `queue_cpu_spot_arn`."""
    return "_".join(re.sub(r"[^A-Za-z0-9]+", "_", p) for p in parts)


class JobsSpecError(ValueError):
    """A job-definition or job-queue name/ARN does not map to an entry of jobs.yaml."""


def _where(jobs: JobsFile) -> str:
    return str(jobs.source) if jobs.source is not None else f"the jobs.yaml of {jobs.workflow!r}"


# -- names -> specs
def resolve_job_definition(jobs: JobsFile, value: str) -> tuple[JobSpec, str | None]:
    """Map a local job-definition ARN (or bare name) back to (job spec, size class)."""
    name = value
    if ":job-definition/" in name:
        name = name.split(":job-definition/", 1)[1]
    name = re.sub(r":\d+$", "", name)
    if name.startswith(NAME_PREFIX + "-"):
        name = name[len(NAME_PREFIX) + 1 :]
    for job in jobs.jobs.values():
        for job_name, size_class in job.definition_names():
            candidates = {job_name if size_class is None else f"{job_name}-{size_class}"}
            candidates |= {c.replace("_", "-") for c in candidates}
            if name in candidates:
                return job, size_class
    known = [job_definition_arn(j, s) for job in jobs.jobs.values() for j, s in job.definition_names()]
    raise JobsSpecError(f"job definition {value!r} is not in {_where(jobs)}; known: {known}")


def resolve_queue(jobs: JobsFile, value: str) -> str:
    """Map a local job-queue ARN (or bare name) back to its ``queues`` key."""
    name = value
    if ":job-queue/" in name:
        name = name.split(":job-queue/", 1)[1]
    if name.startswith(NAME_PREFIX + "-"):
        name = name[len(NAME_PREFIX) + 1 :]
    if jobs.queues and name not in jobs.queues:
        raise JobsSpecError(
            f"job queue {value!r} is not in {_where(jobs)}; known: {[queue_arn(q) for q in jobs.queues]}"
        )
    return name


# -- placeholders
def placeholder_values(jobs: JobsFile) -> dict[str, str]:
    """`queue_<key>_arn` and `job_definition_<job>[_<size>]_arn` for this file."""
    values: dict[str, str] = {}
    for key in jobs.queues:
        values[placeholder_key("queue", key, "arn")] = queue_arn(key)
    for job in jobs.jobs.values():
        for job_name, size_class in job.definition_names():
            parts = ["job_definition", job_name] + ([size_class] if size_class else []) + ["arn"]
            values[placeholder_key(*parts)] = job_definition_arn(job_name, size_class)
    return values


# -- commands


def _python_argv(argv: list[str]) -> list[str]:
    if not argv:
        return argv
    if argv[0] == "foldstack":
        return [sys.executable, "-m", "foldstack", *argv[1:]]
    if argv[0] in ("python", "python3"):
        return [sys.executable, *argv[1:]]
    return argv


def build_argv(command: list[str] | tuple[str, ...], parameters: Mapping[str, str]) -> list[str]:
    """Replace whole-argument ``Ref::name`` with its parameter (as Batch does)."""
    argv: list[str] = []
    missing: list[str] = []
    for arg in command:
        if arg.startswith("Ref::"):
            key = arg[len("Ref::") :]
            if key in parameters:
                argv.append(str(parameters[key]))
            else:
                missing.append(key)
        else:
            argv.append(arg)
    if missing:
        raise BatchApiError("ClientException", f"no value or default for parameter(s) {missing} of the command")
    return _python_argv(argv)
