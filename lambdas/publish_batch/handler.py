"""Publish Batch: publish a finished batch's targets (each atomically) and record its
failures; a summary of both goes to scratch for Collect Outputs."""

from foldstack.tasks.events import PublishBatchEvent, PublishBatchResult
from foldstack.tasks.publish_batch import publish_batch
from foldstack.tasks.runtime import task_handler
from foldstack.tasks.settings import TaskSettings


@task_handler("publish_batch")
def handler(event: PublishBatchEvent, settings: TaskSettings) -> PublishBatchResult:
    return PublishBatchResult.model_validate(publish_batch(
        settings, event.run_id, event.request, event.batch.model_dump(mode="json"),
        [o.model_dump(mode="json") for o in event.msa], event.predict.model_dump(mode="json")))
