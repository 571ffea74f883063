"""A Batch task's step name, from the job it submits and the workflow's ``jobs.yaml``.

A run's history names states (``Predict_small``, ``Refine3D``), and state names are each
template's own choice; the jobs they submit are the workflow's contract. So a Batch task's
step is read from its SubmitJob parameters (the ``TaskScheduled`` event):

* the **job**: the job definition (ARN or name, revision dropped) matched against the
  workflow's jobs.yaml entries, each job definition named ``...-<job>[-<size class>]``
  (Terraform: ``<prefix>-<workflow>-<job>``, ``_`` as ``-``; local: ``foldstack-local-<job>``);
* the **step**: what the job runs, ``foldstack step [<workflow>] <step> ...`` (the
  container's command override, else the job's jobs.yaml command), a ``Ref::<name>`` step
  taken from the submitted parameter (cryoem's ``cryoem_gpu`` job runs
  ``class2d`` / ``initial_model`` / ``refine3d``); a command of another shape: the job's
  name without its ``<workflow>_`` prefix.

Without the workflow's jobs.yaml (a client installed without the repository's
``statemachines/``) nothing resolves and the history keeps the state-name families.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

_REVISION = re.compile(r":\d+$")


@dataclass(frozen=True)
class JobStep:
    step: str  # what the job runs: msa, predict, preprocess, refine3d, ...
    job: str  # the jobs.yaml entry: msa, predict, cryoem_gpu, ...
    size_class: str | None = None


@dataclass(frozen=True)
class _Definition:
    normalised: str  # <job>[-<size class>], "_" as "-"
    job: str
    size_class: str | None
    command: tuple[str, ...]


class StepNames:
    """The job definitions of one workflow, to name its Batch tasks' steps."""

    def __init__(self, workflow: str, definitions: Sequence[_Definition] = ()) -> None:
        self.workflow = workflow
        # longest first: `cryoem-gpu-small` before a job that may be called `small`
        self._definitions = sorted(definitions, key=lambda d: -len(d.normalised))

    @classmethod
    def from_jobs(cls, workflow: str, jobs: Any) -> StepNames:
        """From a :class:`foldstack.workflows.specs.JobsFile`."""
        definitions = []
        for spec in jobs.jobs.values():
            for job, size_class in spec.definition_names():
                name = job if size_class is None else f"{job}-{size_class}"
                definitions.append(_Definition(name.replace("_", "-"), job, size_class, tuple(spec.command)))
        return cls(workflow, definitions)

    def job_of(self, job_definition: str) -> _Definition | None:
        name = job_definition.split(":job-definition/", 1)[-1]
        name = _REVISION.sub("", name).replace("_", "-")
        for d in self._definitions:
            if name == d.normalised or name.endswith("-" + d.normalised):
                return d
        return None

    def resolve(self, parameters: Any) -> JobStep | None:
        """The step of a SubmitJob request (a TaskScheduled event's parameters), or None."""
        if not isinstance(parameters, Mapping) or not isinstance(parameters.get("JobDefinition"), str):
            return None
        d = self.job_of(parameters["JobDefinition"])
        if d is None:
            return None
        overrides = parameters.get("ContainerOverrides")
        command = overrides.get("Command") if isinstance(overrides, Mapping) else None
        values = parameters.get("Parameters")
        step = _step_in(command if isinstance(command, list) else d.command, self.workflow,
                        values if isinstance(values, Mapping) else {})
        return JobStep(step or d.job.removeprefix(f"{self.workflow}_"), d.job, d.size_class)


def _step_in(command: Sequence[Any], workflow: str, values: Mapping[str, Any]) -> str | None:
    """`<step>` of ``foldstack step [<workflow>] <step> ...`` (a ``Ref::`` resolved), else None."""
    words = [str(w) for w in command]
    if len(words) < 3 or words[1] != "step":
        return None
    rest = words[2:]
    if rest[0] == workflow and len(rest) > 1:
        rest = rest[1:]
    word = rest[0]
    if word.startswith("Ref::"):
        value = values.get(word[5:])
        return str(value).lower() if isinstance(value, str) and value else None
    return None if word.startswith("-") else word.lower()


def for_workflow(workflow: str | None) -> StepNames | None:
    """The names of a registered workflow's jobs (None when its jobs.yaml cannot be read)."""
    from foldstack.workflows.specs import find_statemachines_dir

    try:
        root = str(find_statemachines_dir().resolve())
    except OSError:
        return None
    return _load(workflow or "fold", root)


@lru_cache(maxsize=16)
def _load(workflow: str, root: str) -> StepNames | None:
    from foldstack.workflows.specs import load_workflow

    try:
        return StepNames.from_jobs(workflow, load_workflow(workflow, Path(root)).jobs)
    except (OSError, ValueError):
        return None
