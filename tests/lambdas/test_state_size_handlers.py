"""Large runs keep their target list out of the Step Functions state (256 KB per payload):
Validate Input returns only the count and a digest above `state_targets_max`; Stage Inputs'
`input/targets.json` is then the list Plan Batches and Collect Outputs read, checked
against the digest. Local directories and moto's S3."""

from __future__ import annotations

import json

import pytest
from tests.lambdas.test_handlers import event_for, fake_step_outputs, keys, load_handler

from foldstack.core.errors import InputValidationError, StagingError
from foldstack.core.targets import targets_digest

validate, stage, plan, publish, collect = (
    load_handler(n) for n in ("validate_input", "stage_inputs", "plan_batches", "publish_batch", "collect_outputs"))


def publish_all(event, batches):
    """Publish Batch for each planned batch, as the workflow does when each Predict succeeded."""
    for batch in batches:
        publish({"run_id": event["run_id"], "request": event["request"], "batch": batch, "msa": [],
                 "predict": {"failed": False}})
AMINO = "ACDEFGHIKLMNPQRSTVWY"
PLAN_KNOBS = {"max_targets_per_job": 2, "bulk_threshold": 200}


def records(n):
    return [(f"t{i:03d}", "M" + "".join(AMINO[(i * 7 + j) % 20] for j in range(20 + i % 9))) for i in range(n)]


def write_fasta(local_env, n):
    data = "".join(f">{rid}\n{seq}\n" for rid, seq in records(n))
    path = local_env["inputs"] / "many.fasta"
    path.write_text(data)
    return event_for(str(path), str(local_env["outputs"]), data)


def test_validate_returns_targets_up_to_the_knob_then_only_count_and_digest(local_env):
    event = write_fasta(local_env, 5)
    small = validate({**event, "state_targets_max": 5})
    assert [t["id"] for t in small["targets"]] == [f"t{i:03d}" for i in range(5)]
    assert small["n_targets"] == 5 and small["targets_digest"] == targets_digest(small["targets"])
    large = validate({**event, "state_targets_max": 4})
    assert large["targets"] is None and large["n_targets"] == 5
    assert large["targets_digest"] == small["targets_digest"]
    assert len(json.dumps(large)) < 300
    # without the knob (an older definition) every target goes back, as before
    assert validate(event)["targets"] == small["targets"]
    for bad in (-1, "5", 2.5, True):
        with pytest.raises(InputValidationError) as err:
            validate({**event, "state_targets_max": bad})
        assert err.value.code == "malformed_event"


def test_digest_is_canonical_json_of_the_list():
    a = {"id": "x", "length": 3, "chains": 1, "sha256": "0" * 64, "size_class": "small"}
    reordered = dict(reversed(list(a.items())))
    assert targets_digest([a]) == targets_digest([reordered])  # key order does not matter
    assert targets_digest([a, {**a, "id": "y"}]) != targets_digest([{**a, "id": "y"}, a])  # list order does


def test_pointer_path_stage_plan_collect_match_the_inline_path(local_env):
    event = write_fasta(local_env, 7)
    full = validate(event)
    small = validate({**event, "state_targets_max": 3})
    pointer = {"targets": None, "targets_digest": small["targets_digest"]}  # what the ASL passes

    assert stage({**event, **pointer})["staged"] == 7
    staged = json.loads((local_env["scratch"] / event["run_id"] / "input" / "targets.json").read_text())
    assert staged == full["targets"]

    inline = plan({"run_id": event["run_id"], "targets": full["targets"], **PLAN_KNOBS})
    assert plan({"run_id": event["run_id"], **pointer, **PLAN_KNOBS}) == inline
    assert plan({"run_id": event["run_id"], "targets_digest": small["targets_digest"], **PLAN_KNOBS}) == inline

    for rid, _ in records(7):
        fake_step_outputs(str(local_env["scratch"]), event["run_id"], rid, "predict",
                          {"ranked_0.pdb": b"ATOM\n", "metrics.json": b'{"mean_plddt": 50}'})
    publish_all(event, inline["batches"])
    result = collect({**event, **pointer})
    assert result["targets"] == 7
    manifest = json.loads((local_env["outputs"] / event["run_id"] / "manifest.json").read_text())
    assert [{k: t[k] for k in full["targets"][0]} for t in manifest["targets"]] == full["targets"]
    assert collect({**event, **pointer}) == result  # re-run after publishing: idempotent


def test_digest_mismatch_is_a_typed_error(local_env):
    event = write_fasta(local_env, 4)
    digest = validate({**event, "state_targets_max": 0})["targets_digest"]
    with pytest.raises(StagingError) as err:  # inputs changed between validation and staging
        stage({**event, "targets": None, "targets_digest": "f" * 64})
    assert err.value.code == "staging_failed"
    assert not (local_env["scratch"] / event["run_id"]).exists()

    pointer = {"run_id": event["run_id"], "targets_digest": digest}
    with pytest.raises(StagingError) as err:  # not staged (yet)
        plan({**pointer, **PLAN_KNOBS})
    assert err.value.code == "staged_targets_missing"

    stage({**event, "targets_digest": digest})
    path = local_env["scratch"] / event["run_id"] / "input" / "targets.json"
    staged = json.loads(path.read_text())
    path.write_text(json.dumps(staged[:-1]))  # one target dropped after staging
    for call in (lambda: plan({**pointer, **PLAN_KNOBS}), lambda: collect({**event, **pointer})):
        with pytest.raises(StagingError) as err:
            call()
        assert err.value.code == "staged_targets_mismatch"
        assert "does not match the validated one" in str(err.value)
    path.write_text("{not json")
    with pytest.raises(StagingError) as err:
        plan({**pointer, **PLAN_KNOBS})
    assert err.value.code == "staged_targets_mismatch"
    path.write_text(json.dumps(staged))  # restored: the pointer path works again
    assert plan({**pointer, **PLAN_KNOBS})["n_targets"] == 4
    assert list(local_env["outputs"].iterdir()) == []  # nothing was published


@pytest.mark.parametrize("name", ["stage_inputs", "plan_batches", "collect_outputs"])
def test_event_without_targets_or_digest_is_malformed(local_env, name):
    event = write_fasta(local_env, 2)
    # exactly the keys the ASL passes, less the targets: only the targets rule can fail
    event = {"run_id": event["run_id"], **(PLAN_KNOBS if name == "plan_batches" else {"request": event["request"]})}
    for missing in ({"targets": None}, {}, {"targets": None, "targets_digest": None}):
        with pytest.raises(InputValidationError) as err:
            load_handler(name)({**event, **missing})
        assert err.value.code == "malformed_event"
        assert err.value.message == "event is missing targets (or targets_digest)"


def test_pointer_path_on_s3(s3_env):  # noqa: F811
    s3 = s3_env
    data = "".join(f">{rid}\n{seq}\n" for rid, seq in records(3))
    s3.put_object(Bucket="lake", Key="inputs/a.fasta", Body=data.encode())
    event = event_for("s3://lake/inputs/a.fasta", "s3://lake/results", data)
    digest = validate({**event, "state_targets_max": 1})["targets_digest"]
    pointer = {"targets": None, "targets_digest": digest}
    stage({**event, **pointer})
    assert f"{event['run_id']}/input/targets.json" in keys(s3, "scratch")
    planned = plan({"run_id": event["run_id"], **pointer, **PLAN_KNOBS})
    assert planned["n_batches"] == 2
    for rid, _ in records(3):
        fake_step_outputs("s3://scratch", event["run_id"], rid, "predict", {"ranked_0.pdb": b"ATOM\n",
                                                                            "metrics.json": b"{}"})
    publish_all(event, planned["batches"])
    assert collect({**event, **pointer})["targets"] == 3
    with pytest.raises(StagingError) as err:
        plan({"run_id": event["run_id"], "targets_digest": "0" * 64, **PLAN_KNOBS})
    assert err.value.code == "staged_targets_mismatch"
