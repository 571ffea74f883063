"""MSA cache lookup: on a hit, put the cached alignment and features in scratch so the
workflow can skip the MSA job for this target."""

from foldstack.tasks.msa_cache import lookup
from foldstack.tasks.runtime import require, task_handler
from foldstack.tasks.validate import parse_request


@task_handler("msa_cache")
def handler(event, settings):
    require(event, "run_id", "request", "target")
    request = parse_request(event["request"]).model_dump(mode="json")
    return lookup(settings, event["run_id"], request, event["target"])
