"""The Batch service task: ``batch:submitJob[.sync]`` served by the engine's local Batch runner.

Parsing retypes every ``StateTaskServiceBatch`` to :class:`LocalBatchTask`, whose
``submitJob`` and ``.sync`` resolver call the engine's Batch runner instead of boto3
(moto's own Batch backend can't serve ``submitJob.sync``: parameters are not normalised).
"""

from __future__ import annotations

from botocore.exceptions import ClientError
from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
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
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_batch import (
    StateTaskServiceBatch,
)
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

from foldstack.local.errors import BatchApiError
from foldstack.local.moto_hooks import EngineInternalError, hooks_of, run_of, state_name_of


def _client_error(err: BatchApiError) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": err.code, "Message": err.message},
            "ResponseMetadata": {"HTTPStatusCode": err.status_code, "RequestId": "local"},
        },
        "SubmitJob",
    )


class LocalBatchTask(StateTaskServiceBatch):
    """`batch:submitJob[.sync]` served by the engine's local Batch runner."""

    def _eval_service_task(self, env, resource_runtime_part, normalised_parameters, state_credentials):
        hooks = hooks_of(env)
        if hooks is None:  # pragma: no cover - only our programs are retyped
            raise RuntimeError("local Batch task evaluated outside a foldstack execution")
        try:
            handle = hooks.submit_batch_job(dict(normalised_parameters), state_name=state_name_of(env))
        except BatchApiError as err:
            raise _client_error(err) from err
        except Exception as err:
            raise EngineInternalError(f"Batch submit failed: {type(err).__name__}: {err}") from err
        run = run_of(env)
        if run is not None:
            run._batch_handles[handle.job_id] = handle
        env.stack.append({"JobArn": handle.job_arn, "JobId": handle.job_id, "JobName": handle.job_name})

    def _build_sync_resolver(self, env, resource_runtime_part, normalised_parameters, state_credentials):
        submission = env.stack.pop()
        run = run_of(env)
        handle = run._batch_handles[submission["JobId"]]

        def _sync_resolver() -> dict | None:
            if not handle.done():
                return None
            description = handle.describe()
            if description.get("Status") == "SUCCEEDED":
                return description
            raise FailureEventException(
                FailureEvent(
                    env=env,
                    error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                    event_type=HistoryEventType.TaskFailed,
                    event_details=EventDetails(
                        taskFailedEventDetails=TaskFailedEventDetails(
                            resource=self._get_sfn_resource(),
                            resourceType=self._get_sfn_resource_type(),
                            error=StatesErrorNameType.StatesTaskFailed.to_name(),
                            cause=to_json_str(description),
                        )
                    ),
                )
            )

        _sync_resolver.handle = handle  # type: ignore[attr-defined]
        return _sync_resolver

    def _eval_sync(self, env, sync_resolver, timeout_seconds, callback_endpoint, heartbeat_endpoint):
        # moto polls every 0.5 s and also spins a waitForTaskToken thread; we wait on the
        # job's own completion event instead, and stop the job if the task is abandoned
        # (TimeoutSeconds, execution stopped or failed elsewhere) as Step Functions does.
        handle = sync_resolver.handle
        hooks = hooks_of(env)
        poll = hooks.poll_interval if hooks is not None else 0.05
        try:
            while env.is_running():
                result = sync_resolver()
                if result:
                    return result
                handle.wait(poll)
        finally:
            if not handle.done():
                handle.terminate("Step Functions task ended before the job (timeout or stop)")
        return None
