"""The client over any registered client workflow: configuration (the SSM `workflows` map,
and older stacks without it), submission of another workflow's request to its own state
machine (the toy workload of tests/onboarding, on moto), and status / progress / failure of
a non-fold run from a recorded history (step names from the workflow's jobs.yaml)."""

from __future__ import annotations

import json

import boto3
import pytest

from foldstack.client.config import parse_parameters
from foldstack.client.history import parse
from foldstack.client.stepnames import StepNames, for_workflow
from foldstack.core.errors import AccessDeniedError, ConfigurationError, InputValidationError
from foldstack.workflows.specs import load_workflow
from tests.client.conftest import ENV, REGION, executions, keys
from tests.client.recorded import RUN_ID, RecordedBackend, cryoem_history, job_definition, recorded_run
from tests.onboarding.toy_workload import ToyRequest, write_dataset

BASE = {
    "state_machine_arn": "arn:aws:states:us-east-1:1:stateMachine:fs-fold", "input_prefix": "s3://in/up",
    "allowed_input_prefixes": "s3://in/up", "output_prefix": "s3://out/runs", "scratch_bucket": "scratch",
    "region": "us-east-1", "log_group_batch": "/aws/batch/job", "queues": "{}", "msa_cache_uri": "s3://c/msa",
    "size_classes": json.dumps({"small": {"max_residues": 400, "max_chains": 4}}),
}
CRYOEM_ARN = "arn:aws:states:us-east-1:1:stateMachine:fs-cryoem"


# --------------------------------------------------------------------------- configuration


def test_workflows_parameter_maps_each_workflow_to_its_state_machine():
    config = parse_parameters("dev", {**BASE, "workflows": json.dumps({"fold": BASE["state_machine_arn"],
                                                                      "cryoem": CRYOEM_ARN})})
    assert config.state_machine_for() == config.state_machine_for("fold") == BASE["state_machine_arn"]
    assert config.state_machine_for("cryoem") == CRYOEM_ARN
    assert config.execution_arn("r-1", "cryoem") == "arn:aws:states:us-east-1:1:execution:fs-cryoem:r-1"
    assert config.execution_arn("r-1") == "arn:aws:states:us-east-1:1:execution:fs-fold:r-1"


def test_an_older_stack_without_the_workflows_parameter_runs_fold_only():
    config = parse_parameters("dev", BASE)
    assert config.deployed_workflows == {"fold": BASE["state_machine_arn"]}
    with pytest.raises(ConfigurationError) as info:
        config.state_machine_for("cryoem")
    assert info.value.code == "workflow_not_deployed"
    assert "'cryoem' is not deployed in environment 'dev'; deployed: fold" in info.value.message
    assert "\n" not in info.value.message


@pytest.mark.parametrize("value, problem", [
    ("{not json", "is not valid JSON"),
    (json.dumps({"cryoem": "not-an-arn"}), "must map workflow names to state machine ARNs"),
    (json.dumps({"fold": CRYOEM_ARN}), "fold's state machine differs from state_machine_arn"),
])
def test_a_malformed_workflows_parameter_is_a_configuration_error(value, problem):
    with pytest.raises(ConfigurationError, match=problem):
        parse_parameters("dev", {**BASE, "workflows": value})


# --------------------------------------------------------------------------- submission (moto)


@pytest.mark.slow
def test_submit_a_toy_dataset_reaches_the_toy_state_machine(deployed_toy, tmp_path, monkeypatch):
    dataset = write_dataset(tmp_path / "dataset", box_size=64, label="walk")
    monkeypatch.chdir(tmp_path)  # relative paths in request.json are the dataset's, not the cwd's
    client = deployed_toy.client()
    run = client.submit(dataset, workflow="toy")
    assert run.existed is False and run.workflow == "toy"

    toy_arn = json.loads(deployed_toy.params["workflows"])["toy"]
    (execution,) = executions(toy_arn)
    assert execution["name"] == run.run_id and executions(deployed_toy.state_machine_arn) == []
    sfn = boto3.client("stepfunctions", region_name=REGION)
    body = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert body["workflow"] == "toy" and body["run_id"] == run.run_id
    request = ToyRequest.model_validate(body["request"])
    assert run.run_id == request.run_id() and run.run_id.startswith("walk-")  # the model's own run id
    assert request.output_uri == "s3://fs-results/runs"  # the environment's default
    (folder,) = request.files
    assert folder.startswith("s3://fs-inputs/uploads/")
    uploaded = keys("fs-inputs", "uploads/")
    assert uploaded == [f"{folder[len('s3://fs-inputs/'):]}/item{i}.dat" for i in range(2)]
    body_of = boto3.client("s3", region_name=REGION).get_object(Bucket="fs-inputs", Key=uploaded[1])["Body"].read()
    assert body_of == (dataset / "inputs" / "item1.dat").read_bytes()

    again = deployed_toy.client().submit(dataset / "request.json", workflow="toy")
    assert again.existed is True and again.run_id == run.run_id and len(executions(toy_arn)) == 1

    handle = deployed_toy.client().run(run.run_id)  # found in the toy machine, not fold's
    assert handle.status == "RUNNING" and handle.workflow == "toy" and handle.n_targets is None
    assert handle.to_dict()["workflow"] == "toy"
    listed = {r.run_id: r.workflow for r in deployed_toy.client().runs()}
    assert listed == {run.run_id: "toy"}


@pytest.mark.slow
def test_submit_toy_fields_as_keyword_arguments(deployed_toy, tmp_path):
    data = tmp_path / "one.dat"
    data.write_bytes(b"abc")
    client = deployed_toy.client()
    run = client.submit(workflow="toy", files=[str(data), "s3://fs-inputs/shared/ref.dat"], box_size=256,
                        output="s3://fs-results/runs/mine")
    body = json.loads(boto3.client("stepfunctions", region_name=REGION).describe_execution(
        executionArn=executions(json.loads(deployed_toy.params["workflows"])["toy"])[0]["executionArn"])["input"])
    local, shared = body["request"]["files"]
    assert local.startswith("s3://fs-inputs/uploads/") and local.endswith("/one.dat")
    assert shared == "s3://fs-inputs/shared/ref.dat" and body["request"]["output_uri"] == "s3://fs-results/runs/mine"
    assert run.request["box_size"] == 256


def test_a_bad_toy_request_uploads_nothing_and_starts_nothing(deployed_toy, tmp_path, monkeypatch):
    from foldstack.client import workloads

    toy_arn = json.loads(deployed_toy.params["workflows"])["toy"]
    client = deployed_toy.client()
    cases = [
        (write_dataset(tmp_path / "big", box_size=4096), InputValidationError, "request field box_size"),
        (write_dataset(tmp_path / "extra", colour="red"), InputValidationError, "request field colour"),
        (tmp_path / "absent", InputValidationError, "request not found"),
    ]
    for source, error, text in cases:
        with pytest.raises(error, match=text) as info:
            client.submit(source, workflow="toy")
        assert "\n" not in info.value.message
    with pytest.raises(InputValidationError, match="does not exist") as info:
        client.submit(workflow="toy", files=[str(tmp_path / "nope.dat")], box_size=64)
    assert info.value.code == "missing_input"
    with pytest.raises(AccessDeniedError, match="outside the allowed prefixes"):
        client.submit(workflow="toy", files=["s3://elsewhere/x.dat"], box_size=64)
    with pytest.raises(AccessDeniedError, match="output"):
        client.submit(write_dataset(tmp_path / "out"), workflow="toy", output="s3://elsewhere/out")
    with pytest.raises(InputValidationError, match="engine, num_models: fold options") as info:
        client.submit(write_dataset(tmp_path / "opts"), workflow="toy", engine="esmfold", num_models=2)
    assert info.value.code == "invalid_request"
    monkeypatch.setattr(workloads, "MAX_UPLOAD", 50)  # a file larger than one PutObject: give its s3:// URI
    with pytest.raises(InputValidationError, match="item0.dat is 120 bytes; the client uploads at most 50") as info:
        client.submit(write_dataset(tmp_path / "large"), workflow="toy")
    assert info.value.code == "too_large"
    assert executions(toy_arn) == [] and keys("fs-inputs", "uploads/") == []


@pytest.mark.slow
def test_unknown_operator_and_undeployed_workflows_are_one_line_errors(deployed_toy, tmp_path):
    client = deployed_toy.client()
    dataset = write_dataset(tmp_path / "d")
    with pytest.raises(InputValidationError) as info:
        client.submit(dataset, workflow="nope")
    assert info.value.code == "invalid_request"
    assert info.value.message == "unknown workflow 'nope'; deployed in environment 'test': fold, toy"
    with pytest.raises(InputValidationError, match="not submitted by users; client workflows: fold, toy"):
        client.submit(dataset, workflow="toy_operator")
    # registered here, but the environment's stack predates it: no `workflows` entry
    boto3.client("ssm", region_name=REGION).delete_parameter(Name=f"/foldstack/{ENV}/workflows")
    with pytest.raises(ConfigurationError) as info:
        deployed_toy.client().submit(dataset, workflow="toy")
    assert info.value.code == "workflow_not_deployed" and info.value.message.endswith("deployed: fold")
    assert keys("fs-inputs", "uploads/") == []


# --------------------------------------------------------------------------- following a non-fold run


def test_cryoem_steps_are_named_by_their_jobs_not_their_states():
    names = for_workflow("cryoem")
    assert names is not None
    progress = parse(cryoem_history(), names)
    batch_rows = [(s.step, s.target, s.job_id, s.job) for s in progress.steps if s.target]
    assert batch_rows == [("preprocess", "b00000", "job-pre-0", "cryoem_preprocess"),
                          ("preprocess", "b00001", "job-pre-1", "cryoem_preprocess")]
    run_level = [(s.step, s.state, s.size_class, s.status) for s in progress.steps if s.target is None and s.job]
    assert run_level == [("curate", "Select", None, "SUCCEEDED"),
                         ("class2d", "Classify_small", "small", "SUCCEEDED"),
                         ("initial_model", "Denovo_small", "small", "SUCCEEDED"),
                         ("refine3d", "GoldStandard_small", "small", "SUCCEEDED"),
                         ("postprocess", "Sharpen", None, "SUCCEEDED")]
    rows = {r.step: (r.done, r.running, r.failed, r.per_target) for r in progress.summary()}
    assert rows == {"preprocess": (2, 0, 0, True), "curate": (1, 0, 0, False), "class2d": (1, 0, 0, False),
                    "initial_model": (1, 0, 0, False), "refine3d": (1, 0, 0, False),
                    "postprocess": (1, 0, 0, False)}
    # without the workflow's jobs the state names are all there is (the old reading)
    assert [s.step for s in parse(cryoem_history()).steps if s.job_id][-1] == "sharpen"


def test_job_definitions_resolve_by_the_longest_job_name_in_cloud_and_local_form():
    names = StepNames.from_jobs("cryoem", load_workflow("cryoem").jobs)
    params = {"JobDefinition": job_definition("cryoem", "cryoem_gpu", "large", revision=12),
              "Parameters": {"stage": "REFINE3D"}}
    resolved = names.resolve(params)
    assert (resolved.step, resolved.job, resolved.size_class) == ("refine3d", "cryoem_gpu", "large")
    local = names.resolve({"JobDefinition": "arn:aws:batch:us-east-1:000000000000:job-definition/"
                                            "foldstack-local-cryoem_preprocess:1"})
    assert (local.step, local.job, local.size_class) == ("preprocess", "cryoem_preprocess", None)
    assert names.resolve({"JobDefinition": "foldstack-test-fold-predict-small:1"}) is None
    assert names.resolve({"JobName": "x"}) is None and names.resolve("not a mapping") is None
    fold = for_workflow("fold")
    override = fold.resolve({"JobDefinition": job_definition("fold", "msa"),
                             "ContainerOverrides": {"Command": ["foldstack", "step", "msa-chains", "--run-id", "r"]}})
    assert (override.step, override.job) == ("msa-chains", "msa")  # the command the job really ran


def test_status_progress_and_failure_of_a_recorded_cryoem_run():
    run = recorded_run(RecordedBackend(cryoem_history()))
    assert run.workflow == "cryoem" and not run.is_fold and run.n_targets is None
    doc = run.to_dict(steps=True)
    assert doc["workflow"] == "cryoem" and doc["status"] == "SUCCEEDED" and "failure" not in doc
    assert [s["step"] for s in doc["steps"] if s["job"]] == ["preprocess", "preprocess", "curate", "class2d",
                                                             "initial_model", "refine3d", "postprocess"]
    assert run.outcome() is None and run.failures() == [] and run.outcome_summary() == {}

    logs = {"job-refine": ["iteration 3", "[12:00:00] foldstack step refine3d [] FAILED (out of memory, exit 3): "
                                          "[out_of_memory] the box needs a larger GPU"]}
    failed = recorded_run(RecordedBackend(cryoem_history(fail_refine=True), status="FAILED", logs=logs))
    failure = failed.failure()
    assert (failure.step, failure.state, failure.target, failure.job_id) == ("refine3d", "GoldStandard_small", None,
                                                                             "job-refine")
    assert failure.code == "out_of_memory" and failure.exit_code == 3
    assert "the box needs a larger GPU" in failure.message and "cryoem/job-refine" in failure.log
    assert failed.logs("refine3d") == ["==> cryoem/job-refine <==", *logs["job-refine"]]


def test_a_fold_history_keeps_its_step_names_with_the_job_reading():
    from tests.client.recorded import Recorder

    r = Recorder()
    r.add("ExecutionStarted", {"input": "{}"})
    started = r.add("MapStateStarted", {"length": 1})
    r.add("MapIterationStarted", {"name": "FoldBatches", "index": 0}, prev=started)
    item = {"batch": {"batch": "b00000", "size_class": "small", "targets": [{"id": "t1"}, {"id": "t2"}]}}
    r.batch_task("Predict_small", job_definition("fold", "predict", "small"), {"target": "t1,t2"}, "job-p",
                 item=item)
    steps = parse(r.events, for_workflow("fold")).steps
    assert [(s.step, s.target, s.size_class, s.job) for s in steps] == [("predict", "t1", "small", "predict"),
                                                                         ("predict", "t2", "small", "predict")]


def test_a_batch_named_at_the_top_of_its_map_item_is_the_steps_target():
    from tests.client.recorded import Recorder

    r = Recorder()
    started = r.add("MapStateStarted", {"length": 2})
    for i in range(2):
        r.add("MapIterationStarted", {"name": "Batches", "index": i}, prev=started)
        r.batch_task("Pre", job_definition("cryoem", "cryoem_preprocess"), {"batch": f"b{i}"}, f"j{i}",
                     item={"batch": f"b{i}", "movies": ["m.mrc"]})
    steps = parse(r.events, for_workflow("cryoem")).steps
    assert [(s.step, s.target, s.job_id) for s in steps] == [("preprocess", "b0", "j0"), ("preprocess", "b1", "j1")]


def test_another_workflows_manifest_is_read_for_its_files_outcome_and_metrics():
    from foldstack.client.published import read_manifest
    from foldstack.core.manifest import ManifestError

    doc = {"run_id": "r", "outcome": "succeeded", "metrics": {"resolution_a": 3.9},
           "files": {"maps/sharp.mrc": {"size": 10, "sha256": "ab"}, "../escape": {}, "/abs": {}},
           "run_files": ["report.html", {"path": "fsc.tsv", "size": 3}, {"no": "path"}, "manifest.json"],
           "targets": [{"id": "t1", "files": {"model.cif": {"size": 1}}}]}
    m = read_manifest(json.dumps(doc))
    assert [(e.path, e.size, e.sha256, e.target) for e in m.files] == [
        ("maps/sharp.mrc", 10, "ab", None), ("report.html", None, None, None), ("fsc.tsv", 3, None, None),
        ("t1/model.cif", 1, None, "t1")]
    assert (m.run_id, m.outcome, m.metrics) == ("r", "succeeded", {"resolution_a": 3.9})
    cryoem = {"run_id": "r", "results": {"resolution": 7.5}, "files": {"fsc.tsv": {"sha256": "0" * 64, "size": 2}}}
    assert read_manifest(json.dumps(cryoem)).metrics == {"resolution": 7.5}
    for bad in ("[1, 2]", "{not json"):
        with pytest.raises(ManifestError):
            read_manifest(bad)


def test_the_live_table_of_a_cryoem_run_shows_each_step_once(capsys):
    run = recorded_run(RecordedBackend(cryoem_history()))
    assert run.wait(progress=True) == "SUCCEEDED"
    shown = capsys.readouterr().err.splitlines()
    assert shown[0].split()[:2] == [RUN_ID, "SUCCEEDED"]
    rows = {line.split()[0]: line.split()[1:4] for line in shown[2:] if line.strip()}
    assert rows == {"preprocess": ["2", "0", "0"], "curate": ["1", "0", "0"], "class2d": ["1", "0", "0"],
                    "initial_model": ["1", "0", "0"], "refine3d": ["1", "0", "0"], "postprocess": ["1", "0", "0"]}
