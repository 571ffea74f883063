"""MSA cache lookup: on a hit, put the cached alignment and features in scratch so the
workflow can skip the MSA job for this target."""

from foldstack.tasks.events import MsaCacheEvent, MsaCacheResult
from foldstack.tasks.msa_cache import lookup
from foldstack.tasks.runtime import task_handler
from foldstack.tasks.settings import TaskSettings
from foldstack.tasks.validate import parse_request


@task_handler("msa_cache")
def handler(event: MsaCacheEvent, settings: TaskSettings) -> MsaCacheResult:
    request = parse_request(event.request).model_dump(mode="json")
    return MsaCacheResult.model_validate(lookup(settings, event.run_id, request, event.target.model_dump()))
