"""The one model of jobs.yaml (foldstack.workflows.specs.JobsFile): what it accepts, what it
derives for the local engine and the cost estimate, and that its retry-rule checks are the
same ones the local Batch evaluator runs on AWS-shaped retry strategies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.jobspecs import BAD_RETRY_STRATEGIES

from foldstack import cost
from foldstack.local.batch_retry import RetryStrategy, RetryStrategyError
from foldstack.workflows.specs import JobsFile, RetrySpec, SizeClassSpec, load_workflow

REPO = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).parent / "asl_fixtures" / "jobs.yaml"
CATCH_ALL = {"on_exit_code": "*", "action": "EXIT"}


@pytest.mark.parametrize("spec", BAD_RETRY_STRATEGIES, ids=range(len(BAD_RETRY_STRATEGIES)))
def test_model_and_evaluator_reject_the_same_rules_with_the_same_check(spec):
    with pytest.raises(RetryStrategyError) as from_evaluator:
        RetryStrategy.from_spec({**spec, "evaluate_on_exit": [*spec.get("evaluate_on_exit", []), CATCH_ALL]})
    # Followed by the catch-all EXIT, so only the rule under test can fail the model.
    with pytest.raises(ValueError) as from_model:
        RetrySpec.model_validate({"attempts": spec["attempts"],
                                  "evaluate_on_exit": [*spec.get("evaluate_on_exit", []), CATCH_ALL]})
    if "MAYBE" not in str(spec):  # the model's Literal refuses a bad action before the shared check
        assert str(from_evaluator.value) in str(from_model.value)


def test_only_jobs_yaml_requires_the_final_catch_all_exit():
    rules = [{"on_status_reason": "Host EC2*", "action": "RETRY"}]
    assert RetryStrategy.from_spec({"attempts": 2, "evaluate_on_exit": rules}).attempts == 2  # an ASL may
    for last in ({"on_exit_code": "1", "action": "EXIT"}, {"on_exit_code": "*", "action": "RETRY"},
                 {"on_exit_code": "*", "on_reason": "Oops*", "action": "EXIT"}, None):
        with pytest.raises(ValueError, match="must end with"):
            RetrySpec.model_validate({"attempts": 2, "evaluate_on_exit": rules + ([last] if last else [])})


def test_unquoted_exit_codes_are_text_as_terraform_reads_them():
    spec = RetrySpec.model_validate({"attempts": 3, "evaluate_on_exit": [
        {"on_exit_code": 75, "action": "RETRY"}, CATCH_ALL]})
    assert spec.evaluate_on_exit[0].on_exit_code == "75"


def test_jobs_know_their_names_definitions_resources_and_queues():
    jobs = JobsFile.load(REPO / "statemachines" / "fold" / "jobs.yaml")
    assert jobs.source == REPO / "statemachines" / "fold" / "jobs.yaml"
    msa, predict = jobs.jobs["msa"], jobs.jobs["predict"]
    assert (msa.name, predict.name) == ("msa", "predict")
    assert msa.definition_names() == [("msa", None)]
    assert predict.definition_names() == [("predict", c) for c in jobs.size_classes]
    assert msa.resources_for("small") == msa.resources and msa.queue_for() == "cpu-spot"
    assert predict.resources_for("large").gpus == 1 and predict.queue_for("large") == "gpu-large"
    with pytest.raises(KeyError, match="huge"):
        predict.resources_for("huge")
    assert jobs.size_classes["medium"].gpu_memory_gib == 48
    # The dump round-trips (the renderer and the tests read it) and carries no derived name.
    raw = json.loads(jobs.model_dump_json())
    assert "name" not in raw["jobs"]["msa"] and JobsFile.model_validate(raw).model_dump() == jobs.model_dump()


def test_every_jobs_yaml_in_the_repo_is_the_model():
    paths = sorted((REPO / "statemachines").glob("*/jobs.yaml")) + [FIXTURE]
    for path in paths:
        assert JobsFile.load(path).jobs, path
    assert load_workflow("refresh_databases", REPO / "statemachines").jobs.workflow == "refresh_databases"


def test_size_classes_refuse_unknown_keys():
    with pytest.raises(ValueError):
        SizeClassSpec.model_validate({"max_residues": 1, "max_chains": 1, "gpu_mem_gib": 24})


def test_cost_takes_the_model_only(fold_workflow):
    table = cost.load_price_table()
    with pytest.raises(TypeError, match="JobsFile"):
        cost.rate_for(fold_workflow.jobs.model_dump(), "msa", None, table)
    assert cost.rate_for(fold_workflow.jobs, "msa", None, table).queue == "cpu-spot"


def test_size_classes_declare_their_own_kind_of_bounds():
    """fold's classes bound targets (residues + chains), cryoem's the particle box; a class
    declares one kind, whole, and a workflow's classes share it."""
    assert load_workflow("cryoem", REPO / "statemachines").jobs.size_classes["medium"].max_box_px == 448
    fold = load_workflow("fold", REPO / "statemachines").jobs.size_classes["small"]
    assert fold.bounds == "target" and fold.target_limits().max_residues == 400
    assert SizeClassSpec(max_box_px=256).bounds == "box"
    for bad in ({"max_residues": 400}, {"max_box_px": 256, "max_chains": 4}, {"gpu_memory_gib": 24}):
        with pytest.raises(ValueError, match="size class"):
            SizeClassSpec.model_validate(bad)
    jobs = load_workflow("cryoem", REPO / "statemachines").jobs.model_dump()
    jobs["size_classes"]["small"] = {"max_residues": 400, "max_chains": 4}
    with pytest.raises(ValueError, match="mix kinds of bounds"):
        JobsFile.model_validate(jobs)
