"""Plan Batches: pack targets into Predict jobs per size class; pick inline or Distributed
Map fan-out (writing the batch manifest to scratch for the latter)."""

from foldstack.core.errors import InputValidationError
from foldstack.tasks.plan import plan_run
from foldstack.tasks.runtime import require, task_handler


@task_handler("plan_batches")
def handler(event, settings):
    require(event, "run_id", "targets", "max_targets_per_job", "bulk_threshold")
    try:
        max_per_job, threshold = int(event["max_targets_per_job"]), int(event["bulk_threshold"])
    except (TypeError, ValueError):
        raise InputValidationError("max_targets_per_job and bulk_threshold must be integers",
                                   code="malformed_event") from None
    return plan_run(settings, event["run_id"], event["targets"], max_per_job=max_per_job,
                    bulk_threshold=threshold)
