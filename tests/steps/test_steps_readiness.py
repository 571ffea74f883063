"""Cross-AZ readiness: a step waits (bounded) for another step's outputs to be visible as
that step's done record lists them (size, sha256); not yet visible is retryable (exit 75),
never bad input (exit 2). Delayed visibility is simulated with the hide injector
(``FOLDSTACK_INJECT_HIDE``), which the real wait loop honours, step by step and on the
local engine with the real jobs.yaml retry rules."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from foldstack.core.errors import EXIT_BAD_INPUT, EXIT_INPUTS_NOT_READY, InputsNotReadyError
from foldstack.steps import common, ran_on
from foldstack.steps.common import run_cli, run_step
from foldstack.workflows.specs import load_workflow
from tests.steps.conftest import TARGET, invoke

RUN = "r"


def produce(scratch: Path, data: bytes = b"features" * 100, target: str = TARGET) -> Path:
    """The msa step's output for `target`, through the real step contract."""
    return run_step("msa", RUN, target, scratch, lambda ctx: (ctx.work_dir / "features.npz").write_bytes(data))


def consume(scratch: Path, target: str = TARGET, **kwargs) -> Path:
    """A step that reads msa's features.npz the way predict does."""
    def body(ctx):
        path = ctx.await_inputs("msa", ["features.npz"], **kwargs)["features.npz"]
        (ctx.work_dir / "copy.bin").write_bytes(path.read_bytes())

    return run_step("predict", RUN, target, scratch, body)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in (common.HIDE_ENV, common.INPUT_WAIT_ENV, "AWS_BATCH_JQ_NAME", "AWS_BATCH_JOB_ID",
                 "AWS_BATCH_CE_NAME", "AWS_BATCH_JOB_ATTEMPT", ran_on.SIZE_CLASS_ENV, "ECS_CONTAINER_METADATA_URI_V4"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.slow
def test_an_input_that_appears_in_time_is_used(tmp_path, monkeypatch):
    produce(tmp_path)
    monkeypatch.setenv(common.HIDE_ENV, "msa/*/features.npz:0.8")
    monkeypatch.setenv(common.INPUT_WAIT_ENV, "20")
    final = consume(tmp_path)
    done = json.loads((final / "predict.done.json").read_text())
    assert 0.7 <= done["timings"]["await_inputs"] < 10  # it waited, then went on
    assert (final / "copy.bin").read_bytes() == b"features" * 100
    assert done["inputs"] == {f"msa/{TARGET}/features.npz": json.loads(
        (tmp_path / RUN / "msa" / TARGET / "msa.done.json").read_text())["outputs"]["features.npz"]}


@pytest.mark.slow
def test_an_input_that_never_appears_is_a_coded_retryable_failure(tmp_path, monkeypatch, capsys):
    produce(tmp_path)
    monkeypatch.setenv(common.HIDE_ENV, "msa/*/features.npz:inf")
    monkeypatch.setenv(common.INPUT_WAIT_ENV, "0.6")
    t = time.monotonic()
    with pytest.raises(InputsNotReadyError) as info:
        consume(tmp_path)
    assert time.monotonic() - t >= 0.5  # the bounded wait ran
    path = tmp_path / RUN / "msa" / TARGET / "features.npz"
    assert info.value.exit_code == EXIT_INPUTS_NOT_READY == 75 and info.value.path == str(path)
    assert str(info.value).startswith(f"[inputs_not_ready] input {path} is listed in msa.done.json but not visible")
    assert "\n" not in str(info.value)
    assert not (tmp_path / RUN / "predict" / TARGET).exists()  # nothing promoted
    code = run_cli("predict", TARGET, lambda: consume(tmp_path))
    assert code == 75 != EXIT_BAD_INPUT
    [line] = [ln for ln in capsys.readouterr().err.splitlines() if "FAILED" in ln]
    assert f"FAILED (inputs not ready, exit 75): [inputs_not_ready] input {path}" in line


@pytest.mark.parametrize("damage", ["truncated", "same_size_other_bytes"])
@pytest.mark.slow
def test_a_file_unlike_its_record_waits_then_fails_coded(tmp_path, monkeypatch, damage):
    """An older or half-imported copy: wait for the recorded one, then exit 75 (not 2)."""
    final = produce(tmp_path)
    path = final / "features.npz"
    data = path.read_bytes()
    path.write_bytes(data[:10] if damage == "truncated" else data[::-1])
    monkeypatch.setenv(common.INPUT_WAIT_ENV, "0.5")
    t = time.monotonic()
    with pytest.raises(InputsNotReadyError) as info:
        consume(tmp_path)
    assert time.monotonic() - t >= 0.45 and info.value.exit_code == 75
    why = "has 10 bytes, msa.done.json records 800" if damage == "truncated" else "does not match the sha256"
    assert why in str(info.value) and str(path) in str(info.value)


def test_a_file_that_is_fixed_while_waiting_is_used(tmp_path, monkeypatch):
    final = produce(tmp_path)
    good = (final / "features.npz").read_bytes()
    (final / "features.npz").write_bytes(b"half")
    monkeypatch.setenv(common.INPUT_WAIT_ENV, "20")
    threading.Timer(0.6, lambda: (final / "features.npz").write_bytes(good)).start()
    assert (consume(tmp_path) / "copy.bin").read_bytes() == good


def test_no_record_and_no_file_names_both_and_is_not_bad_input(tmp_path, monkeypatch):
    monkeypatch.setenv(common.INPUT_WAIT_ENV, "0")
    with pytest.raises(InputsNotReadyError) as info:
        consume(tmp_path)
    assert "features.npz is not visible and neither is msa.done.json after waiting 0s" in str(info.value)


def test_hand_placed_files_without_a_record_are_used_when_allowed(tmp_path, monkeypatch):
    monkeypatch.setenv(common.INPUT_WAIT_ENV, "600")  # must not wait at all
    folder = tmp_path / RUN / "msa" / TARGET
    folder.mkdir(parents=True)
    (folder / "features.npz").write_bytes(b"by hand")
    t = time.monotonic()
    assert (consume(tmp_path, accept_unrecorded=True) / "copy.bin").read_bytes() == b"by hand"
    assert time.monotonic() - t < 5


def test_a_record_that_does_not_list_the_input_is_bad_input(tmp_path, monkeypatch):
    run_step("msa", RUN, TARGET, tmp_path, lambda ctx: (ctx.work_dir / "other").write_text("x"))
    monkeypatch.setenv(common.INPUT_WAIT_ENV, "600")
    with pytest.raises(common.BadInputError, match="does not list it"):
        consume(tmp_path)


def test_the_wait_is_configurable_and_checked(monkeypatch):
    assert common.input_wait_seconds() == 600
    monkeypatch.setenv(common.INPUT_WAIT_ENV, "2.5")
    assert common.input_wait_seconds() == 2.5
    for bad in ("-1", "soon", "nan"):
        monkeypatch.setenv(common.INPUT_WAIT_ENV, bad)
        with pytest.raises(common.BadInputError, match=common.INPUT_WAIT_ENV):
            common.input_wait_seconds()


def test_the_predict_step_exits_75_not_2_when_features_never_appear(tmp_path, monkeypatch):
    """The real `foldstack step predict` (AlphaFold2 reads msa's features.npz)."""
    produce(tmp_path)
    monkeypatch.setenv(common.HIDE_ENV, "msa/*/features.npz:inf")
    monkeypatch.setenv(common.INPUT_WAIT_ENV, "0.3")
    result = invoke(["predict", "--run-id", RUN, "--target", TARGET, "--scratch", str(tmp_path),
                     "--weights", str(tmp_path / "no-weights"), "--engine", "alphafold2", "--preset", "monomer"])
    assert result.exit_code == 75, result.output
    text = " ".join(result.output.split())
    assert f"[inputs_not_ready] input {tmp_path / RUN / 'msa' / TARGET / 'features.npz'}" in text
    assert not (tmp_path / RUN / "predict" / TARGET).exists()


# ------------------------------------------------------------------ the retry rule


def test_every_fold_job_retries_exit_75_and_nothing_else_new():
    from foldstack.local.batch_retry import AttemptOutcome, RetryStrategy, decide

    jobs = load_workflow("fold").jobs
    assert jobs.exit_codes["inputs_not_ready"] == EXIT_INPUTS_NOT_READY
    for job in jobs.jobs.values():
        rules = job.retry.evaluate_on_exit
        assert len(rules) <= 5 and rules[-1].on_exit_code == "*" and rules[-1].action == "EXIT"
        strategy = RetryStrategy.from_model(job.retry)
        exited = "Essential container in task exited"
        assert decide(strategy, AttemptOutcome(exit_code=75, status_reason=exited), 1).retry
        assert not decide(strategy, AttemptOutcome(exit_code=75, status_reason=exited), job.retry.attempts).retry
        for code in (1, 2, 3, 74, 76, 137):
            assert not decide(strategy, AttemptOutcome(exit_code=code, status_reason=exited), 1).retry, code


# ------------------------------------------------------------------ on the local engine

STEP_SCRIPT = """
import sys
from foldstack.steps.common import run_cli, run_step

run_id, target, scratch = sys.argv[1:4]

def body(ctx):
    path = ctx.await_inputs("msa", ["features.npz"])["features.npz"]
    (ctx.work_dir / "copy.bin").write_bytes(path.read_bytes())

sys.exit(run_cli("predict", target, lambda: run_step("predict", run_id, target, scratch, body)))
"""


def run_local_job(tmp_path: Path, job_env: dict[str, str]) -> dict:
    """One predict (small) job on the local engine's Batch, with the real jobs.yaml
    (queues, retry rules); the command is a minimal step that reads msa's output."""
    from foldstack.local.batch import LocalBatch
    from foldstack.local.jobs import job_definition_arn, queue_arn

    script = tmp_path / "step.py"
    script.write_text(STEP_SCRIPT)
    batch = LocalBatch(load_workflow("fold").jobs, log_dir=tmp_path / "logs", job_env=job_env)
    job = batch.submit({
        "JobName": "readiness", "JobDefinition": job_definition_arn("predict", "small"),
        "JobQueue": queue_arn("gpu-small"), "Parameters": {},
        "ContainerOverrides": {"Command": ["python", str(script), RUN, TARGET, str(tmp_path)]},
    })
    assert job.wait(120), "the local job did not finish"
    return job.describe()


@pytest.mark.slow
def test_local_engine_delayed_visibility_appears_in_time(tmp_path):
    produce(tmp_path)
    desc = run_local_job(tmp_path, {common.HIDE_ENV: "msa/*/features.npz:1", common.INPUT_WAIT_ENV: "30"})
    assert desc["Status"] == "SUCCEEDED" and len(desc["Attempts"]) == 1, desc
    done = json.loads((tmp_path / RUN / "predict" / TARGET / "predict.done.json").read_text())
    assert done["timings"]["await_inputs"] >= 0.9
    assert done["ran_on"] == {"queue": "foldstack-local-gpu-small", "size_class": "small", "attempt": 1,
                              "compute_environment": "foldstack-local-gpu-small-local", "job_id": desc["JobId"]}


@pytest.mark.slow
def test_local_engine_delayed_visibility_never_appears(tmp_path):
    produce(tmp_path)
    desc = run_local_job(tmp_path, {common.HIDE_ENV: "msa/*/features.npz:inf", common.INPUT_WAIT_ENV: "0.3"})
    attempts = load_workflow("fold").jobs.jobs["predict"].retry.attempts
    assert desc["Status"] == "FAILED"
    assert [a["Container"]["ExitCode"] for a in desc["Attempts"]] == [75] * attempts  # retried by the rule, then out
    log = Path(desc["Attempts"][-1]["Container"]["LogStreamName"]).read_text()
    assert "FAILED (inputs not ready, exit 75): [inputs_not_ready] input" in log and "features.npz" in log
    assert not (tmp_path / RUN / "predict" / TARGET).exists()


# ------------------------------------------------------------------ where the job ran


def test_ran_on_reads_the_availability_zone_from_the_task_metadata(monkeypatch):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            body = json.dumps({"AvailabilityZone": "eu-west-1b", "LaunchType": "EC2"}).encode()
            self.send_response(200 if self.path == "/v4/abc/task" else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ran_on._task_metadata.cache_clear()
        monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", f"http://127.0.0.1:{server.server_port}/v4/abc")
        monkeypatch.setenv("AWS_BATCH_JQ_NAME", "foldstack-dev-cpu-ondemand")
        monkeypatch.setenv("AWS_BATCH_JOB_ATTEMPT", "1")
        where = ran_on.ran_on()
        assert where["availability_zone"] == "eu-west-1b" and where["queue"] == "foldstack-dev-cpu-ondemand"
        assert where["size_class"] is None and where["attempt"] == 1
    finally:
        server.shutdown()
        ran_on._task_metadata.cache_clear()
    monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", "http://127.0.0.1:9/unreachable")
    assert "availability_zone" not in ran_on.ran_on()  # best effort: never a failure
    monkeypatch.delenv("AWS_BATCH_JQ_NAME")
    assert ran_on.ran_on() is None  # not a Batch job
