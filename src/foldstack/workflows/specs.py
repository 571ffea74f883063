"""Loading a workflow's `jobs.yaml` (Batch job specs) and `knobs.yaml` into models."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from foldstack.core.targets import SizeClass

_STRICT = ConfigDict(extra="forbid", frozen=True)


class ExitRule(BaseModel):
    model_config = _STRICT
    on_status_reason: str | None = None
    on_reason: str | None = None
    on_exit_code: str | None = None
    action: Literal["RETRY", "EXIT"]


class RetrySpec(BaseModel):
    model_config = _STRICT
    attempts: int = Field(ge=1, le=10)
    evaluate_on_exit: list[ExitRule] = Field(max_length=5)

    @model_validator(mode="after")
    def _ends_with_exit(self) -> RetrySpec:
        last = self.evaluate_on_exit[-1] if self.evaluate_on_exit else None
        if last is None or last.action != "EXIT" or last.on_exit_code != "*":
            raise ValueError("evaluate_on_exit must end with {on_exit_code: '*', action: EXIT}: "
                             "Batch retries a job that matches no rule")
        return self


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    vcpu: int = Field(gt=0)
    memory_mib: int = Field(gt=0)
    gpus: int = Field(default=0, ge=0)
    instance_types: list[str] = Field(default_factory=list)


class JobSpec(BaseModel):
    model_config = _STRICT
    image: str
    command: list[str] = Field(min_length=1)
    parameters: dict[str, str] = Field(default_factory=dict)
    queue: str | None = None
    fallback_queue: str | None = None
    queue_by_size_class: dict[str, str] | None = None
    resources: Resources | None = None
    size_classes: dict[str, Resources] | None = None
    timeout_seconds: int = Field(gt=0)
    retry: RetrySpec

    @model_validator(mode="after")
    def _shape(self) -> JobSpec:
        if (self.resources is None) == (self.size_classes is None):
            raise ValueError("a job declares exactly one of `resources` or `size_classes`")
        if (self.queue is None) == (self.queue_by_size_class is None):
            raise ValueError("a job declares exactly one of `queue` or `queue_by_size_class`")
        refs = {a[5:] for a in self.command if a.startswith("Ref::")}
        if refs - set(self.parameters):
            raise ValueError(f"command uses undeclared parameters: {sorted(refs - set(self.parameters))}")
        return self


class QueueSpec(BaseModel):
    model_config = _STRICT
    tier: Literal["cpu", "gpu"]
    purchase: Literal["spot", "on_demand"]
    size_class: str | None = None


class JobsFile(BaseModel):
    model_config = _STRICT
    schema_version: Literal[1]
    workflow: str
    queues: dict[str, QueueSpec]
    size_classes: dict[str, SizeClass]
    exit_codes: dict[str, int]
    jobs: dict[str, JobSpec]

    @model_validator(mode="after")
    def _references(self) -> JobsFile:
        for name, job in self.jobs.items():
            used = [job.queue, job.fallback_queue, *(job.queue_by_size_class or {}).values()]
            unknown = [q for q in used if q is not None and q not in self.queues]
            if unknown:
                raise ValueError(f"job {name!r} uses unknown queues {unknown}")
            for mapping in (job.queue_by_size_class, job.size_classes):
                if mapping is not None and set(mapping) != set(self.size_classes):
                    raise ValueError(f"job {name!r} must cover exactly the size classes {list(self.size_classes)}")
        return self


class Workflow(BaseModel):
    """One workload: its directory holds the ASL template, jobs.yaml and knobs.yaml."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, ignored_types=(cached_property,))
    directory: Path

    @property
    def name(self) -> str:
        return self.directory.name

    @property
    def template(self) -> Path:
        return self.directory / "definition.asl.json.j2"

    @cached_property
    def jobs(self) -> JobsFile:
        return JobsFile.model_validate(yaml.safe_load((self.directory / "jobs.yaml").read_text()))

    @cached_property
    def knobs(self) -> dict:
        path = self.directory / "knobs.yaml"
        return yaml.safe_load(path.read_text()) if path.exists() else {}


def find_statemachines_dir(start: Path | None = None) -> Path:
    """`statemachines/` of this checkout: $FOLDSTACK_STATEMACHINES_DIR, else next to src/."""
    import os

    override = os.environ.get("FOLDSTACK_STATEMACHINES_DIR")
    if override:
        return Path(override)
    here = (start or Path(__file__)).resolve()
    for parent in here.parents:
        candidate = parent / "statemachines"
        if (candidate / "fold" / "jobs.yaml").exists():
            return candidate
    raise FileNotFoundError("statemachines/ not found; set FOLDSTACK_STATEMACHINES_DIR")


def load_workflow(name: str = "fold", root: Path | None = None) -> Workflow:
    return Workflow(directory=(root or find_statemachines_dir()) / name)
