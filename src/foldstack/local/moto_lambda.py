"""The Lambda invoke integration: Lambda tasks call the engine's in-process handlers.

moto's helper ``lambda_eval_utils.execute_lambda_function_integration`` serves both
``arn:aws:states:::lambda:invoke`` and plain Lambda ARNs. ``moto_adapter`` replaces it
once, process-wide, with :func:`local_execute_lambda_function_integration`: executions
started by the local engine go to the engine's handler; anything else falls through to
moto's original.
"""

from __future__ import annotations

import json
from typing import Any

from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.eval.environment import Environment

from foldstack.local.errors import LambdaInvocationError
from foldstack.local.moto_hooks import EngineInternalError, hooks_of

original_execute_lambda = lambda_eval_utils.execute_lambda_function_integration


def local_execute_lambda_function_integration(
    env: Environment, parameters: dict, region: str, state_credentials: Any
) -> None:
    """Replacement for moto's Lambda invoke helper (keyword names kept as moto calls them)."""
    hooks = hooks_of(env)
    if hooks is None:  # not one of ours: moto's own behaviour
        return original_execute_lambda(
            env=env, parameters=parameters, region=region, state_credentials=state_credentials
        )
    payload_raw = parameters.get("Payload")
    if isinstance(payload_raw, bytes | bytearray):
        payload_raw = payload_raw.decode("utf-8")
    try:
        payload = json.loads(payload_raw) if isinstance(payload_raw, str) else payload_raw
    except json.JSONDecodeError:
        payload = payload_raw
    try:
        result = hooks.invoke_lambda(str(parameters["FunctionName"]), payload)
    except LambdaInvocationError as err:
        raise lambda_eval_utils.LambdaFunctionErrorException(
            function_error="Unhandled", payload=err.payload_json
        ) from err
    except Exception as err:
        raise EngineInternalError(f"Lambda dispatch failed: {type(err).__name__}: {err}") from err
    env.stack.append({"StatusCode": 200, "ExecutedVersion": "$LATEST", "Payload": result})


def install() -> None:
    """Replace moto's helper (callers hold ``moto_adapter``'s install lock)."""
    lambda_eval_utils.execute_lambda_function_integration = local_execute_lambda_function_integration
