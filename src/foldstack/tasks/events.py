"""The Lambda tasks' contracts: one model per task for its event and one for its result.

The workflow definitions (``statemachines/rendered/*.asl.json``) are the other side of
these contracts: each Lambda Task state's ``Payload`` must name exactly the fields of its
task's event model, and its ``ResultSelector`` only fields of the result model
(tests/workflows/test_task_contracts.py checks every state). Events forbid unknown keys,
so a key renamed on one side fails loudly instead of silently arriving as a default.

``@task_handler`` (:mod:`foldstack.tasks.runtime`) parses each event into its model and
dumps the returned result model to JSON; ``CONTRACTS`` says which models a task uses.

This module runs inside the Lambda zips: it may import only pydantic and ``foldstack.core``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator
from pydantic_core import PydanticCustomError

from foldstack.core.runid import run_id_of
from foldstack.core.targets import Target

__all__ = [
    "CONTRACTS",
    "Batch",
    "BatchManifest",
    "BatchTarget",
    "CleanupEvent",
    "CleanupResult",
    "CollectOutputsEvent",
    "CollectOutputsResult",
    "Contract",
    "MsaCacheEvent",
    "MsaCacheResult",
    "MsaOutcome",
    "PlanBatchesEvent",
    "PlanBatchesResult",
    "PredictOutcome",
    "PublishBatchEvent",
    "PublishBatchResult",
    "StageInputsEvent",
    "StageInputsResult",
    "Target",
    "TargetsEvent",
    "ValidateInputEvent",
    "ValidateInputResult",
]

#: sha256 of the canonical target list (:func:`foldstack.core.targets.targets_digest`).
Digest = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
#: A JSON object (the run request as the execution input carries it); the task functions
#: parse it into a RunRequest themselves, with their own error codes.
JsonObject = dict[str, Any]
Count = Annotated[int, Field(ge=0)]


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- shared pieces -------------------------------------------------------------------------


class TargetsEvent(_Contract):
    """An event that carries Validate Input's target list or, for runs above
    ``state_targets_max``, only its digest (the task then reads the list Stage Inputs
    staged and checks it against the digest). One of the two must be there."""

    targets: list[Target] | None = None
    targets_digest: Digest | None = None

    @model_validator(mode="after")
    def _targets_or_digest(self) -> TargetsEvent:
        if self.targets is None and self.targets_digest is None:
            # "event_message": the whole message, used as is by the handler's error
            raise PydanticCustomError("event_message", "event is missing targets (or targets_digest)")
        return self

    def target_dicts(self) -> list[dict[str, Any]] | None:
        """``targets`` as the plain dicts the task functions take (None: use the digest)."""
        return None if self.targets is None else [t.model_dump(mode="json") for t in self.targets]


class BatchTarget(_Contract):
    """One target of a Plan Batches batch: what the per-target MSA cache lookup gets."""

    id: str
    sha256: str
    length: int
    chains: int


class Batch(_Contract):
    """One Predict job: ``target_ids`` (comma-joined) is its ``target`` parameter."""

    batch: str
    size_class: str
    target_ids: str
    targets: list[BatchTarget]


class BatchManifest(_Contract):
    """Where a Distributed Map's ItemReader finds the batches (S3 Bucket/Key; locally the
    scratch directory and the path under it)."""

    bucket: str
    key: str


# -- validate_input ------------------------------------------------------------------------


class ValidateInputEvent(_Contract):
    run_id: str
    request: JsonObject
    #: knobs.yaml: above this many targets only their count and digest go back in the
    #: state (Step Functions state is at most 256 KB); absent: every target goes back.
    state_targets_max: Annotated[StrictInt, Field(ge=0)] | None = None


class ValidateInputResult(_Contract):
    run_id: str
    targets: list[Target] | None  # None above state_targets_max
    targets_digest: Digest
    n_targets: Count
    needs_msa: bool


# -- stage_inputs --------------------------------------------------------------------------


class StageInputsEvent(TargetsEvent):
    run_id: str
    request: JsonObject


class StageInputsResult(_Contract):
    scratch: str
    staged: Count
    #: the MSA cache the run's chain search phase fills ("" when reuse_msa is off, no MSA is
    #: needed, or no cache is configured: the phase keeps its results in the run's scratch)
    msa_cache_root: str = ""


# -- msa_cache -----------------------------------------------------------------------------


class MsaCacheEvent(_Contract):
    run_id: str
    request: JsonObject
    target: BatchTarget


class MsaCacheResult(_Contract):
    hit: bool
    reason: str
    #: where the Msa job looks for per-chain entries on a miss ("" when there is no cache)
    cache_root: str
    db_version: str | None = None


# -- plan_batches --------------------------------------------------------------------------


class PlanBatchesEvent(TargetsEvent):
    run_id: str
    max_targets_per_job: Annotated[StrictInt, Field(ge=1)]
    bulk_threshold: Annotated[StrictInt, Field(ge=0)]


class PlanBatchesResult(_Contract):
    n_targets: Count
    n_batches: Count
    mode: Literal["inline", "distributed"]
    batches: list[Batch]  # empty in distributed mode: they are in the manifest
    manifest: BatchManifest | None  # None in inline mode


# -- publish_batch -------------------------------------------------------------------------


class MsaOutcome(_Contract):
    """One target's end of the per-target MSA iteration: ``{"target"}`` when its MSA is
    there, plus ``failed`` (the target again, which the workflow collects for Predict's
    ``--skip``), ``error`` and ``cause`` (the Catch's: a Batch job description as JSON for a
    failed job) when it failed."""

    target: str
    failed: str | None = None
    error: str | None = None
    cause: str | None = None


class PredictOutcome(_Contract):
    """How the batch's Predict job ended: ``failed`` with the Catch's ``error``/``cause``
    (after any escalation), or not (``skipped``: every target's MSA failed, no job ran)."""

    failed: bool
    skipped: bool = False
    error: str | None = None
    cause: str | None = None


class PublishBatchEvent(_Contract):
    run_id: str
    request: JsonObject
    batch: Batch
    msa: list[MsaOutcome] = []  # empty for ESMFold (no MSA step)
    predict: PredictOutcome


class PublishBatchResult(_Contract):
    published: Count  # targets of the batch published (now or by an earlier attempt)
    failed: Count  # targets of the batch recorded as failed
    summary: str  # where the batch's summary is (scratch), for Collect Outputs


# -- collect_outputs -----------------------------------------------------------------------


class CollectOutputsEvent(TargetsEvent):
    run_id: str
    request: JsonObject
    #: knobs.yaml failure_budget.max_failed_fraction: the budget of a request that sets none
    max_failed_fraction: Annotated[float, Field(ge=0, le=1)] | None = None


class CollectOutputsResult(_Contract):
    output: str  # <output_uri>/<run_id>
    targets: Count  # how many targets were published
    failed: Count = 0  # how many failed (failures.tsv)
    outcome: Literal["succeeded", "partial", "failed"] = "succeeded"


# -- cleanup -------------------------------------------------------------------------------


class CleanupEventFields(_Contract):
    """What every workflow's Cleanup event holds (fold's :class:`CleanupEvent`, and the
    other workloads' subclasses). Cleanup runs on every failure, including runs whose
    input never validated, so it takes whatever the execution input held: a run id that
    is no string cleans nothing, and a request that does not parse means no published
    results are touched.

    Two shapes: the workflow's own (``run_id``, ``request``, ``failed``), and the one the
    EventBridge rule on an ABORTED or TIMED_OUT execution sends through its input
    transformer (``execution_name``, ``status``, ``stopped_at``, ``failed``; no request).
    There the run id is the execution name without its attempt suffix
    (:func:`foldstack.core.runid.run_id_of`), and scratch written after ``stopped_at``
    belongs to a newer attempt and is left alone."""

    run_id: str | None
    request: Any = None
    failed: bool = False
    execution_name: str | None = None  # the EventBridge shape: the stopped execution,
    status: str | None = None  # its status (ABORTED, TIMED_OUT)
    stopped_at: Annotated[StrictInt, Field(ge=0)] | None = None  # and its stopDate (epoch ms)

    @model_validator(mode="before")
    @classmethod
    def _run_id_from_execution_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "run_id" not in data and "execution_name" in data:
            name = data["execution_name"]
            return {**data, "run_id": run_id_of(name) if isinstance(name, str) else None}
        return data

    @field_validator("run_id", mode="before")
    @classmethod
    def _malformed_run_id_is_none(cls, value: Any) -> Any:
        return value if isinstance(value, str) else None


class CleanupEvent(CleanupEventFields):
    """Fold's Cleanup event (:class:`CleanupEventFields`), and whether to keep the
    finished targets."""

    #: keep the finished targets' step outputs (default: `failed`); a partial run's cleanup
    #: keeps them so its retry recomputes only the failed targets
    keep_finished: bool | None = None


class CleanupResult(_Contract):
    run_id: str | None  # None: the run id was malformed and nothing was deleted
    scratch_deleted: Count
    partial_outputs_deleted: Count
    #: finished targets' step folders kept in scratch for the run's next attempt (failure paths)
    kept_targets: Count = 0


# -- the registry --------------------------------------------------------------------------


@dataclass(frozen=True)
class Contract:
    """The event and result models of one task (``lambdas/<name>/``)."""

    event: type[BaseModel]
    result: type[BaseModel]


CONTRACTS: dict[str, Contract] = {
    "validate_input": Contract(event=ValidateInputEvent, result=ValidateInputResult),
    "stage_inputs": Contract(event=StageInputsEvent, result=StageInputsResult),
    "msa_cache": Contract(event=MsaCacheEvent, result=MsaCacheResult),
    "plan_batches": Contract(event=PlanBatchesEvent, result=PlanBatchesResult),
    "publish_batch": Contract(event=PublishBatchEvent, result=PublishBatchResult),
    "collect_outputs": Contract(event=CollectOutputsEvent, result=CollectOutputsResult),
    "cleanup": Contract(event=CleanupEvent, result=CleanupResult),
}
