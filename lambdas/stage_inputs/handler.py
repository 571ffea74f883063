"""Stage Inputs: copy the validated inputs into the run's scratch prefix."""

from foldstack.tasks.events import StageInputsEvent, StageInputsResult
from foldstack.tasks.runtime import task_handler
from foldstack.tasks.settings import TaskSettings
from foldstack.tasks.stage import stage_inputs
from foldstack.workflows.dispatch import dispatching


@task_handler("stage_inputs")
def fold_handler(event: StageInputsEvent, settings: TaskSettings) -> StageInputsResult:
    # Validate Input's `targets` (small runs) or only their `targets_digest` (large runs).
    return StageInputsResult.model_validate(stage_inputs(
        settings, event.run_id, event.request, event.target_dicts(), digest=event.targets_digest))


# An event naming another workflow (`workflow`) goes to that workload's task (workloads.yaml).
handler = dispatching("stage_inputs", fold_handler)
