"""Plan Batches: pack targets into Predict jobs per size class; pick inline or Distributed
Map fan-out (writing the batch manifest to scratch for the latter)."""

from foldstack.tasks.events import PlanBatchesEvent, PlanBatchesResult
from foldstack.tasks.plan import plan_run
from foldstack.tasks.runtime import task_handler
from foldstack.tasks.settings import TaskSettings
from foldstack.tasks.stage import resolve_targets


@task_handler("plan_batches")
def handler(event: PlanBatchesEvent, settings: TaskSettings) -> PlanBatchesResult:
    # `targets` (small runs) or, when the state carries none, the staged list checked
    # against `targets_digest`.
    targets = resolve_targets(settings, event.run_id, event.target_dicts(), event.targets_digest)
    return PlanBatchesResult.model_validate(plan_run(
        settings, event.run_id, targets, max_per_job=event.max_targets_per_job, bulk_threshold=event.bulk_threshold))
