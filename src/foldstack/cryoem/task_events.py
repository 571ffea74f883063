"""The cryoem workflow's Lambda task contracts: one event and one result model per task.

The same four shared Lambdas run them (``lambdas/<name>/handler.py``): an event whose
``workflow`` is ``cryoem`` is dispatched to :mod:`foldstack.cryoem.tasks`
(:mod:`foldstack.workflows.dispatch`), which parses it into these models. The rendered
``statemachines/rendered/cryoem.asl.json`` is the other side of each contract
(tests/workflows/test_task_contracts.py). Events forbid unknown keys, like fold's.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from foldstack.tasks.events import CleanupEventFields, Contract

WORKFLOW = "cryoem"
Count = Annotated[int, Field(ge=0)]
BatchId = Annotated[str, Field(pattern=r"^batch-[0-9]{3,}$")]


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _CryoemEvent(_Contract):
    """What every cryoem task gets: the run, its request as submitted, and the workflow
    (the key the shared Lambdas dispatch on)."""

    workflow: Literal["cryoem"]
    run_id: str
    request: dict[str, Any]


class ValidateInputEvent(_CryoemEvent):
    #: jobs.yaml `size_classes` as [name, max_box_px] in declaration order (rendered into
    #: the definition: the Lambdas' environment holds fold's classes)
    size_classes: list[tuple[str, Annotated[int, Field(gt=0)]]] = Field(min_length=1)


class ValidateInputResult(_Contract):
    run_id: str
    n_movies: Count
    batches: list[BatchId] = Field(min_length=1)  # the preprocessing Map's items
    size_class: str  # the GPU steps' job definition and queue
    has_reference: bool  # refinement starts from the request's reference
    bias_guard: bool  # ... and is re-run from a second start to compare
    guard_denovo: bool = False  # ... that second start de novo (knob guard_denovo), not the reference filtered harder


class StageInputsEvent(_CryoemEvent):
    pass


class StageInputsResult(_Contract):
    scratch: str
    staged: Count  # movies
    cache_root: str = ""  # the preprocessing cache for the preprocess jobs ("": none)


class CollectOutputsEvent(_CryoemEvent):
    pass


class CollectOutputsResult(_Contract):
    output: str  # <output_uri>/<run_id>: manifest.json written last
    resolution: float  # Å, gold-standard FSC 0.143 after post-processing
    outcome: Literal["succeeded"]
    bias_guard_flagged: bool | None  # None: no reference, no guard


class CleanupEvent(CleanupEventFields):
    """Fold's Cleanup event shape (:class:`foldstack.tasks.events.CleanupEventFields`:
    the workflow's own, or the stopped-execution rule's), for a cryoem run."""

    workflow: Literal["cryoem"]


class CleanupResult(_Contract):
    run_id: str | None
    scratch_deleted: Count
    partial_outputs_deleted: Count
    kept_targets: Count = 0  # finished stage folders kept for the run's next attempt


CONTRACTS: dict[str, Contract] = {
    "validate_input": Contract(event=ValidateInputEvent, result=ValidateInputResult),
    "stage_inputs": Contract(event=StageInputsEvent, result=StageInputsResult),
    "collect_outputs": Contract(event=CollectOutputsEvent, result=CollectOutputsResult),
    "cleanup": Contract(event=CleanupEvent, result=CleanupResult),
}
