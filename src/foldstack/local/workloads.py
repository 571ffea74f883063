"""What local mode needs to know about the workflow it runs, beyond its folder.

Fold's submission (FASTA validation, targets, batch layout) is :mod:`foldstack.local.runner`'s
own; another registered workload's task module (``statemachines/workloads.yaml`` ``tasks``)
provides ``prepare_local(request, output=, inputs_dir=)`` -> (request as submitted, run id,
the ids its Map iterates over), and its request model parses recorded requests.
"""

from __future__ import annotations

from typing import Any

from foldstack.core.errors import InputValidationError
from foldstack.core.request import RunRequest
from foldstack.workflows.registry import get_workload, load_registry
from foldstack.workflows.specs import Workflow, load_workflow


def tasks_module(workflow: Workflow) -> Any:
    """The task module of a registered workload that has one (None: fold's own submission,
    also for a workflow folder the registry does not name, e.g. a test's copy of fold)."""
    workload = load_registry().get(workflow.name)
    module = workload.tasks_module() if workload is not None else None
    if module is not None and not hasattr(module, "prepare_local"):
        raise InputValidationError(f"workflow {workflow.name!r} cannot run locally: {module.__name__} has no "
                                   "prepare_local", code="invalid_request")
    return module


def parse_request(workflow: Workflow, tasks: Any, raw: Any) -> Any:
    """A recorded request as the workflow's request model."""
    if tasks is None:
        return RunRequest.model_validate(raw)
    return get_workload(workflow.name).request_class().model_validate(raw)


def lambda_size_classes(workflow: Workflow) -> dict[str, Any]:
    """FOLDSTACK_SIZE_CLASSES of the Lambdas: fold's size classes whichever workflow runs
    (one deployment serves them all); another workflow's come in its events."""
    classes = workflow.jobs.size_classes
    if not classes or any(c.bounds != "target" for c in classes.values()):  # TaskSettings needs fold's
        classes = load_workflow("fold", workflow.directory.parent).jobs.size_classes
    return {k: v.model_dump(exclude_none=True) for k, v in classes.items()}
