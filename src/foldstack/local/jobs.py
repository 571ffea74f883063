"""Read ``statemachines/<workflow>/jobs.yaml`` and name its resources locally.

Local resource names (what the placeholders resolve to, and what the engine maps back):

* Lambda:          ``arn:aws:lambda:us-east-1:000000000000:function:foldstack-local-<lambda>``
* Batch queue:     ``arn:aws:batch:us-east-1:000000000000:job-queue/foldstack-local-<queue key>``
* job definition:  ``arn:aws:batch:us-east-1:000000000000:job-definition/foldstack-local-<job>[-<size class>]:1``
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from foldstack.local.batch_retry import RetryStrategy

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
    """jobs.yaml is malformed, or a name/ARN does not map to an entry in it."""


@dataclass(frozen=True)
class JobSpec:
    name: str
    command: tuple[str, ...]
    parameters: Mapping[str, str]
    timeout_seconds: int | None
    retry: RetryStrategy
    queue: str | None = None
    queue_by_size_class: Mapping[str, str] = field(default_factory=dict)
    size_classes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)

    def definition_names(self) -> list[tuple[str, str | None]]:
        """(job, size class) pairs: one job definition per size class, else one."""
        if self.size_classes:
            return [(self.name, sc) for sc in self.size_classes]
        return [(self.name, None)]


@dataclass(frozen=True)
class JobsFile:
    path: Path | None
    workflow: str
    queues: Mapping[str, Mapping[str, Any]]
    jobs: Mapping[str, JobSpec]

    @classmethod
    def load(cls, path: Path | str) -> JobsFile:
        p = Path(path)
        data = yaml.safe_load(p.read_text())
        return cls.from_dict(data, path=p)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: Path | None = None) -> JobsFile:
        if not isinstance(data, Mapping) or not isinstance(data.get("jobs"), Mapping):
            raise JobsSpecError(f"{path or 'jobs spec'}: needs a `jobs:` mapping")
        jobs: dict[str, JobSpec] = {}
        for name, spec in data["jobs"].items():
            if not isinstance(spec, Mapping) or not isinstance(spec.get("command"), list):
                raise JobsSpecError(f"{path or 'jobs spec'}: job {name!r} needs a `command:` list")
            try:
                retry = RetryStrategy.from_spec(spec.get("retry"))
            except ValueError as err:
                raise JobsSpecError(f"{path or 'jobs spec'}: job {name!r}: {err}") from err
            timeout = spec.get("timeout_seconds")
            jobs[str(name)] = JobSpec(
                name=str(name),
                command=tuple(str(c) for c in spec["command"]),
                parameters={str(k): "" if v is None else str(v) for k, v in (spec.get("parameters") or {}).items()},
                timeout_seconds=int(timeout) if timeout is not None else None,
                retry=retry,
                queue=spec.get("queue"),
                queue_by_size_class=dict(spec.get("queue_by_size_class") or {}),
                size_classes=dict(spec.get("size_classes") or {}),
                raw=dict(spec),
            )
        return cls(
            path=path,
            workflow=str(data.get("workflow", path.parent.name if path else "workflow")),
            queues=dict(data.get("queues") or {}),
            jobs=jobs,
        )

    # -- names -> specs
    def resolve_job_definition(self, value: str) -> tuple[JobSpec, str | None]:
        """Map a local job-definition ARN (or bare name) back to (job spec, size class)."""
        name = value
        if ":job-definition/" in name:
            name = name.split(":job-definition/", 1)[1]
        name = re.sub(r":\d+$", "", name)
        if name.startswith(NAME_PREFIX + "-"):
            name = name[len(NAME_PREFIX) + 1 :]
        for job in self.jobs.values():
            for job_name, size_class in job.definition_names():
                candidates = {job_name if size_class is None else f"{job_name}-{size_class}"}
                candidates |= {c.replace("_", "-") for c in candidates}
                if name in candidates:
                    return job, size_class
        known = [job_definition_arn(j, s) for job in self.jobs.values() for j, s in job.definition_names()]
        raise JobsSpecError(f"job definition {value!r} is not in {self.path or 'jobs.yaml'}; known: {known}")

    def resolve_queue(self, value: str) -> str:
        name = value
        if ":job-queue/" in name:
            name = name.split(":job-queue/", 1)[1]
        if name.startswith(NAME_PREFIX + "-"):
            name = name[len(NAME_PREFIX) + 1 :]
        if self.queues and name not in self.queues:
            raise JobsSpecError(
                f"job queue {value!r} is not in {self.path or 'jobs.yaml'}; known: "
                f"{[queue_arn(q) for q in self.queues]}"
            )
        return name

    # -- placeholders
    def placeholder_values(self) -> dict[str, str]:
        """`queue_<key>_arn` and `job_definition_<job>[_<size>]_arn` for this file."""
        values: dict[str, str] = {}
        for key in self.queues:
            values[placeholder_key("queue", key, "arn")] = queue_arn(key)
        for job in self.jobs.values():
            for job_name, size_class in job.definition_names():
                parts = ["job_definition", job_name] + ([size_class] if size_class else []) + ["arn"]
                values[placeholder_key(*parts)] = job_definition_arn(job_name, size_class)
        return values
