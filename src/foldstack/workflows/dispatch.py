"""The shared Lambdas' dispatch on the event's ``workflow``.

Every workflow's Validate Input, Stage Inputs, Collect Outputs and Cleanup states invoke
the same four Lambdas (one deployment, one IAM role each). An event without ``workflow``
(or with ``fold``) goes to fold's handler, unchanged; any other names a registered
workload (``statemachines/workloads.yaml``) whose ``tasks`` module holds ``HANDLERS``,
its Lambda handlers by Lambda name (and ``CONTRACTS``, their event and result models).
An unknown workflow, or one without that task, is an InputValidationError naming it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from foldstack.core.errors import InputValidationError
from foldstack.workflows.registry import DEFAULT_WORKFLOW, get_workload

LambdaHandler = Callable[[Any, Any], dict[str, Any]]


def workload_handler(task: str, workflow: str) -> LambdaHandler | None:
    """The handler of `task` for `workflow`; None: fold's (the workload has no task module)."""
    module = get_workload(workflow).tasks_module()
    if module is None:
        return None
    handlers: Mapping[str, LambdaHandler] = getattr(module, "HANDLERS", {})
    if task not in handlers:
        raise InputValidationError(f"workflow {workflow!r} has no {task} task", code="malformed_event")
    return handlers[task]


def dispatching(task: str, fold_handler: LambdaHandler) -> LambdaHandler:
    """`fold_handler` (a ``@task_handler``), dispatching on the event's ``workflow`` first.
    Keeps the fold handler's ``contract`` and signature for whoever inspects it."""

    @functools.wraps(fold_handler)
    def handler(event: Any, context: Any = None) -> dict[str, Any]:
        workflow = event.get("workflow") if isinstance(event, Mapping) else None
        if workflow is None:
            return fold_handler(event, context)
        if not isinstance(workflow, str):
            raise InputValidationError("event field workflow: expected a workflow name", code="malformed_event")
        other = workload_handler(task, workflow) if workflow != DEFAULT_WORKFLOW else None
        if other is None:
            return fold_handler({k: v for k, v in event.items() if k != "workflow"}, context)
        return other(event, context)

    return handler
