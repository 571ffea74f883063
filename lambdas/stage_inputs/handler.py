"""Stage Inputs: copy the validated inputs into the run's scratch prefix."""

from foldstack.tasks.runtime import require, task_handler
from foldstack.tasks.stage import stage_inputs


@task_handler("stage_inputs")
def handler(event, settings):
    require(event, "run_id", "request", "targets")
    return stage_inputs(settings, event["run_id"], event["request"], event["targets"])
