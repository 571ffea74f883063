"""Stage Inputs: copy the validated inputs into the run's scratch prefix."""

from foldstack.core.errors import InputValidationError
from foldstack.tasks.runtime import require, task_handler
from foldstack.tasks.stage import stage_inputs


@task_handler("stage_inputs")
def handler(event, settings):
    # Validate Input's `targets` (small runs) or only their `targets_digest` (large runs).
    require(event, "run_id", "request")
    if event.get("targets") is None and not event.get("targets_digest"):
        raise InputValidationError("event is missing targets (or targets_digest)", code="malformed_event")
    return stage_inputs(settings, event["run_id"], event["request"], event.get("targets"),
                        digest=event.get("targets_digest"))
