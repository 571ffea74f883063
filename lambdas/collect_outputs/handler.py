"""Collect Outputs: from the per-batch summaries, the run's summary.tsv, failures.tsv,
index.html and manifest.json (last); applies the failure budget."""

from foldstack.tasks.collect import collect_outputs
from foldstack.tasks.events import CollectOutputsEvent, CollectOutputsResult
from foldstack.tasks.runtime import task_handler
from foldstack.tasks.settings import TaskSettings
from foldstack.workflows.dispatch import dispatching


@task_handler("collect_outputs")
def fold_handler(event: CollectOutputsEvent, settings: TaskSettings) -> CollectOutputsResult:
    # `targets` (small runs) or, when the state carries none, `targets_digest`: the list is
    # then read from scratch (input/targets.json) and checked against it.
    return CollectOutputsResult.model_validate(collect_outputs(
        settings, event.run_id, event.request, event.target_dicts(), targets_digest=event.targets_digest,
        max_failed_fraction=event.max_failed_fraction))


# An event naming another workflow (`workflow`) goes to that workload's task (workloads.yaml).
handler = dispatching("collect_outputs", fold_handler)
