"""Plan Batches: pack targets into Predict jobs per size class; pick inline or Distributed
Map fan-out (writing the batch manifest to scratch for the latter)."""

from foldstack.core.errors import InputValidationError
from foldstack.tasks.plan import plan_run
from foldstack.tasks.runtime import require, task_handler
from foldstack.tasks.stage import event_targets


@task_handler("plan_batches")
def handler(event, settings):
    require(event, "run_id", "max_targets_per_job", "bulk_threshold")
    try:
        max_per_job, threshold = int(event["max_targets_per_job"]), int(event["bulk_threshold"])
    except (TypeError, ValueError):
        raise InputValidationError("max_targets_per_job and bulk_threshold must be integers",
                                   code="malformed_event") from None
    # `targets` (small runs) or, when the state carries none, the staged list checked
    # against `targets_digest`.
    if event.get("targets") is None and not event.get("targets_digest"):
        raise InputValidationError("event is missing targets (or targets_digest)", code="malformed_event")
    return plan_run(settings, event["run_id"], event_targets(settings, event), max_per_job=max_per_job,
                    bulk_threshold=threshold)
