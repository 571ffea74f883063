"""Cleanup: delete the run's scratch; on failure also any unfinished results."""

from foldstack.tasks.cleanup import cleanup
from foldstack.tasks.events import CleanupEvent, CleanupResult
from foldstack.tasks.runtime import task_handler
from foldstack.tasks.settings import TaskSettings


@task_handler("cleanup")
def handler(event: CleanupEvent, settings: TaskSettings) -> CleanupResult:
    return CleanupResult.model_validate(cleanup(settings, event.run_id, event.request, failed=event.failed))
