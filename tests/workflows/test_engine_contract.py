"""Contract tests: every ASL feature our templates use, on the local engine.

Each fixture in ``asl_fixtures/`` exercises one feature through moto's vendored
interpreter (via ``foldstack.local.moto_adapter``), with Lambda tasks calling the tiny
handlers in ``asl_fixtures/lambdas`` and Batch tasks running ``asl_fixtures/jobs.yaml``
commands. A moto upgrade is a deliberate change: these must stay green.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from tests.workflows.asl_engine import batch_input, fixture_engine

from foldstack.local import LocalEngine, StatesRuntimeError

WAIT = 30


def engine(name: str, tmp_path: Path, **kwargs) -> LocalEngine:
    return fixture_engine(name, tmp_path, lambda_env={"GREETING": "hello"}, **kwargs)


def run(name: str, tmp_path: Path, payload: dict, **kwargs):
    execution = engine(name, tmp_path, **kwargs).start_execution("contract-run", payload)
    execution.wait(WAIT)
    assert execution.done(), f"{name} did not finish"
    assert not execution.runtime_errors
    assert not any(e.error == "States.Runtime" for e in execution.history())
    return execution


def types(execution) -> list[str]:
    return [e.type for e in execution.history()]


def entered(execution) -> list[str]:
    return [e.state_name for e in execution.history() if e.type.endswith("StateEntered")]


# ----------------------------------------------------------------------------- Pass


def test_pass_parameters_and_result_path(tmp_path):
    ex = run("pass", tmp_path, {"run": "r1", "targets": ["a", "b"]})
    assert ex.status == "SUCCEEDED"
    assert ex.output == {
        "run": "r1",
        "targets": ["a", "b"],
        "shaped": {"kind": "fold", "run": "r1", "name": "contract-run", "first": "a"},
        "meta": {"version": 1},
    }
    assert entered(ex) == ["Shape", "Constant", "Done"]
    assert types(ex)[-1] == "ExecutionSucceeded"


# ----------------------------------------------------------------------------- Lambda


def test_lambda_invoke_and_plain_arn(tmp_path):
    ex = run("lambda", tmp_path, {"run": "r1"})
    assert ex.status == "SUCCEEDED", ex.cause
    invoked = ex.output["invoked"]
    # lambda:invoke output is {"Payload", "StatusCode", "ExecutedVersion"}; ResultSelector picks from it.
    assert invoked == {
        "body": {"event": {"run": "r1", "n": 1}, "greeting": "hello", "function": "foldstack-local-echo"},
        "status": 200,
        "version": "$LATEST",
    }
    # A plain Lambda ARN returns the handler's result directly; lambda_env is applied.
    assert ex.output["plain"] == {"event": {"run": "r1"}, "greeting": "hello", "function": "foldstack-local-echo"}
    assert "LambdaFunctionSucceeded" in types(ex) and "TaskSucceeded" in types(ex)


# ----------------------------------------------------------------------------- Retry


def test_retry_custom_error_with_backoff_and_full_jitter(tmp_path):
    ex = run("retry", tmp_path, {"key": "retry-ok", "fail_times": 2})
    assert ex.status == "SUCCEEDED"
    assert ex.output == {"key": "retry-ok", "calls": 3}
    assert types(ex).count("LambdaFunctionFailed") == 2


def test_retry_exhausted_surfaces_the_error(tmp_path):
    ex = run("retry", tmp_path, {"key": "retry-exhausted", "fail_times": 10})
    assert ex.status == "FAILED"
    assert ex.error == "TransientError"
    assert types(ex).count("LambdaFunctionFailed") == 4  # 1 + MaxAttempts 3
    assert json.loads(ex.cause)["errorType"] == "TransientError"


def test_retry_waits_follow_wait_scale(tmp_path):
    # IntervalSeconds 2, BackoffRate 2, JitterStrategy FULL: scaled by 0.01 -> at most 0.02 + 0.04 s.
    ex = run("retry", tmp_path, {"key": "retry-scaled", "fail_times": 2}, wait_scale=0.01)
    assert ex.status == "SUCCEEDED"
    assert (ex.stop_date - ex.start_date).total_seconds() < 2


# ----------------------------------------------------------------------------- Catch


def test_catch_custom_error_name_with_result_path(tmp_path):
    ex = run("catch", tmp_path, {"run": "r1", "raise": "InputValidationError", "record": "seq7"})
    assert ex.status == "FAILED" and ex.error == "RunFailed"
    assert entered(ex) == ["Validate", "Rejected", "Cleanup", "Failed"]
    caught = next(e for e in ex.history() if e.state_name == "Rejected" and e.type == "PassStateEntered")
    error = json.loads(caught.details["input"])["error"]
    assert error["Error"] == "InputValidationError"
    cause = json.loads(error["Cause"])
    assert cause["errorType"] == "InputValidationError"
    assert "seq7" in cause["errorMessage"] and isinstance(cause["stackTrace"], list)
    # Nothing reached Batch.
    assert not any(e.type == "TaskScheduled" and e.details.get("resourceType") == "batch" for e in ex.history())


def test_catch_states_all(tmp_path):
    ex = run("catch", tmp_path, {"run": "r1", "raise": "KeyError"})
    assert entered(ex) == ["Validate", "Cleanup", "Failed"]
    cleanup_input = next(
        json.loads(e.details["input"])
        for e in ex.history()
        if e.type == "TaskStateEntered" and e.state_name == "Cleanup"
    )
    assert cleanup_input["error"]["Error"] == "KeyError"
    assert ex.status == "FAILED" and ex.error == "RunFailed" and ex.cause == "see the execution history"


def test_catch_happy_path_runs_batch(tmp_path):
    ex = run("catch", tmp_path, {"run": "r1"})
    assert ex.status == "SUCCEEDED"
    assert ex.output == {"status": "SUCCEEDED"}
    assert entered(ex) == ["Validate", "Work"]


# ----------------------------------------------------------------------------- Batch


def test_batch_sync_success_shape(tmp_path):
    ex = run("batch", tmp_path, batch_input(tmp_path, "echo", {"word": "hi"}), job_env={"JOB_ENV_MARK": "mark"})
    assert ex.status == "SUCCEEDED", ex.cause
    job = ex.output["job"]
    assert job["Status"] == "SUCCEEDED" and job["ExitCode"] == 0 and job["Attempts"] == 1
    # ContainerOverrides env (OUT) and the engine's job_env both reach the process.
    assert (tmp_path / "out.txt").read_text() == "hi 1 mark\n"
    [desc] = ex.batch_jobs()
    assert desc["JobName"] == "r1-echo"
    assert desc["JobQueue"].endswith("job-queue/foldstack-local-cpu-spot")
    assert desc["JobDefinition"].endswith("job-definition/foldstack-local-echo:1")
    assert desc["Parameters"] == {"word": "hi"}
    assert desc["Container"]["Command"][-1] == "hi"
    assert "echo hi" in Path(desc["Container"]["LogStreamName"]).read_text()
    for key in ("JobId", "StatusReason", "Attempts", "CreatedAt", "StartedAt", "StoppedAt"):
        assert key in desc


def test_batch_failure_is_states_task_failed_with_job_cause(tmp_path):
    ex = run("batch", tmp_path, batch_input(tmp_path, "exit", {"code": "1"}))
    assert ex.status == "SUCCEEDED"
    assert ex.output["caught"] == "TaskFailed"
    assert ex.output["error"]["Error"] == "States.TaskFailed"
    cause = json.loads(ex.output["error"]["Cause"])
    assert cause["Status"] == "FAILED"
    assert cause["Container"]["ExitCode"] == 1
    assert len(cause["Attempts"]) == 1  # EXIT on "*": an application error is not retried
    assert cause["StatusReason"] == "Essential container in task exited"


@pytest.mark.slow
def test_batch_task_timeout_seconds(tmp_path):
    # The ASL TimeoutSeconds (1 s) fires before the job's own timeout (120 s).
    ex = run("batch", tmp_path, batch_input(tmp_path, "nap", {"seconds": "20"}, timeout=1))
    assert ex.status == "SUCCEEDED"
    assert ex.output["caught"] == "Timeout"
    assert ex.output["error"]["Error"] == "States.Timeout"
    assert "TaskTimedOut" in types(ex)
    # Step Functions stops the job it abandons.
    deadline = time.monotonic() + 10
    while ex.batch_jobs()[0]["Status"] != "FAILED" and time.monotonic() < deadline:
        time.sleep(0.05)
    [job] = ex.batch_jobs()
    assert job["Status"] == "FAILED"
    assert job["StatusReason"].startswith(("Step Functions task ended", "Execution ended"))


def test_batch_submit_without_sync(tmp_path):
    ex = run("batch_nosync", tmp_path, {})
    assert ex.status == "SUCCEEDED"
    assert set(ex.output) == {"JobArn", "JobId", "JobName"}
    assert ex.output["JobName"] == "fire-and-forget"


# ----------------------------------------------------------------------------- Choice


@pytest.mark.parametrize(
    ("payload", "branch"),
    [
        ({"engine": "esmfold"}, "esm"),  # StringEquals
        ({"engine": "alphafold2", "cache": "k", "reuse": True}, "cached"),  # And(IsPresent, BooleanEquals)
        ({"engine": "alphafold2", "reuse": True, "length": 10}, "small"),  # IsPresent false
        ({"engine": "alphafold2", "cache": "k", "reuse": False, "length": 401}, "large"),  # NumericGreaterThan
        ({"engine": "alphafold2", "length": 400}, "small"),  # Default
    ],
)
def test_choice(tmp_path, payload, branch):
    ex = run("choice", tmp_path, payload)
    assert ex.status == "SUCCEEDED"
    assert ex.output["branch"] == branch


# ----------------------------------------------------------------------------- Map


def test_map_inline_items_selector_concurrency(tmp_path):
    targets = [{"id": f"t{i}", "size": "large" if i % 2 else "small"} for i in range(5)]
    ex = run("map_inline", tmp_path, {"run": "r9", "targets": targets})
    assert ex.status == "SUCCEEDED", ex.cause
    results = ex.output["results"]
    assert [r["index"] for r in results] == list(range(5))
    assert all(r["run"] == "r9" for r in results)
    for r in results:
        size = r["target"]["size"]
        assert r["job"]["def"].endswith(f"foldstack-local-predict-{size}:1")
        assert r["job"]["queue"].endswith(f"foldstack-local-gpu-{size}")
    # MaxConcurrency 2: never more than two iterations open at once.
    open_now = peak = 0
    for e in ex.history():
        if e.type == "MapIterationStarted":
            open_now += 1
            peak = max(peak, open_now)
        elif e.type in ("MapIterationSucceeded", "MapIterationFailed"):
            open_now -= 1
    assert peak == 2
    # History says which iteration each task belongs to.
    scheduled = {e.map_path for e in ex.history() if e.type == "TaskScheduled"}
    assert scheduled == {(i,) for i in range(5)}
    assert ex.positions()[(1,)] == "PredictLarge" and ex.positions()[(0,)] == "PredictSmall"


def _write_items(tmp_path: Path, items: list) -> dict:
    bucket = tmp_path / "bucket"
    (bucket / "manifests").mkdir(parents=True)
    (bucket / "manifests" / "items.json").write_text(json.dumps(items))
    return {"bucket": str(bucket), "key": "manifests/items.json"}


def test_map_distributed_item_reader_tolerates_failures(tmp_path):
    items = [{"id": "a"}, {"id": "b", "fail": True}, {"id": "c"}, {"id": "d"}]
    ex = run("map_distributed", tmp_path, {"run": "r", "manifest": _write_items(tmp_path, items)})
    assert ex.status == "SUCCEEDED", ex.cause
    assert ex.output["results"] == [{"id": "a"}, None, {"id": "c"}, {"id": "d"}]
    assert "MapRunStarted" in types(ex) and "MapRunSucceeded" in types(ex)


def test_map_distributed_exceeding_tolerance_fails(tmp_path):
    items = [{"id": "a", "fail": True}, {"id": "b", "fail": True}, {"id": "c"}, {"id": "d", "fail": True}]
    ex = run("map_distributed", tmp_path, {"run": "r", "manifest": _write_items(tmp_path, items)})
    assert ex.status == "FAILED"
    assert ex.error == "States.ExceedToleratedFailureThreshold"
    assert "3 of 4" in ex.cause


def test_map_distributed_item_reader_s3_root(tmp_path):
    (tmp_path / "s3" / "scratch" / "run1").mkdir(parents=True)
    (tmp_path / "s3" / "scratch" / "run1" / "targets.json").write_text(json.dumps([{"id": "x"}]))
    ex = run(
        "map_distributed",
        tmp_path,
        {"run": "r", "manifest": {"bucket": "scratch", "key": "run1/targets.json"}},
        s3_root=tmp_path / "s3",
    )
    assert ex.status == "SUCCEEDED", ex.cause
    assert ex.output["results"] == [{"id": "x"}]


def test_map_distributed_missing_manifest_is_item_reader_failed(tmp_path):
    ex = run("map_distributed", tmp_path, {"run": "r", "manifest": {"bucket": str(tmp_path), "key": "nope.json"}})
    assert ex.status == "FAILED"
    assert ex.error == "States.ItemReaderFailed"


# ----------------------------------------------------------------------------- intrinsics, Fail


def test_intrinsic_functions(tmp_path):
    payload = {
        "json": '{"a": [1, 2]}',
        "run": "r7",
        "engine": "esmfold",
        "targets": [1, 2, 3],
        "defaults": {"a": 1, "b": {"c": 1}},
        "overrides": {"b": {"d": 2}},
    }
    ex = run("intrinsics", tmp_path, payload)
    assert ex.output == {
        "parsed": {"a": [1, 2]},
        "message": "run r7 folds esmfold",
        "count": 3,
        "merged": {"a": 1, "b": {"d": 2}},  # shallow merge
    }


def test_fail_state_error_and_cause(tmp_path):
    ex = run("fail", tmp_path, {})
    assert (ex.status, ex.error, ex.cause) == ("FAILED", "InvalidInput", "no targets")
    assert types(ex)[-1] == "ExecutionFailed"


# ----------------------------------------------------------------------------- States.Runtime


def test_states_runtime_is_never_caught_and_is_fatal(tmp_path):
    ex = engine("runtime", tmp_path).start_execution("rt", {})
    with pytest.raises(StatesRuntimeError, match=r"does\.not\.exist"):
        ex.wait(WAIT)
    assert ex.status == "FAILED" and ex.error == "States.Runtime"
    assert "Caught" not in entered(ex)  # States.ALL must not catch States.Runtime
    assert ex.runtime_errors
