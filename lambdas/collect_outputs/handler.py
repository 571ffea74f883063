"""Collect Outputs: verify step outputs and publish them with manifest.json last."""

from foldstack.core.errors import InputValidationError
from foldstack.tasks.collect import collect_outputs
from foldstack.tasks.runtime import require, task_handler


@task_handler("collect_outputs")
def handler(event, settings):
    # `targets` (small runs) or, when the state carries none, `targets_digest`: the list is
    # then read from scratch (input/targets.json) and checked against it.
    require(event, "run_id", "request")
    if event.get("targets") is None and not event.get("targets_digest"):
        raise InputValidationError("event is missing targets (or targets_digest)", code="malformed_event")
    return collect_outputs(settings, event["run_id"], event["request"], event.get("targets"),
                           targets_digest=event.get("targets_digest"))
