"""Cleanup: delete the run's scratch; on failure also any unfinished results."""

from foldstack.tasks.cleanup import cleanup
from foldstack.tasks.runtime import require, task_handler


@task_handler("cleanup")
def handler(event, settings):
    require(event, "run_id")
    return cleanup(settings, event["run_id"], event.get("request"), failed=bool(event.get("failed")))
