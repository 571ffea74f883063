"""`Client.submit(workflow="cryoem")` on moto: a dataset folder (tiny header-only movies, a
reference, request.json) is checked offline (movie headers included), uploaded under the
input prefix and started on the cryoem state machine, named by the run id that cryoem's
own Validate Input (`foldstack.cryoem.tasks.plan_run`) recomputes from the uploaded request."""

from __future__ import annotations

import json
import time

import boto3
import numpy as np
import pytest

from foldstack.core.errors import InputValidationError
from foldstack.cryoem.mrc import write_mrc
from tests.client.conftest import REGION, deploy_workflow, executions, keys

OPTICS = {"pixel_size": 2.5, "voltage_kv": 300.0, "cs_mm": 2.7, "amplitude_contrast": 0.1, "dose_per_frame": 1.5}
CLASSES = [("small", 256), ("medium", 448), ("large", 800)]


@pytest.fixture
def deployed_cryoem(deployed_plain):
    deploy_workflow(deployed_plain, "cryoem")
    return deployed_plain


def dataset(root, *, frames=(4, 4, 4)):
    (root / "movies").mkdir(parents=True)
    for i, n in enumerate(frames):
        write_mrc(root / "movies" / f"m{i}.mrcs", np.zeros((n, 160, 192), np.float32), 2.5)
    (root / "ref.mrc").write_bytes(b"a reference map")
    (root / "request.json").write_text(json.dumps({"movies": "movies", "optics": OPTICS, "particle_diameter": 130.0,
                                                   "box_size": 64, "reference": "ref.mrc", "batch_size": 2}))
    return root


@pytest.mark.slow
def test_a_cryoem_dataset_is_uploaded_and_started_under_the_run_id_validate_input_expects(deployed_cryoem, tmp_path):
    from foldstack.cryoem.tasks import plan_run

    client = deployed_cryoem.client()
    run = client.submit(dataset(tmp_path / "ds"), workflow="cryoem")
    arn = json.loads(deployed_cryoem.params["workflows"])["cryoem"]
    (execution,) = executions(arn)
    assert execution["name"] == run.run_id and run.workflow == "cryoem"
    body = json.loads(boto3.client("stepfunctions", region_name=REGION).describe_execution(
        executionArn=execution["executionArn"])["input"])
    request = body["request"]
    assert body["workflow"] == "cryoem" and request["movies"].startswith("s3://fs-inputs/uploads/")
    assert request["reference"].startswith("s3://fs-inputs/uploads/") and request["reference"].endswith("/ref.mrc")
    uploaded = keys("fs-inputs", "uploads/")
    assert sum(k.endswith(".mrcs") for k in uploaded) == 3 and sum(k.endswith("/ref.mrc") for k in uploaded) == 1

    # what the cryoem Validate Input Lambda does with this execution's input: same run id, every movie found
    params = deployed_cryoem.params
    plan = plan_run(request, size_classes=CLASSES, allowed_input_prefixes=tuple(
        params["allowed_input_prefixes"].split(",")), allowed_output_prefixes=(params["output_prefix"],),
        run_id=run.run_id)
    assert [m.rsplit("/", 1)[-1] for m in plan.movies] == ["m0.mrcs", "m1.mrcs", "m2.mrcs"]
    assert plan.size_class == "small" and list(plan.batches) == ["batch-000", "batch-001"]

    again = deployed_cryoem.client().submit(tmp_path / "ds" / "request.json", workflow="cryoem")
    assert again.existed is True and again.run_id == run.run_id and len(executions(arn)) == 1


def test_movies_that_disagree_are_refused_before_anything_is_uploaded(deployed_cryoem, tmp_path):
    client = deployed_cryoem.client()
    with pytest.raises(InputValidationError, match="all movies must match") as info:
        client.submit(dataset(tmp_path / "ds", frames=(4, 3, 4)), workflow="cryoem")
    assert "\n" not in info.value.message
    with pytest.raises(InputValidationError, match="box_size"):
        client.submit(dataset(tmp_path / "ds2"), workflow="cryoem", box_size=2048)
    assert keys("fs-inputs", "uploads/") == [] and executions(json.loads(
        deployed_cryoem.params["workflows"])["cryoem"]) == []


@pytest.mark.slow
def test_local_mode_submits_a_cryoem_dataset_to_a_runner_of_that_workflow(tmp_path):
    from foldstack.client import Client

    client = Client.local(tmp_path / "home", output=tmp_path / "out")
    run = client.submit(dataset(tmp_path / "ds"), workflow="cryoem")
    try:
        assert run.workflow == "cryoem" and run.existed is False
        record = client._backend.runner.describe(run.run_id)  # one home: the fold runner reads it too
        assert record["workflow"] == "cryoem" and record["request"]["box_size"] == 64
        assert client.run(run.run_id).info.workflow == "cryoem"
        assert [r.workflow for r in client.runs()] == ["cryoem"]
        # The run works on its own thread: on a loaded machine it may not have entered its
        # first state yet, so wait for it before cancelling (bounded).
        deadline = time.monotonic() + 60
        while "validateinput" not in {s.step for s in client.run(run.run_id).steps()}:
            assert time.monotonic() < deadline, "the run never entered validate input"
            time.sleep(0.1)
    finally:
        status = run.cancel("test over")
    assert status in ("ABORTED", "FAILED", "SUCCEEDED")
    with pytest.raises(InputValidationError, match="all movies must match"):
        client.submit(dataset(tmp_path / "bad", frames=(4, 3, 4)), workflow="cryoem")
