"""Validate Input: check the request and its FASTA; return the normalised targets."""

from foldstack.tasks.runtime import require, task_handler
from foldstack.tasks.validate import validate_run


@task_handler("validate_input")
def handler(event, settings):
    require(event, "run_id", "request")
    request, _, targets, run_id = validate_run(
        event["request"],
        allowed_input_prefixes=settings.allowed_input_prefixes,
        allowed_output_prefixes=settings.allowed_output_prefixes,
        size_classes=settings.size_classes,
        limits=settings.limits,
        run_id=event["run_id"],
    )
    return {
        "run_id": run_id,
        "targets": [t.model_dump() for t in targets],
        "n_targets": len(targets),
        "needs_msa": request.needs_msa,
    }
