"""Collect Outputs: verify step outputs and publish them with manifest.json last."""

from foldstack.tasks.collect import collect_outputs
from foldstack.tasks.runtime import require, task_handler


@task_handler("collect_outputs")
def handler(event, settings):
    require(event, "run_id", "request", "targets")
    return collect_outputs(settings, event["run_id"], event["request"], event["targets"])
