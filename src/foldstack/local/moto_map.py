"""The Distributed Map: its S3 ItemReader on local files, and its tolerated-failure threshold.

Parsing retypes these moto components:

* the ``ItemReader`` S3 reader (``ResourceEvalS3``) -> :class:`LocalItemReaderS3`, which
  asks the engine to resolve ``Bucket``/``Key`` (or ``Prefix``) to local files;
* ``DistributedItemProcessor`` / ``DistributedIterator`` -> :class:`LocalDistributedItemProcessor`
  / :class:`LocalDistributedIterator`, whose Map Run enforces ToleratedFailureCount/
  Percentage (see :func:`_tolerant_map_run`) and keeps the child executions' events out of
  the parent's history (``moto_history.ChildEventManager``).
"""

from __future__ import annotations

from typing import Any

from moto.stepfunctions.parser.api import HistoryEventType, MapRunFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
    StatesErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval.resource_eval_s3 import (
    ResourceEvalS3,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor.distributed_item_processor import (  # noqa: E501
    DistributedItemProcessor,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.iterator.distributed_iterator import (
    DistributedIterator,
)
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

from foldstack.local.moto_history import ChildEventManager
from foldstack.local.moto_hooks import hooks_of, run_of

# --------------------------------------------------------------------------- ItemReader


class LocalItemReaderS3(ResourceEvalS3):
    """Distributed Map ItemReader (`s3:getObject`, `s3:listObjectsV2`) on local files."""

    def eval_resource(self, env: Environment) -> None:
        self.resource.eval(env=env)
        env.stack.pop()  # ResourceRuntimePart
        hooks = hooks_of(env)
        parameters = env.stack.pop()
        action = self.resource.api_action.lower()
        try:
            if action == "getobject":
                value: Any = hooks.read_s3_object(parameters["Bucket"], parameters["Key"])
            elif action == "listobjectsv2":
                value = hooks.list_s3_objects(parameters["Bucket"], parameters.get("Prefix", ""))
            else:
                raise ValueError(f"ItemReader action {self.resource.api_action!r} is not supported locally")
        except (OSError, KeyError, ValueError) as err:
            raise _map_failure(env, StatesErrorNameType.StatesItemReaderFailed, HistoryEventType.TaskFailed,
                               f"{type(err).__name__}: {err}") from err
        env.stack.append(value)


def _map_failure(env: Environment, error: StatesErrorNameType, event_type: HistoryEventType,
                 cause: str) -> FailureEventException:
    """A Map Run failure as moto's interpreter raises one: a States error with its cause."""
    error_name = StatesErrorName(typ=error)
    return FailureEventException(
        failure_event=FailureEvent(
            env=env,
            error_name=error_name,
            event_type=event_type,
            event_details=EventDetails(
                mapRunFailedEventDetails=MapRunFailedEventDetails(error=error_name.error_name, cause=cause)
            ),
        )
    )


# --------------------------------------------------------------------------- Distributed Map


def _tolerant_map_run(self, base: type, env: Environment, eval_input: Any) -> None:
    """moto parses ToleratedFailurePercentage/Count but ignores them (a failed item is
    just a null result). Enforce them as AWS does: the Map Run fails with
    States.ExceedToleratedFailureThreshold when failed items exceed the threshold
    (no threshold declared: any failed item). Child executions' events stay out of the
    parent's history, as on AWS, but a States.Runtime in a child is still fatal."""
    run = run_of(env)
    if run is not None:
        env.event_manager = ChildEventManager(run)
    base._map_run(self, env=env, eval_input=eval_input)
    counter = eval_input.map_run_record.item_counter
    total = counter.total.get()
    failed = counter.failed.get() + counter.timed_out.get() + counter.aborted.get()
    count = float(eval_input.tolerated_failure_count or 0)
    percentage = float(eval_input.tolerated_failure_percentage or 0.0)
    if count <= 0 and percentage <= 0:
        exceeded = failed > 0
    else:
        exceeded = (count > 0 and failed > count) or (
            percentage > 0 and total > 0 and 100.0 * failed / total > percentage
        )
    if exceeded:
        raise _map_failure(
            env, StatesErrorNameType.StatesExceedToleratedFailureThreshold, HistoryEventType.MapRunFailed,
            f"The specified tolerated failure threshold was exceeded: {failed} of {total} items failed "
            f"(ToleratedFailurePercentage {percentage:g}, ToleratedFailureCount {count:g})",
        )


class LocalDistributedItemProcessor(DistributedItemProcessor):
    def _map_run(self, env, eval_input):
        _tolerant_map_run(self, DistributedItemProcessor, env, eval_input)


class LocalDistributedIterator(DistributedIterator):
    def _map_run(self, env, eval_input):
        _tolerant_map_run(self, DistributedIterator, env, eval_input)
