"""Local engine behaviour: Batch jobs, fault injection, Lambda errors, names, placeholders."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from tests.workflows.asl_engine import FIXTURES, batch_input, fixture_engine

from foldstack.local import (
    DefinitionError,
    ExecutionAlreadyExists,
    LocalEngine,
    PlaceholderError,
    find_placeholders,
    local_values,
    substitute,
)
from foldstack.local.jobs import (
    JobsSpecError,
    build_argv,
    job_definition_arn,
    lambda_arn,
    queue_arn,
    resolve_job_definition,
    resolve_queue,
)
from foldstack.local.lambdas import function_name_of
from foldstack.workflows.specs import JobsFile

REPO = Path(__file__).resolve().parents[2]
WAIT = 30


class ScriptedInjector:
    """Returns scripted faults: {(job, attempt): fault}; counts submit calls per job."""

    def __init__(self, batch: dict | None = None, lambdas: dict | None = None, throttle_first: int = 0):
        self.batch = batch or {}
        self.lambdas = lambdas or {}
        self.throttle_first = throttle_first
        self.calls: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def before_batch_attempt(self, job, attempt):
        with self._lock:
            self.calls.append((job.job, attempt))
            if attempt == 1 and self.throttle_first > 0:
                self.throttle_first -= 1
                return "throttle"
        return self.batch.get((job.job, attempt))

    def before_lambda(self, name, event):
        return self.lambdas.get(name)


def batch_engine(tmp_path: Path, **kwargs) -> LocalEngine:
    return fixture_engine("batch", tmp_path, **kwargs)


def finish(execution):
    execution.wait(WAIT)
    assert execution.done()
    assert not execution.runtime_errors
    return execution


# ----------------------------------------------------------------------------- Batch jobs


@pytest.mark.slow
def test_batch_exit_zero_and_nonzero(tmp_path):
    eng = batch_engine(tmp_path)
    ok = finish(eng.start_execution("ok", batch_input(tmp_path, "exit", {"code": "0"})))
    assert ok.output["job"]["ExitCode"] == 0 and ok.output["job"]["Status"] == "SUCCEEDED"
    bad = finish(eng.start_execution("bad", batch_input(tmp_path, "exit", {"code": "2"})))
    cause = json.loads(bad.output["error"]["Cause"])
    assert bad.output["error"]["Error"] == "States.TaskFailed"
    assert cause["Container"]["ExitCode"] == 2 and len(cause["Attempts"]) == 1


def test_batch_exit_code_rule_retries(tmp_path):
    # jobs.yaml `exit` retries exit code 75 (up to 3 attempts), then fails.
    ex = finish(batch_engine(tmp_path).start_execution("e75", batch_input(tmp_path, "exit", {"code": "75"})))
    cause = json.loads(ex.output["error"]["Cause"])
    assert [a["Container"]["ExitCode"] for a in cause["Attempts"]] == [75, 75, 75]


@pytest.mark.slow
def test_batch_job_timeout_kills_and_is_not_retried(tmp_path):
    # `sleep` has timeout_seconds 1 and a rule that would retry anything: timeouts are never retried.
    t0 = time.monotonic()
    ex = finish(batch_engine(tmp_path).start_execution("to", batch_input(tmp_path, "sleep", {"seconds": "30"})))
    assert time.monotonic() - t0 < 10
    assert ex.output["caught"] == "TaskFailed"
    cause = json.loads(ex.output["error"]["Cause"])
    assert cause["StatusReason"] == "Job attempt duration exceeded timeout"
    assert len(cause["Attempts"]) == 1
    assert "ExitCode" not in cause["Attempts"][0]["Container"]


def test_spot_loss_retried_then_succeeds(tmp_path):
    inj = ScriptedInjector(batch={("echo", 1): "spot_loss"})
    ex = finish(
        batch_engine(tmp_path, injector=inj).start_execution("spot", batch_input(tmp_path, "echo", {"word": "w"}))
    )
    assert ex.status == "SUCCEEDED" and ex.output["job"]["Status"] == "SUCCEEDED"
    [desc] = ex.batch_jobs()
    first, second = desc["Attempts"]
    assert first["StatusReason"].startswith("Host EC2 (instance i-") and first["StatusReason"].endswith("terminated.")
    assert "ExitCode" not in first["Container"]
    assert second["Container"]["ExitCode"] == 0
    assert (tmp_path / "out.txt").read_text() == "w 2 \n"  # AWS_BATCH_JOB_ATTEMPT=2
    assert inj.calls == [("echo", 1), ("echo", 2)]


def test_spot_loss_on_every_attempt_fails(tmp_path):
    inj = ScriptedInjector(batch={("predict", 1): "spot_loss", ("predict", 2): "spot_loss"})
    eng = LocalEngine(
        (FIXTURES / "map_inline.asl.json").read_text(),
        jobs_yaml=FIXTURES / "jobs.yaml",
        log_dir=tmp_path / "logs",
        injector=inj,
    )
    ex = finish(eng.start_execution("spot-all", {"run": "r", "targets": [{"id": "t1", "size": "small"}]}))
    # The iteration's States.TaskFailed reaches the Map's Catch (moto alone turned it into States.Runtime),
    # then Fail with CausePath.
    assert ex.status == "FAILED" and ex.error == "TargetFailed"
    map_failed = next(e for e in ex.history() if e.type == "FailStateEntered")
    assert json.loads(map_failed.details["input"])["error"]["Error"] == "States.TaskFailed"
    cause = json.loads(ex.cause)
    assert len(cause["Attempts"]) == 2  # predict: attempts 2
    assert cause["StatusReason"].startswith("Host EC2")


def test_throttling_is_retried_by_the_asl_retry(tmp_path):
    inj = ScriptedInjector(throttle_first=2)
    ex = finish(
        batch_engine(tmp_path, injector=inj).start_execution("thr", batch_input(tmp_path, "echo", {"word": "t"}))
    )
    assert ex.status == "SUCCEEDED" and ex.output["job"]["Status"] == "SUCCEEDED"
    failures = [e for e in ex.history() if e.type == "TaskFailed"]
    assert [e.error for e in failures] == ["Batch.AWSBatchException"] * 2
    assert "Too Many Requests" in failures[0].cause
    assert len(ex.batch_jobs()) == 1  # throttled submits never created a job


def test_throttling_beyond_max_attempts_fails_the_task(tmp_path):
    inj = ScriptedInjector(throttle_first=10)
    ex = finish(
        batch_engine(tmp_path, injector=inj).start_execution("thr2", batch_input(tmp_path, "echo", {"word": "t"}))
    )
    # States.TaskFailed in a Catch matches every error but States.Timeout (as on AWS).
    assert ex.output["caught"] == "TaskFailed"
    assert ex.output["error"]["Error"] == "Batch.AWSBatchException"
    assert ex.batch_jobs() == []


@pytest.mark.parametrize(("fault", "reason"), [("timeout", "Job attempt duration"), ("crash", "Essential container")])
def test_injected_faults_not_retried(tmp_path, fault, reason):
    inj = ScriptedInjector(batch={("echo", 1): fault})
    ex = finish(batch_engine(tmp_path, injector=inj).start_execution("f", batch_input(tmp_path, "echo", {"word": "x"})))
    cause = json.loads(ex.output["error"]["Cause"])
    assert len(cause["Attempts"]) == 1 and cause["StatusReason"].startswith(reason)
    assert not (tmp_path / "out.txt").exists()  # the command never ran


def test_pull_error_is_retried(tmp_path):
    inj = ScriptedInjector(batch={("echo", 1): "pull_error"})
    ex = finish(batch_engine(tmp_path, injector=inj).start_execution("p", batch_input(tmp_path, "echo", {"word": "x"})))
    assert ex.output["job"]["Attempts"] == 2


def test_bad_batch_parameters_fail_the_submit(tmp_path):
    eng = batch_engine(tmp_path)
    ex = finish(eng.start_execution("nonstr", batch_input(tmp_path, "echo", {"word": 3})))
    assert ex.output["error"]["Error"] == "Batch.ClientException"
    inp = batch_input(tmp_path, "echo", {"word": "x"})
    inp["job_definition"] = job_definition_arn("nope")
    ex = finish(eng.start_execution("nodef", inp))
    assert ex.output["error"]["Error"] == "Batch.ClientException"
    assert "foldstack-local-echo" in ex.output["error"]["Cause"]


def test_batch_never_scheduled_after_validation_failure(tmp_path):
    eng = lambda_engine(tmp_path)
    ex = finish(eng.start_execution("invalid", {"run": "r", "raise": "InputValidationError"}))
    assert ex.status == "FAILED"
    assert not [e for e in ex.history() if e.type == "TaskScheduled" and e.details.get("resourceType") == "batch"]
    assert eng.batch.all_jobs() == []


# ----------------------------------------------------------------------------- Lambda errors


def lambda_engine(tmp_path: Path, name: str = "catch", **kwargs) -> LocalEngine:
    return fixture_engine(name, tmp_path, **kwargs)


@pytest.mark.parametrize("error", ["InputValidationError", "StagingError", "KeyError"])
def test_lambda_exception_error_names(tmp_path, error):
    ex = finish(lambda_engine(tmp_path).start_execution("l", {"run": "r", "raise": error}))
    failed = next(e for e in ex.history() if e.type == "TaskFailed")
    assert failed.error == error
    cause = json.loads(failed.cause)
    assert set(cause) == {"errorMessage", "errorType", "stackTrace"} and cause["errorType"] == error


def test_injected_lambda_exception(tmp_path):
    class TooManyRequestsException(Exception):
        pass

    inj = ScriptedInjector(lambdas={"boom": TooManyRequestsException("rate exceeded")})
    ex = finish(lambda_engine(tmp_path, injector=inj).start_execution("inj", {"run": "r"}))
    failed = next(e for e in ex.history() if e.type == "TaskFailed")
    assert failed.error == "TooManyRequestsException"
    assert entered_states(ex) == ["Validate", "Cleanup", "Failed"]


def test_unknown_lambda_is_resource_not_found(tmp_path):
    definition = json.dumps(
        {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": lambda_arn("missing"), "End": True}}}
    )
    eng = LocalEngine(definition, lambdas_dir=FIXTURES / "lambdas", log_dir=tmp_path)
    ex = finish(eng.start_execution("nf", {}))
    assert ex.error == "Lambda.ResourceNotFoundException"


def test_lambda_env_is_restored(tmp_path, monkeypatch):
    monkeypatch.delenv("GREETING", raising=False)
    eng = lambda_engine(tmp_path, "lambda", lambda_env={"GREETING": "scoped"})
    ex = finish(eng.start_execution("env", {"run": "r"}))
    assert ex.output["plain"]["greeting"] == "scoped"
    import os

    assert "GREETING" not in os.environ


def entered_states(ex) -> list[str]:
    return [e.state_name for e in ex.history() if e.type.endswith("StateEntered")]


# ----------------------------------------------------------------------------- names, stop


def test_duplicate_execution_names(tmp_path):
    eng = lambda_engine(tmp_path, "slow")
    first = eng.start_execution("run-1", {"seconds": 0.5})
    assert eng.start_execution("run-1", {"seconds": 0.5}) is first  # same input while running: idempotent
    with pytest.raises(ExecutionAlreadyExists) as err:
        eng.start_execution("run-1", {"seconds": 0.6})
    assert err.value.execution is first
    finish(first)
    assert first.status == "SUCCEEDED"
    with pytest.raises(ExecutionAlreadyExists):  # closed: the name stays taken
        eng.start_execution("run-1", {"seconds": 0.5})
    second = eng.start_execution("run-2", {"seconds": 0})
    assert finish(second).status == "SUCCEEDED"
    assert {e.name for e in eng.list_executions()} == {"run-1", "run-2"}


def test_execution_names_are_validated(tmp_path):
    eng = lambda_engine(tmp_path, "fail")
    for bad in ["", "a b", "x" * 81, "run/1"]:
        with pytest.raises(ValueError):
            eng.start_execution(bad, {})


def test_concurrent_executions_do_not_collide(tmp_path):
    eng = lambda_engine(tmp_path, "pass")
    runs = [eng.start_execution(f"p{i}", {"run": f"r{i}", "targets": [i]}) for i in range(8)]
    for i, ex in enumerate(runs):
        assert finish(ex).output["shaped"]["first"] == i
        assert ex.output["shaped"]["name"] == f"p{i}"


def test_stop_execution_aborts_and_kills_jobs(tmp_path):
    eng = batch_engine(tmp_path)
    ex = eng.start_execution("stopme", batch_input(tmp_path, "nap", {"seconds": "30"}))
    deadline = time.monotonic() + 10
    while not ex.batch_jobs() or ex.batch_jobs()[0]["Status"] != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    eng.stop_execution("stopme", error="UserStop", cause="test")
    finish(ex)
    assert ex.status == "ABORTED"
    deadline = time.monotonic() + 10
    while ex.batch_jobs()[0]["Status"] != "FAILED":
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_on_event_callback(tmp_path):
    seen = []
    eng = lambda_engine(tmp_path, "pass", on_event=seen.append)
    finish(eng.start_execution("cb", {"run": "r", "targets": [1]}))
    assert [e.type for e in seen][0] == "ExecutionStarted"
    assert [e.type for e in seen][-1] == "ExecutionSucceeded"
    assert all(e.timestamp is not None for e in seen)


def test_definition_errors(tmp_path):
    with pytest.raises(DefinitionError):
        LocalEngine("{not json", log_dir=tmp_path)
    with pytest.raises(DefinitionError):
        LocalEngine(json.dumps({"StartAt": "A", "States": {"A": {"Type": "Nope"}}}), log_dir=tmp_path)
    sqs = {
        "StartAt": "A",
        "States": {
            "A": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage",
                "Parameters": {"QueueUrl": "q", "MessageBody": "m"},
                "End": True,
            }
        },
    }
    with pytest.raises(DefinitionError, match="not supported by the local engine"):
        LocalEngine(json.dumps(sqs), log_dir=tmp_path)


# ----------------------------------------------------------------------------- placeholders & names


def test_placeholders_for_the_fold_workflow():
    values = local_values(
        REPO / "statemachines" / "fold" / "jobs.yaml", scratch_mount="/s", db_mount="/d", weights_dir="/w"
    )
    assert values["partition"] == "aws"
    assert values["lambda_validate_input_arn"] == lambda_arn("validate_input")
    assert values["lambda_cleanup_arn"].endswith(":function:foldstack-local-cleanup")
    assert values["queue_cpu_spot_arn"] == queue_arn("cpu-spot")
    assert values["queue_gpu_large_arn"].endswith("job-queue/foldstack-local-gpu-large")
    assert values["job_definition_msa_arn"] == job_definition_arn("msa")
    assert values["job_definition_predict_small_arn"].endswith("job-definition/foldstack-local-predict-small:1")
    assert (values["scratch_mount"], values["db_mount"], values["weights_dir"]) == ("/s", "/d", "/w")


def test_substitute_and_missing_placeholders():
    text = '{"a": "${partition}", "b": "$${literal}", "c": "${scratch_mount}/x", "d": "${db_mount}"}'
    assert find_placeholders(text) == ["db_mount", "partition", "scratch_mount"]
    with pytest.raises(PlaceholderError) as err:
        substitute(text, {"partition": "aws"})
    assert err.value.missing == ["db_mount", "scratch_mount"]
    assert "${db_mount}" in str(err.value)
    out = json.loads(substitute(text, {"partition": "aws", "scratch_mount": 'C:\\"q', "db_mount": "/d"}))
    assert out == {"a": "aws", "b": "${literal}", "c": 'C:\\"q/x', "d": "/d"}


def test_engine_reports_missing_placeholders(tmp_path):
    definition = json.dumps(
        {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": "${weights_dir}", "End": True}}}
    )
    with pytest.raises(PlaceholderError, match="weights_dir"):
        LocalEngine(definition, log_dir=tmp_path)
    eng = LocalEngine(definition, log_dir=tmp_path, placeholders={"weights_dir": "/w"})
    assert finish(eng.start_execution("w", {})).output == "/w"


def test_job_definition_and_function_name_mapping():
    jobs = JobsFile.load(REPO / "statemachines" / "fold" / "jobs.yaml")
    spec, size = resolve_job_definition(jobs, job_definition_arn("predict", "medium"))
    assert (spec.name, size) == ("predict", "medium")
    assert resolve_job_definition(jobs, "foldstack-local-msa")[0].name == "msa"
    assert resolve_queue(jobs, queue_arn("gpu-small")) == "gpu-small"
    with pytest.raises(JobsSpecError):
        resolve_job_definition(jobs, job_definition_arn("predict", "huge"))
    assert function_name_of(lambda_arn("stage_inputs")) == "stage_inputs"
    assert function_name_of(lambda_arn("stage_inputs") + ":$LATEST") == "stage_inputs"
    assert function_name_of("foldstack-local-cleanup") == "cleanup" and function_name_of("cleanup") == "cleanup"


def test_build_argv():
    import sys

    argv = build_argv(["foldstack", "step", "msa", "--run-id", "Ref::run_id", "--x=Ref::y"], {"run_id": "r1"})
    assert argv == [sys.executable, "-m", "foldstack", "step", "msa", "--run-id", "r1", "--x=Ref::y"]


def test_failing_map_iteration_stops_siblings_without_states_runtime(tmp_path):
    eng = LocalEngine(
        (FIXTURES / "map_fail_fast.asl.json").read_text(), jobs_yaml=FIXTURES / "jobs.yaml", log_dir=tmp_path
    )
    items = [
        {"name": "nap", "definition": job_definition_arn("nap"), "params": {"seconds": "30"}},
        {"name": "fail", "definition": job_definition_arn("exit"), "params": {"code": "1"}},
    ]
    t0 = time.monotonic()
    ex = finish(eng.start_execution("ff", {"items": items}))
    assert ex.status == "FAILED" and ex.error == "States.TaskFailed"
    assert time.monotonic() - t0 < 15
    assert not [e for e in ex.history() if e.error in ("States.Runtime", "Local.FrameCancelled")]
    deadline = time.monotonic() + 10
    while any(j["Status"] not in ("SUCCEEDED", "FAILED") for j in ex.batch_jobs()):
        assert time.monotonic() < deadline, ex.batch_jobs()
        time.sleep(0.05)
    nap = next(j for j in ex.batch_jobs() if j["JobName"] == "nap")
    assert nap["Status"] == "FAILED"
