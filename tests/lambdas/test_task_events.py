"""`@task_handler` and the task contracts (foldstack.tasks.events): malformed events are
`InputValidationError(code="malformed_event")` with one line naming the bad fields."""

from __future__ import annotations

import hashlib

import pytest
from tests.lambdas.test_handlers import load_handler

from foldstack.core.errors import InputValidationError
from foldstack.tasks.events import CONTRACTS, PlanBatchesEvent, StageInputsEvent
from foldstack.tasks.runtime import parse_event, task_handler

SHA = hashlib.sha256(b"x").hexdigest()
REQUEST = {"inputs": [{"id": "a", "sequence": "MKTAYIAKQR"}], "output_uri": "/nowhere", "engine": "esmfold"}


def malformed(name, event) -> str:
    with pytest.raises(InputValidationError) as err:
        load_handler(name)(event)
    assert err.value.code == "malformed_event"
    assert "\n" not in err.value.message
    return err.value.message


def test_missing_fields_are_named_as_require_did(local_env):
    assert malformed("validate_input", {}) == "event is missing run_id, request"
    assert malformed("cleanup", {"failed": True}) == "event is missing run_id"
    assert malformed("msa_cache", {"run_id": "r", "request": REQUEST}) == "event is missing target"
    assert malformed("msa_cache", {"run_id": "r", "request": REQUEST, "target": {"id": "a"}}) == (
        "event is missing target.sha256, target.length, target.chains")


def test_unknown_keys_are_rejected(local_env):
    assert malformed("stage_inputs", {"run_id": "r", "request": REQUEST, "targets_digest": SHA, "tragets": []}) == (
        "event has unexpected field tragets")
    message = malformed("plan_batches", {"run_id": "r", "targets_digest": SHA, "max_targets_per_job": 2,
                                         "bulk_threshold": 1, "request": {}, "x": 1})
    assert message == "event has unexpected fields request, x"


def test_bad_values_name_the_field_and_what_came(local_env):
    knobs = {"run_id": "r", "targets_digest": SHA, "max_targets_per_job": 2, "bulk_threshold": 1}
    for bad in ("8", 2.5, True, None):
        message = malformed("plan_batches", {**knobs, "max_targets_per_job": bad})
        assert message.startswith("event field max_targets_per_job: ") and repr(bad) in message
    assert "must be" not in malformed("plan_batches", {**knobs, "bulk_threshold": -1})
    assert malformed("stage_inputs", {"run_id": "r", "request": REQUEST, "targets_digest": "abc"}).startswith(
        "event field targets_digest: String should match pattern")
    assert malformed("validate_input", {"run_id": "r", "request": "not an object"}).startswith(
        "event field request: Input should be a valid dictionary")
    message = malformed("stage_inputs", {"run_id": "r", "request": REQUEST, "targets": [{"id": "a"}]})
    assert message.startswith("event is missing targets.0.length, targets.0.chains")


def test_many_problems_stay_one_short_line(local_env):
    targets = [{"id": f"t{i}\nx", "length": "long"} for i in range(500)]
    message = malformed("collect_outputs", {"run_id": "r", "request": REQUEST, "targets": targets})
    assert message.endswith(" more") and len(message) < 1000


def test_an_event_that_is_no_object(local_env):
    for event in (None, [], "run"):
        assert malformed("cleanup", event) == "event must be a JSON object"


def test_cleanup_takes_whatever_a_failed_run_left(local_env):
    """The failure path runs Cleanup with the raw execution input: a run id that is no
    string cleans nothing, a request that is no object touches no published results."""
    (local_env["scratch"] / "keep").mkdir()
    cleanup = load_handler("cleanup")
    for run_id in (5, ["keep"], {"a": 1}, None):
        assert cleanup({"run_id": run_id, "request": "garbage", "failed": True}) == {
            "run_id": None, "scratch_deleted": 0, "partial_outputs_deleted": 0, "kept_targets": 0}
    assert cleanup({"run_id": "keep", "request": ["x"], "failed": True})["partial_outputs_deleted"] == 0
    assert not (local_env["scratch"] / "keep").exists()


def test_a_plan_batch_target_is_what_the_msa_cache_lookup_takes(local_env):
    """Plan Batches' result feeds the MSA cache lookup through the ASL's ItemSelector."""
    targets = [{"id": "a", "length": 10, "chains": 1, "sha256": SHA, "size_class": "small"}]
    plan = load_handler("plan_batches")({"run_id": "r", "targets": targets, "max_targets_per_job": 2,
                                         "bulk_threshold": 5})
    [batch] = plan["batches"]
    out = load_handler("msa_cache")({"run_id": "r", "request": REQUEST, "target": batch["targets"][0]})
    assert out == {"hit": False, "reason": "no cache or database root configured", "cache_root": "",
                   "db_version": None}


def test_the_targets_rule_lives_in_one_base_model():
    for name, contract in CONTRACTS.items():
        has_targets = "targets" in contract.event.model_fields
        assert has_targets == (name in ("stage_inputs", "plan_batches", "collect_outputs"))
    with pytest.raises(InputValidationError, match=r"event is missing targets \(or targets_digest\)"):
        parse_event(StageInputsEvent, {"run_id": "r", "request": {}})
    event = parse_event(PlanBatchesEvent, {"run_id": "r", "targets_digest": SHA, "max_targets_per_job": 1,
                                           "bulk_threshold": 0})
    assert event.target_dicts() is None


def test_a_handler_must_return_its_result_model(local_env):
    @task_handler("cleanup")
    def returns_a_dict(event, settings):
        return {"run_id": event.run_id, "scratch_deleted": 0, "partial_outputs_deleted": 0}

    with pytest.raises(TypeError, match="returned dict, not CleanupResult"):
        returns_a_dict({"run_id": "r"})
    with pytest.raises(KeyError):
        task_handler("no_such_task")
