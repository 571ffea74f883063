"""State payloads stay small however many targets a run has (Step Functions: 256 KB per
state payload; `States.DataLimitExceeded` is uncatchable, so no cleanup would run).

Above `state_targets_max` (knobs.yaml) Validate Input returns only the count and digest of
the target list; Plan Batches and Collect Outputs read the list Stage Inputs wrote to
scratch. Run on the local engine with the real rendered ASL and real Lambdas; Batch jobs
are `tests/client/fake_step.py` (milliseconds each), so a few hundred targets take seconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.client.conftest import fake_jobs_yaml, size_classes_json
from tests.conftest import REPO

from foldstack.core.request import RunRequest
from foldstack.local import LocalEngine
from foldstack.tasks.settings import TaskSettings
from foldstack.tasks.validate import validate_run

KNOBS = yaml.safe_load((REPO / "statemachines/fold/knobs.yaml").read_text())
STATE_TARGETS_MAX = KNOBS["state_targets_max"]
N_LARGE = 2 * STATE_TARGETS_MAX  # over the knob and the bulk threshold: the Distributed Map path
BOUND = 32 * 1024  # far below Step Functions' 256 KB, and independent of the number of targets
AMINO = "ACDEFGHIKLMNPQRSTVWY"


def test_knobs_keep_the_in_state_targets_at_or_below_the_bulk_threshold():
    # At or below the bulk threshold the inline Map's batches are in the state as well.
    assert 0 < STATE_TARGETS_MAX <= KNOBS["bulk"]["threshold_targets"]


def _records(n: int) -> list[tuple[str, str]]:
    return [(f"target{i:05d}", "M" + "".join(AMINO[(i * 7 + j) % 20] for j in range(20 + i % 30)))
            for i in range(n)]


class Estate:
    """Local directories, the real rendered fold ASL, fake steps."""

    def __init__(self, tmp_path: Path, injector: Any = None):
        self.root = tmp_path
        for name in ("inputs", "outputs", "scratch", "db", "weights", "logs"):
            (tmp_path / name).mkdir()
        self.lambda_env = {
            "FOLDSTACK_SCRATCH_ROOT": str(tmp_path / "scratch"),
            "FOLDSTACK_ALLOWED_INPUT_PREFIXES": str(tmp_path / "inputs"),
            "FOLDSTACK_ALLOWED_OUTPUT_PREFIXES": str(tmp_path / "outputs"),
            "FOLDSTACK_SIZE_CLASSES": size_classes_json(),
            "FOLDSTACK_LOG_LEVEL": "ERROR",
        }
        self.engine = LocalEngine(
            (REPO / "statemachines/rendered/fold.asl.json").read_text(), jobs_yaml=fake_jobs_yaml(tmp_path),
            lambda_env=self.lambda_env, log_dir=tmp_path / "logs", wait_scale=0.0, poll_interval=0.02,
            injector=injector,
            placeholders={"scratch_mount": str(tmp_path / "scratch"), "db_mount": str(tmp_path / "db"),
                          "weights_dir": str(tmp_path / "weights")})

    def start(self, n: int):
        records = _records(n)
        fasta = self.root / "inputs" / f"n{n}.fasta"
        fasta.write_text("".join(f">{rid}\n{seq}\n" for rid, seq in records))
        request = RunRequest(inputs=(str(fasta),), output_uri=str(self.root / "outputs"), engine="esmfold")
        settings = TaskSettings.from_env(self.lambda_env)
        _, _, targets, run_id = validate_run(
            request, allowed_input_prefixes=settings.allowed_input_prefixes,
            allowed_output_prefixes=settings.allowed_output_prefixes, size_classes=settings.size_classes,
            limits=settings.limits)
        execution = self.engine.start_execution(run_id, {"run_id": run_id,
                                                         "request": request.model_dump(mode="json")})
        return execution, [t.model_dump() for t in targets]


class Recorder:
    """Injector that records what the history does not hold: the local engine (as AWS) keeps
    a Distributed Map child execution's events out of the parent's history, so each child's
    input (the ItemSelector over one manifest item) is measured from the batch manifest, and
    every Lambda event and Batch job's parameters as they are sent."""

    def __init__(self, scratch: Path):
        self.scratch = scratch
        self.sizes: list[tuple[int, str, str | None]] = []

    def before_batch_attempt(self, job, attempt):
        self.sizes.append((len(json.dumps(job.parameters).encode()), "BatchParameters", job.state_name))
        return None

    def before_lambda(self, name, event):
        self.sizes.append((len(json.dumps(event).encode()), "LambdaEvent", name))
        manifest = self.scratch / event["run_id"] / "plan" / "batches.json"
        if name == "collect_outputs" and manifest.exists():
            for item in json.loads(manifest.read_text()):
                child = {"run_id": event["run_id"], "request": event["request"], "batch": item}
                self.sizes.append((len(json.dumps(child).encode()), "ChildExecutionInput", item["batch"]))
        return None


def payload_sizes(engine: LocalEngine) -> list[tuple[int, str, str | None]]:
    """(bytes, event type, state) of every input/output/parameters payload in the history
    of every execution the engine lists."""
    sizes = []
    for execution in engine.list_executions():
        sizes.append((len(json.dumps(execution.input).encode()), "ExecutionInput", None))
        for event in execution.history():
            for key in ("input", "output", "parameters"):
                value = event.details.get(key)
                if isinstance(value, str):
                    sizes.append((len(value.encode()), event.type, event.state_name))
    return sizes


def validated_of(execution) -> dict[str, Any]:
    exited = [e for e in execution.history() if e.type == "TaskStateExited" and e.state_name == "ValidateInput"]
    return json.loads(exited[0].details["output"])["validated"]


@pytest.mark.slow
def test_a_run_over_the_threshold_keeps_every_state_payload_small(tmp_path):
    recorder = Recorder(tmp_path / "scratch")
    estate = Estate(tmp_path, injector=recorder)
    execution, targets = estate.start(N_LARGE)
    assert execution.wait(180) == "SUCCEEDED", (execution.error, execution.cause)

    validated = validated_of(execution)
    assert validated["targets"] is None and validated["n_targets"] == N_LARGE
    states = {e.state_name for e in execution.history() if e.type.endswith("StateEntered")}
    assert "FoldBatchesBulk" in states and "FoldBatches" not in states

    manifest = json.loads((tmp_path / "outputs" / execution.name / "manifest.json").read_text())
    assert [{k: t[k] for k in targets[0]} for t in manifest["targets"]] == targets  # the whole list, in order
    assert not (tmp_path / "scratch" / execution.name).exists()  # cleaned up

    sizes = payload_sizes(estate.engine)
    assert {"ChildExecutionInput", "BatchParameters", "LambdaEvent"} <= {kind for _, kind, _ in recorder.sizes}
    largest, etype, state = max(sizes + recorder.sizes, key=lambda s: s[0])
    assert largest < BOUND, f"{largest} bytes in {etype} of {state}"
    # Before, every state from Stage Inputs on carried the whole list: over the bound here,
    # and at the FASTA limit (10,000 records) far over Step Functions' 256 KB, whereas the
    # payloads now do not depend on the number of targets.
    target_list = len(json.dumps(targets).encode())
    assert largest + target_list > BOUND and target_list > BOUND, target_list
    max_records = TaskSettings.from_env(estate.lambda_env).limits.max_records
    assert target_list / N_LARGE * max_records > 256 * 1024


@pytest.mark.slow
def test_a_small_run_keeps_its_targets_in_the_state(tmp_path):
    estate = Estate(tmp_path)
    execution, targets = estate.start(3)
    assert execution.wait(60) == "SUCCEEDED", (execution.error, execution.cause)
    validated = validated_of(execution)
    assert validated["targets"] == targets and validated["n_targets"] == 3  # as before
    states = {e.state_name for e in execution.history() if e.type.endswith("StateEntered")}
    assert "FoldBatches" in states and "FoldBatchesBulk" not in states


class TamperWithStagedTargets:
    """Drops one target from the staged list just before Plan Batches reads it."""

    def __init__(self, scratch: Path):
        self.scratch = scratch

    def before_batch_attempt(self, job, attempt):
        return None

    def before_lambda(self, name, event):
        if name == "plan_batches":
            path = self.scratch / event["run_id"] / "input" / "targets.json"
            path.write_text(json.dumps(json.loads(path.read_text())[1:]))
        return None


@pytest.mark.parametrize("n", [STATE_TARGETS_MAX + 1])
@pytest.mark.slow
def test_a_staged_list_that_does_not_match_the_digest_fails_the_run_with_cleanup(tmp_path, n):
    estate = Estate(tmp_path, injector=TamperWithStagedTargets(tmp_path / "scratch"))
    execution, _ = estate.start(n)
    assert execution.wait(60) == "FAILED"
    assert execution.error == "StagingError" and "staged_targets_mismatch" in (execution.cause or "")
    states = [e.state_name for e in execution.history() if e.type.endswith("StateEntered")]
    assert "CleanupOnFailure" in states and "FoldBatchesBulk" not in states
    assert not (tmp_path / "scratch" / execution.name).exists()
    assert list((tmp_path / "outputs").iterdir()) == []
