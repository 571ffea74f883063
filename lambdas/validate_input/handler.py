"""Validate Input: check the request and its FASTA; return the normalised targets.

The targets go back in the state only up to `state_targets_max` (knobs.yaml, in the
event); above it only their count and digest do (Step Functions state is at most 256 KB),
and later tasks read the list Stage Inputs writes to scratch. Without the knob (older
definitions) every target goes back, as before."""

from foldstack.core.targets import targets_digest
from foldstack.tasks.events import ValidateInputEvent, ValidateInputResult
from foldstack.tasks.runtime import task_handler
from foldstack.tasks.settings import TaskSettings
from foldstack.tasks.validate import validate_run
from foldstack.workflows.dispatch import dispatching


@task_handler("validate_input")
def fold_handler(event: ValidateInputEvent, settings: TaskSettings) -> ValidateInputResult:
    request, _, targets, run_id = validate_run(
        event.request,
        allowed_input_prefixes=settings.allowed_input_prefixes,
        allowed_output_prefixes=settings.allowed_output_prefixes,
        size_classes=settings.size_classes,
        limits=settings.limits,
        run_id=event.run_id,
    )
    limit = event.state_targets_max
    return ValidateInputResult(
        run_id=run_id,
        targets=targets if limit is None or len(targets) <= limit else None,
        targets_digest=targets_digest(targets),
        n_targets=len(targets),
        needs_msa=request.needs_msa,
    )


# An event naming another workflow (`workflow`) goes to that workload's task (workloads.yaml).
handler = dispatching("validate_input", fold_handler)
