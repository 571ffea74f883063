"""Cleanup: delete the run's scratch (keeping finished targets on a failure path); on
failure also any unfinished results. Invoked by the workflow, and by the EventBridge rule
on an ABORTED or TIMED_OUT execution (the event's run id comes from the execution name)."""

from foldstack.tasks.cleanup import cleanup
from foldstack.tasks.events import CleanupEvent, CleanupResult
from foldstack.tasks.runtime import task_handler
from foldstack.tasks.settings import TaskSettings
from foldstack.workflows.dispatch import dispatching


@task_handler("cleanup")
def fold_handler(event: CleanupEvent, settings: TaskSettings) -> CleanupResult:
    extra: dict = {"stopped_at": event.stopped_at / 1000} if event.stopped_at is not None else {}  # (epoch ms)
    if event.keep_finished is not None:  # a partial run: its retry reuses the finished targets
        extra["keep_finished"] = event.keep_finished
    return CleanupResult.model_validate(cleanup(settings, event.run_id, event.request, failed=event.failed,
                                                **extra))


# An event naming another workflow (`workflow`) goes to that workload's task (workloads.yaml).
handler = dispatching("cleanup", fold_handler)
