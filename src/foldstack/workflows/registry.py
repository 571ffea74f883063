"""The workload registry (``statemachines/workloads.yaml``), read once per process.

One entry per workflow: who submits it, its request model and the module of its Lambda
task functions. Terraform reads the same file (``terraform/envs/_shared``); the models
here are its only Python reading. Import paths are resolved lazily (:meth:`Workload.request_class`,
:meth:`Workload.tasks_module`) so reading the registry never imports a workload's code.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from foldstack.core.errors import InputValidationError
from foldstack.workflows.specs import Workflow, find_statemachines_dir, load_workflow

REGISTRY_FILE = "workloads.yaml"
DEFAULT_WORKFLOW = "fold"
_IMPORT_PATH = r"^[A-Za-z_][A-Za-z0-9_.]*(:[A-Za-z_][A-Za-z0-9_]*)?$"


class Workload(BaseModel):
    """One entry of ``workloads.yaml`` (its key is the workflow's name and folder)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = ""
    submitted_by: Literal["client", "operator"]
    request_model: str | None = Field(default=None, pattern=_IMPORT_PATH)
    tasks: str | None = Field(default=None, pattern=_IMPORT_PATH)
    steps: str | None = Field(default=None, pattern=_IMPORT_PATH)

    def request_class(self) -> type[BaseModel]:
        """The pydantic model of this workload's request (client workloads only)."""
        if self.request_model is None:
            raise InputValidationError(f"workflow {self.name!r} is not submitted by clients", code="invalid_request")
        module, _, attr = self.request_model.partition(":")
        return getattr(importlib.import_module(module), attr)

    def tasks_module(self) -> ModuleType | None:
        """The module of this workload's Lambda task functions (None: the shared fold tasks)."""
        return importlib.import_module(self.tasks) if self.tasks else None

    def steps_app(self) -> Any:
        """The typer app of its step commands (``module:attr``), mounted by the CLI as
        ``foldstack step <name>``; None for a workload whose jobs run other commands."""
        if self.steps is None:
            return None
        module, _, attr = self.steps.partition(":")
        return getattr(importlib.import_module(module), attr or "app")

    def workflow(self, root: Path | None = None) -> Workflow:
        """Its folder: template, jobs.yaml, knobs.yaml."""
        return load_workflow(self.name, root)


def load_registry(root: Path | None = None) -> dict[str, Workload]:
    """Every registered workload, by name, from ``<statemachines>/workloads.yaml``."""
    return dict(_load(str((root or find_statemachines_dir()).resolve())))


@lru_cache(maxsize=8)
def _load(root: str) -> tuple[tuple[str, Workload], ...]:
    data: Any = yaml.safe_load((Path(root) / REGISTRY_FILE).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{Path(root) / REGISTRY_FILE}: expected a mapping of workflow name -> entry")
    return tuple((name, Workload.model_validate({**entry, "name": name})) for name, entry in data.items())


def get_workload(name: str | None = None, root: Path | None = None) -> Workload:
    """The registered workload `name` (default fold); a one-line error naming the known ones."""
    registry = load_registry(root)
    name = name or DEFAULT_WORKFLOW
    if name not in registry:
        raise InputValidationError(f"unknown workflow {name!r}; registered: {', '.join(sorted(registry))}",
                                   code="invalid_request")
    return registry[name]


def client_workflows(root: Path | None = None) -> list[str]:
    """The names of the workloads users submit (sorted)."""
    return sorted(n for n, w in load_registry(root).items() if w.submitted_by == "client")
