"""The one model of a workflow's ``jobs.yaml`` (Batch job specs), and ``knobs.yaml``.

:class:`JobsFile` is read by the renderer, the cost estimate (``foldstack.cost``), the
local engine (``foldstack.local.jobs`` / ``batch``) and the tests. Terraform reads the
same file with ``yamldecode`` (``terraform/modules/batch``, ``workflow``, ``platform``);
``tests/terraform/test_jobspec_terraform_parity.py`` keeps the two readings in step.

Batch's retry rules (``docs/reliability.md``) are checked in one place,
:func:`check_exit_rule` / :func:`check_retry_strategy`: the model applies them to every
``retry:`` block, ``foldstack.local.batch_retry`` to the AWS-shaped ``retryStrategy``
dicts an ASL may pass to SubmitJob.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from foldstack.core.targets import SizeClass

_T = TypeVar("_T")

_STRICT = ConfigDict(extra="forbid", frozen=True)

# --------------------------------------------------------------------------- retry rules

MAX_RULES = 5
MIN_ATTEMPTS, MAX_ATTEMPTS = 1, 10
RETRY_ACTIONS = ("RETRY", "EXIT")
_MAX_PATTERN = 512
_REASON_PATTERN = re.compile(r"^[A-Za-z0-9.:\s]*\*?$")
_EXIT_CODE_PATTERN = re.compile(r"^[0-9]*\*?$")


class RetryStrategyError(ValueError):
    """A retry strategy or evaluateOnExit rule that AWS Batch would reject, or (in
    jobs.yaml) a rule list that would retry application errors."""


class _Rule(Protocol):
    action: str
    on_status_reason: str | None
    on_reason: str | None
    on_exit_code: str | None


def check_exit_rule(rule: _Rule) -> None:
    """One evaluateOnExit rule as Batch validates it: action RETRY or EXIT (upper case
    here; callers normalise AWS's case-insensitive form), at least one condition, reason
    patterns of letters, digits, ``.``, ``:`` and white space with at most one trailing
    ``*``, exit-code patterns of digits with at most one trailing ``*``, 512 chars max."""
    if rule.action not in RETRY_ACTIONS:
        raise RetryStrategyError(f"evaluateOnExit action must be RETRY or EXIT, got {rule.action!r}")
    if rule.on_status_reason is None and rule.on_reason is None and rule.on_exit_code is None:
        raise RetryStrategyError("evaluateOnExit rule needs onStatusReason, onReason or onExitCode")
    for name in ("on_status_reason", "on_reason"):
        value = getattr(rule, name)
        if value is not None and (len(value) > _MAX_PATTERN or not _REASON_PATTERN.match(value)):
            raise RetryStrategyError(f"{name} {value!r}: letters, digits, '.', ':', spaces and one trailing '*' only")
    code = rule.on_exit_code
    if code is not None and (code == "" or len(code) > _MAX_PATTERN or not _EXIT_CODE_PATTERN.match(code)):
        raise RetryStrategyError(f"on_exit_code {code!r}: digits and one trailing '*' only")


def check_retry_strategy(attempts: int, rules: Sequence[_Rule], *, final_exit: bool) -> None:
    """A retryStrategy as Batch validates it (1..10 attempts, at most 5 rules; each rule
    by :func:`check_exit_rule`). ``final_exit`` adds jobs.yaml's own rule: Batch retries
    an attempt that matches no rule, so the list must end with a catch-all
    ``{on_exit_code: "*", action: EXIT}``."""
    if isinstance(attempts, bool) or not MIN_ATTEMPTS <= attempts <= MAX_ATTEMPTS:
        raise RetryStrategyError(f"attempts must be {MIN_ATTEMPTS}..{MAX_ATTEMPTS}, got {attempts}")
    if len(rules) > MAX_RULES:
        raise RetryStrategyError(f"at most {MAX_RULES} evaluateOnExit rules, got {len(rules)}")
    for rule in rules:
        check_exit_rule(rule)
    if final_exit:
        last = rules[-1] if rules else None
        if (last is None or last.action != "EXIT" or last.on_exit_code != "*"
                or last.on_status_reason is not None or last.on_reason is not None):
            raise RetryStrategyError("evaluate_on_exit must end with {on_exit_code: '*', action: EXIT}: "
                                     "Batch retries a job that matches no rule")


class ExitRule(BaseModel):
    """One ``evaluate_on_exit`` rule (Batch ``EvaluateOnExit``; Terraform lower-cases the action)."""

    model_config = _STRICT
    on_status_reason: str | None = None
    on_reason: str | None = None
    on_exit_code: str | None = None
    action: Literal["RETRY", "EXIT"]

    @field_validator("on_exit_code", mode="before")
    @classmethod
    def _code_as_text(cls, value: Any) -> Any:
        # An unquoted YAML exit code is a number; Terraform reads it with tostring().
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _batch_rules(self) -> ExitRule:
        check_exit_rule(self)
        return self


class RetrySpec(BaseModel):
    """A job's ``retry:`` block: Batch's ``retryStrategy`` (attempts + evaluateOnExit)."""

    model_config = _STRICT
    attempts: int
    evaluate_on_exit: list[ExitRule]

    @model_validator(mode="after")
    def _batch_rules(self) -> RetrySpec:
        check_retry_strategy(self.attempts, self.evaluate_on_exit, final_exit=True)
        return self


# --------------------------------------------------------------------------- jobs.yaml


class Resources(BaseModel):
    """Batch resourceRequirements of one job definition (VCPU, MEMORY, GPU)."""

    model_config = _STRICT
    vcpu: int = Field(gt=0)
    memory_mib: int = Field(gt=0)
    gpus: int = Field(default=0, ge=0)
    instance_types: list[str] = Field(default_factory=list)


class JobSpec(BaseModel):
    """One entry of ``jobs``: one Batch job definition, or one per size class."""

    model_config = _STRICT
    image: str
    command: list[str] = Field(min_length=1)
    parameters: dict[str, str] = Field(default_factory=dict)
    queue: str | None = None
    fallback_queue: str | None = None
    queue_by_size_class: dict[str, str] | None = Field(default=None, min_length=1)
    resources: Resources | None = None
    size_classes: dict[str, Resources] | None = Field(default=None, min_length=1)
    # The bigger CPU class of a job with `resources`: after an out-of-memory exit (3) the
    # workflow submits the same job definition once more with these resourceRequirements
    # (SubmitJob containerOverrides). Terraform does not read it: it makes no job definition.
    escalation: Resources | None = None
    timeout_seconds: int = Field(gt=0)
    retry: RetrySpec
    _name: str = PrivateAttr(default="")

    @model_validator(mode="after")
    def _shape(self) -> JobSpec:
        if (self.resources is None) == (self.size_classes is None):
            raise ValueError("a job declares exactly one of `resources` or `size_classes`")
        if (self.queue is None) == (self.queue_by_size_class is None):
            raise ValueError("a job declares exactly one of `queue` or `queue_by_size_class`")
        if (self.size_classes is None) != (self.queue_by_size_class is None):
            # Terraform (modules/batch) picks both by whether the job has size_classes.
            raise ValueError("a job with `size_classes` routes by `queue_by_size_class`; one with `resources` "
                             "names a `queue`")
        if self.escalation is not None and (self.resources is None or self.escalation.gpus
                                            or self.escalation.vcpu < self.resources.vcpu
                                            or self.escalation.memory_mib <= self.resources.memory_mib):
            raise ValueError("`escalation` is a bigger CPU class of a job with `resources`: no GPUs, at least its "
                             "vCPUs, more memory")
        refs = {a[5:] for a in self.command if a.startswith("Ref::")}
        if refs - set(self.parameters):
            raise ValueError(f"command uses undeclared parameters: {sorted(refs - set(self.parameters))}")
        return self

    @property
    def name(self) -> str:
        """The job's key under ``jobs`` (set by :class:`JobsFile`)."""
        return self._name

    def definition_names(self) -> list[tuple[str, str | None]]:
        """(job, size class) per job definition: one per size class, else (job, None)."""
        if self.size_classes is not None:
            return [(self.name, size_class) for size_class in self.size_classes]
        return [(self.name, None)]

    def resources_for(self, size_class: str | None = None) -> Resources:
        """The resources of the job definition for ``size_class`` (ignored by jobs without size classes)."""
        return self._for_size_class(self.resources, self.size_classes, size_class, "size class")

    def queue_for(self, size_class: str | None = None) -> str:
        """The queue key the job (in ``size_class``, for jobs routed by size class) runs on."""
        return self._for_size_class(self.queue, self.queue_by_size_class, size_class, "queue for size class")

    def _for_size_class(self, one: _T | None, per_class: dict[str, _T] | None, size_class: str | None,
                        what: str) -> _T:
        """``one`` for a job without size classes, else ``per_class[size_class]`` (``_shape``
        makes sure a job has exactly one of the two)."""
        if per_class is None:
            assert one is not None
            return one
        if size_class not in per_class:
            raise KeyError(f"job {self.name!r} has no {what} {size_class!r}")
        return per_class[size_class]


class SizeClassSpec(BaseModel):
    """One entry of ``size_classes``: the upper bounds of what a class holds, and the GPU
    memory its GPU jobs need (the cost estimate and Terraform's ``modules/config`` read it).

    A class declares its own bounds, one kind per workflow: fold's follow the target
    (``max_residues`` and ``max_chains``, :class:`foldstack.core.targets.SizeClass`),
    cryoem's the particle box (``max_box_px``). Validate Input gives a run (fold: a target)
    the first class, in declaration order, whose bounds hold it."""

    model_config = _STRICT
    max_residues: int | None = Field(default=None, gt=0)
    max_chains: int | None = Field(default=None, gt=0)
    max_box_px: int | None = Field(default=None, gt=0)
    gpu_memory_gib: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_kind_of_bounds(self) -> SizeClassSpec:
        kinds = [k for k, fields in BOUND_KINDS.items() if any(getattr(self, f) is not None for f in fields)]
        if len(kinds) != 1:
            raise ValueError("a size class declares one kind of bounds: max_residues + max_chains (targets) or "
                             "max_box_px (particle box)")
        missing = [f for f in BOUND_KINDS[kinds[0]] if getattr(self, f) is None]
        if missing:
            raise ValueError(f"a size class bounded by {kinds[0]} needs {' and '.join(missing)}")
        return self

    @property
    def bounds(self) -> str:
        """Which kind of bounds it declares: ``target`` or ``box``."""
        return next(k for k, fields in BOUND_KINDS.items() if getattr(self, fields[0]) is not None)

    def target_limits(self) -> SizeClass:
        """The class as fold's target bounds (``core.targets.SizeClass``)."""
        if self.bounds != "target":
            raise ValueError("this size class bounds the particle box, not targets")
        return SizeClass(max_residues=self.max_residues, max_chains=self.max_chains,  # type: ignore[arg-type]
                         **({"gpu_memory_gib": self.gpu_memory_gib} if self.gpu_memory_gib is not None else {}))


#: The kinds of size-class bounds, and the fields each declares (all required together).
BOUND_KINDS: dict[str, tuple[str, ...]] = {"target": ("max_residues", "max_chains"), "box": ("max_box_px",)}


class QueueSpec(BaseModel):
    """One entry of ``queues``: a Batch job queue and its compute environment."""

    model_config = _STRICT
    tier: Literal["cpu", "gpu"]
    purchase: Literal["spot", "on_demand"]
    size_class: str | None = None


class JobsFile(BaseModel):
    """``statemachines/<workflow>/jobs.yaml``."""

    model_config = _STRICT
    schema_version: Literal[1]
    workflow: str
    queues: dict[str, QueueSpec]
    size_classes: dict[str, SizeClassSpec]
    exit_codes: dict[str, int]
    jobs: dict[str, JobSpec]
    _source: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _references(self) -> JobsFile:
        if len({c.bounds for c in self.size_classes.values()}) > 1:
            raise ValueError("size_classes mix kinds of bounds (max_residues/max_chains and max_box_px): "
                             "one kind per workflow")
        for name, job in self.jobs.items():
            job._name = name
            used = [job.queue, job.fallback_queue, *(job.queue_by_size_class or {}).values()]
            unknown = [q for q in used if q is not None and q not in self.queues]
            if unknown:
                raise ValueError(f"job {name!r} uses unknown queues {unknown}")
            for mapping in (job.queue_by_size_class, job.size_classes):
                if mapping is not None and set(mapping) != set(self.size_classes):
                    raise ValueError(f"job {name!r} must cover exactly the size classes {list(self.size_classes)}")
        return self

    @classmethod
    def load(cls, path: Path | str) -> JobsFile:
        """Read and validate a jobs.yaml file (pydantic.ValidationError if malformed)."""
        source = Path(path)
        model = cls.model_validate(yaml.safe_load(source.read_text()))
        model._source = source
        return model

    @property
    def source(self) -> Path | None:
        """The file :meth:`load` read, if any."""
        return self._source


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
        return JobsFile.load(self.directory / "jobs.yaml")

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
