"""Validate Input: check the request and its FASTA; return the normalised targets.

The targets go back in the state only up to `state_targets_max` (knobs.yaml, in the
event); above it only their count and digest do (Step Functions state is at most 256 KB),
and later tasks read the list Stage Inputs writes to scratch. Without the knob (older
definitions) every target goes back, as before."""

from foldstack.core.errors import InputValidationError
from foldstack.core.targets import targets_digest
from foldstack.tasks.runtime import require, task_handler
from foldstack.tasks.validate import validate_run


@task_handler("validate_input")
def handler(event, settings):
    require(event, "run_id", "request")
    limit = event.get("state_targets_max")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InputValidationError("state_targets_max must be a non-negative integer", code="malformed_event")
    request, _, targets, run_id = validate_run(
        event["request"],
        allowed_input_prefixes=settings.allowed_input_prefixes,
        allowed_output_prefixes=settings.allowed_output_prefixes,
        size_classes=settings.size_classes,
        limits=settings.limits,
        run_id=event["run_id"],
    )
    in_state = limit is None or len(targets) <= limit
    return {
        "run_id": run_id,
        "targets": [t.model_dump() for t in targets] if in_state else None,
        "targets_digest": targets_digest(targets),
        "n_targets": len(targets),
        "needs_msa": request.needs_msa,
    }
