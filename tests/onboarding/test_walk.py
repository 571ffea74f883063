"""The onboarding walk (docs/onboarding.md), proved on a copy of the tree.

One module-scoped copy of what git would commit; the toy workload of ``walk_toy/`` added
the way the walk adds a workload (its folder, its image with its package, one
``workloads.yaml`` entry) and rendered with ``foldstack render``. Then, each on that copy:

(a) it renders, and the other workflows' rendered files are unchanged;
(b) Terraform plans it (``terraform test`` on the dev environment, mock provider);
(c) it runs locally to SUCCEEDED (``foldstack run --local --workflow toy``), outputs published;
(d) the client submits it on moto: the toy's state machine starts with the right input,
    which the toy's real Validate Input accepts;
(e) the walk touched nothing but the toy's folder, image, package and registration, and
    the CI image matrix includes the toy's image.

The toy's Python package (request model, Lambda tasks, Batch step) lives in the copy under
``containers/toy/src`` and is put on ``sys.path`` / ``PYTHONPATH``: nothing under ``src/``
changes. The non-Terraform tests take a few seconds; (b) is marked ``terraform``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from typer.testing import CliRunner

from tests.onboarding.walk import PACKAGE_ROOT, WORKFLOW, add_toy, changed, copy_tree, snapshot

HERE = Path(__file__).resolve().parent
REGION, ENV = "us-east-1", "test"
#: What the walk may add or change (the rendered ASL is `foldstack render`'s output).
ALLOWED = ("statemachines/toy/", "containers/toy/")
ALLOWED_FILES = {"statemachines/workloads.yaml", "statemachines/rendered/toy.asl.json"}
#: This test's own probe for (b), not part of the walk.
PLAN_PROBE = "terraform/envs/dev/tests/walk.tftest.hcl"
OTHERS = ("fold", "cryoem", "refresh_databases")


@dataclass
class Walk:
    tree: Path
    before: dict[str, str]  # the copy's files before the walk: {path: digest}
    work: Path  # scratch space outside the tree

    @property
    def statemachines(self) -> Path:
        return self.tree / "statemachines"


def _cli(args: list[str], env: dict[str, str]):
    from foldstack.cli import app

    return CliRunner().invoke(app, args, env=env, catch_exceptions=False)


@pytest.fixture(scope="module")
def walk(tmp_path_factory) -> Walk:
    work = tmp_path_factory.mktemp("walk")
    tree = copy_tree(work / "tree")
    before = snapshot(tree)
    add_toy(tree)
    result = _cli(["render"], {"FOLDSTACK_STATEMACHINES_DIR": str(tree / "statemachines")})
    assert result.exit_code == 0, result.output
    return Walk(tree, before, work)


@pytest.fixture
def toy_env(walk, monkeypatch):
    """The copy's registry, Lambdas and the toy's package in force (this process and the
    job subprocesses); the package is forgotten afterwards."""
    package = str(walk.tree / PACKAGE_ROOT)
    monkeypatch.setenv("FOLDSTACK_STATEMACHINES_DIR", str(walk.statemachines))
    monkeypatch.setenv("FOLDSTACK_LAMBDAS_DIR", str(walk.tree / "lambdas"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (package, os.environ.get("PYTHONPATH")) if p))
    monkeypatch.syspath_prepend(package)
    yield walk
    for name in [m for m in sys.modules if m == "foldstack_toy" or m.startswith("foldstack_toy.")]:
        del sys.modules[name]


def _dataset(folder: Path, files: dict[str, bytes], **fields) -> Path:
    """A dataset folder: input files under ``in/`` and ``request.json`` naming that folder."""
    (folder / "in").mkdir(parents=True)
    for name, body in files.items():
        (folder / "in" / name).write_bytes(body)
    (folder / "request.json").write_text(json.dumps({"files": ["in"], **fields}))
    return folder


FILES = {"a.txt": b"one\ntwo\n", "b.txt": b"three\n"}


# --------------------------------------------------------------------------- (a) render


def _states(definition: dict) -> dict[str, dict]:
    """Every state, Map item processors included."""
    found = {}
    for name, state in definition["States"].items():
        found[name] = state
        if "ItemProcessor" in state:
            found.update(_states(state["ItemProcessor"]))
    return found


@pytest.mark.slow
def test_a_the_toy_renders_and_the_other_workflows_do_not_change(toy_env):
    from statelint.linter import Linter

    from foldstack.workflows.render import placeholders, render_all
    from tests.workflows.test_task_contracts import check_definition

    walk = toy_env

    rendered = walk.statemachines / "rendered" / f"{WORKFLOW}.asl.json"
    assert rendered.is_file()
    assert render_all(walk.statemachines, check=True) == []  # `foldstack render --check` is clean
    for name in OTHERS:
        rel = f"statemachines/rendered/{name}.asl.json"
        assert snapshot(walk.tree)[rel] == walk.before[rel], f"{rel} changed"

    text = rendered.read_text()
    assert placeholders(text) == {"partition", "scratch_mount", "queue_cpu_spot_arn", "job_definition_toy_work_arn",
                                  *(f"lambda_{t}_arn" for t in ("validate_input", "stage_inputs",
                                                                "collect_outputs", "cleanup"))}
    states = _states(json.loads(text))
    for name, state in states.items():
        if state["Type"] in ("Task", "Map") and name != "WorkItem" and not name.startswith("Cleanup"):
            assert [c["Next"] for c in state["Catch"]] == ["CleanupOnFailure"], name  # every path cleans up
        if state["Type"] == "Task" and state["Resource"].endswith("lambda:invoke"):
            assert state["Parameters"]["Payload"]["workflow"] == WORKFLOW, name  # the shared Lambdas dispatch on it
    assert states["Work"]["MaxConcurrency"] == 10  # bounded (knobs.yaml)
    job = states["WorkItem"]["Parameters"]
    assert job["ContainerOverrides"]["Environment"] == [{"Name": "FOLDSTACK_JOB_DEFINITION",
                                                         "Value": job["JobDefinition"]}]
    assert states["RunFailed"]["Type"] == "Fail" and states["CleanupOnFailure"]["Next"] == "RunFailed"
    # the checks every registered workflow gets: statelint, and each Lambda state's payload
    # and ResultSelector against the toy's task contracts (foldstack_toy.tasks.CONTRACTS)
    assert Linter.validate(json.loads(text)) == []
    checked, problems = check_definition(json.loads(text))
    assert problems == [] and sorted(set(checked.values())) == [
        f"toy:{t}" for t in ("cleanup", "collect_outputs", "stage_inputs", "validate_input")]


# --------------------------------------------------------------------------- (b) plan


@pytest.mark.terraform
def test_b_terraform_plans_the_toy_from_its_registration(walk):
    from tests.terraform.conftest import _load_script, need_terraform

    terraform = need_terraform("the onboarding plan")
    tree = walk.tree
    lambdas = tree / "build" / "lambdas"
    from tests.conftest import REPO

    # the reports' viewer (npm 3dmol) is installed, not committed, and the build requires it:
    # the copy uses this checkout's node_modules, as a checkout after `make setup` would have its own
    if (REPO / "node_modules").is_dir() and not (tree / "node_modules").exists():
        (tree / "node_modules").symlink_to(REPO / "node_modules", target_is_directory=True)
    build = subprocess.run([sys.executable, str(tree / "scripts" / "build_lambdas.py"), "--out", str(lambdas)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    # `make plan` builds the dependency layer with network access; the plan only hashes it.
    (lambdas / "layer-deps.zip").write_bytes((lambdas / "cleanup.zip").read_bytes())
    env_dir = tree / "terraform" / "envs" / "dev"
    (env_dir / "tests").mkdir(exist_ok=True)
    (tree / PLAN_PROBE).write_text((HERE / "walk.tftest.hcl").read_text())

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_VAR_", "AWS_"))}
    env.update({"TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1"})
    mirror = _load_script("tf_mirror").find_mirror()
    if mirror is not None:
        config = walk.work / "terraform.rc"
        config.write_text(_load_script("tf_mirror").cli_config(mirror))
        env["TF_CLI_CONFIG_FILE"] = str(config)
    for args in (["init", "-backend=false", "-input=false", "-no-color"], ["test", "-no-color"]):
        proc = subprocess.run([terraform, *args], cwd=env_dir, env=env, capture_output=True, text=True,
                              timeout=900, check=False)
        assert proc.returncode == 0, f"terraform {args[0]}:\n{(proc.stdout + proc.stderr)[-6000:]}"
    assert "2 passed, 0 failed" in proc.stdout, proc.stdout[-3000:]


# --------------------------------------------------------------------------- (c) local run


def test_c_the_toy_runs_locally_and_publishes(toy_env, tmp_path):
    dataset = _dataset(tmp_path / "dataset", FILES, label="walk")
    out, home = tmp_path / "results", tmp_path / "home"
    result = _cli(["run", "--local", "--workflow", WORKFLOW, str(dataset), "--out", str(out), "--home", str(home),
                   "--json"], {})
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["status"] == "SUCCEEDED", report
    published = Path(report["output"])
    assert published.parent == out.resolve() and published.name == report["run_id"]
    assert report["run_id"].startswith("walk-") and report["result"]["items"] == 2

    manifest = json.loads((published / "manifest.json").read_text())
    assert manifest["run_id"] == report["run_id"] and sorted(manifest["files"]) == ["item-000.json", "item-001.json"]
    for item, name in (("item-000", "a.txt"), ("item-001", "b.txt")):
        body = json.loads((published / f"{item}.json").read_text())
        assert (body["bytes"], body["lines"]) == (len(FILES[name]), FILES[name].count(b"\n"))
        assert body["job_definition"]  # the engine set FOLDSTACK_JOB_DEFINITION for the job
        assert manifest["files"][f"{item}.json"]["input"].endswith(name)
    assert not (home / "scratch" / report["run_id"]).exists()  # Cleanup ran
    assert not [p for p in published.parent.iterdir() if p.name.startswith(".")]  # no partial publish left


def test_c_a_stopped_toy_execution_is_cleaned_up_by_the_eventbridge_event(toy_env, tmp_path, monkeypatch):
    """`foldstack cancel` or a timeout ends an execution without its CleanupOnFailure state:
    the EventBridge rule Terraform attaches to every state machine sends the shared cleanup
    Lambda its own event shape (cancel_cleanup.tf's input template), which the toy's
    Cleanup must accept."""
    import re
    import time

    tf = (toy_env.tree / "terraform" / "modules" / "workflow" / "cancel_cleanup.tf").read_text()
    template = re.search(r'input_template = "(.*)"\n', tf).group(1).replace('\\"', '"')  # HCL string -> text
    run_id = "walk-0123456789abcdef"
    scratch = tmp_path / "scratch"
    old = scratch / run_id / "input" / "item-000.dat"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"x")
    os.utime(old, (time.time() - 60, time.time() - 60))
    stopped_ms = int((time.time() - 30) * 1000)
    newer = scratch / run_id / "input" / "item-001.dat"  # written after the stop: a newer attempt's
    newer.write_bytes(b"y")
    event = json.loads(template.replace("${var.workflow_name}", WORKFLOW).replace("<name>", f"{run_id}-a2")
                       .replace("<status>", "ABORTED").replace("<stopped>", str(stopped_ms)))
    assert event["workflow"] == WORKFLOW and event["stopped_at"] == stopped_ms

    for key, value in {"FOLDSTACK_SCRATCH_ROOT": str(scratch), "FOLDSTACK_ALLOWED_INPUT_PREFIXES": str(tmp_path),
                       "FOLDSTACK_ALLOWED_OUTPUT_PREFIXES": str(tmp_path / "out"),
                       "FOLDSTACK_SIZE_CLASSES": json.dumps({"small": {"max_residues": 400, "max_chains": 4}})}.items():
        monkeypatch.setenv(key, value)
    result = _handler(toy_env.tree, "cleanup")(event)
    assert result == {"run_id": run_id, "scratch_deleted": 1, "partial_outputs_deleted": 0}
    assert not old.exists() and newer.exists()


# --------------------------------------------------------------------------- (d) submit


def _handler(tree: Path, name: str):
    spec = importlib.util.spec_from_file_location(f"walk_{name}_handler", tree / "lambdas" / name / "handler.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module.handler


@pytest.mark.slow
def test_d_the_client_submits_the_toy_to_its_state_machine(toy_env, tmp_path, monkeypatch):
    from foldstack.client import Client
    from foldstack.local import local_values, substitute
    from tests.client.conftest import ACCOUNT, deploy, executions, keys
    from tests.fake_aws import fake_aws

    dataset = _dataset(tmp_path / "dataset", FILES, label="walk")
    with fake_aws(monkeypatch, REGION):
        deployment = deploy(tmp_path, monkeypatch, engine=False)  # buckets, SSM parameters, fold's machine
        sfn = boto3.client("stepfunctions", region_name=REGION)
        definition = substitute((toy_env.statemachines / "rendered" / "toy.asl.json").read_text(),
                                local_values(toy_env.statemachines / "toy" / "jobs.yaml",
                                             scratch_mount=tmp_path / "scratch"))
        toy_arn = sfn.create_state_machine(name="foldstack-test-toy", definition=definition,
                                           roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn")["stateMachineArn"]
        # what Terraform's config module publishes: every client workflow's state machine
        boto3.client("ssm", region_name=REGION).put_parameter(
            Name=f"/foldstack/{ENV}/workflows", Type="String",
            Value=json.dumps({"fold": deployment.state_machine_arn, WORKFLOW: toy_arn}))

        run = Client(ENV, region=REGION).submit(dataset, workflow=WORKFLOW)
        assert run.workflow == WORKFLOW and not run.existed
        (execution,) = executions(toy_arn)
        assert execution["name"] == run.run_id and executions(deployment.state_machine_arn) == []
        body = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
        assert body["workflow"] == WORKFLOW and body["run_id"] == run.run_id
        request = body["request"]
        assert request["output_uri"] == "s3://fs-results/runs" and request["label"] == "walk"
        (folder,) = request["files"]
        assert sorted(keys("fs-inputs", "uploads/")) == [f"{folder.removeprefix('s3://fs-inputs/')}/{n}"
                                                          for n in sorted(FILES)]

        # the first state's task, the real shared Lambda, accepts that input as the cloud runs it
        for key, value in {"FOLDSTACK_SCRATCH_ROOT": str(tmp_path / "scratch"),
                           "FOLDSTACK_ALLOWED_INPUT_PREFIXES": deployment.params["allowed_input_prefixes"],
                           "FOLDSTACK_ALLOWED_OUTPUT_PREFIXES": deployment.params["output_prefix"],
                           "FOLDSTACK_SIZE_CLASSES": deployment.params["size_classes"]}.items():
            monkeypatch.setenv(key, value)
        validated = _handler(toy_env.tree, "validate_input")(body)
        assert validated == {"run_id": run.run_id, "items": ["item-000", "item-001"]}


# --------------------------------------------------------------------------- (e) the walk's footprint


def test_e_the_walk_touches_only_the_toy_and_ci_builds_its_image(walk):
    touched = [p for p in changed(walk.tree, walk.before) if p != PLAN_PROBE]
    outside = [p for p in touched if not p.startswith(ALLOWED) and p not in ALLOWED_FILES]
    assert outside == [], f"the walk changed files outside the toy's: {outside}"
    assert {"statemachines/workloads.yaml", "statemachines/rendered/toy.asl.json",
            "containers/toy/Dockerfile", f"{PACKAGE_ROOT.as_posix()}/foldstack_toy/tasks.py"} <= set(touched)

    proc = subprocess.run([sys.executable, str(walk.tree / "scripts" / "image_matrix.py"), "--root", str(walk.tree)],
                          capture_output=True, text=True, check=True)
    assert WORKFLOW in json.loads(proc.stdout)


def test_the_toy_image_follows_the_dockerfile_rules(walk):
    """containers/<image>/Dockerfile's rules: the pinned base, non-root uid 1000, hadolint."""
    import re

    from tests.terraform.conftest import require_tool

    dockerfile = walk.tree / "containers" / "toy" / "Dockerfile"
    text = dockerfile.read_text()
    reference = (walk.tree / "containers" / "cryoem-cpu" / "Dockerfile").read_text()
    base = re.compile(r"^ARG BASE_IMAGE=\S+@sha256:[0-9a-f]{64}$", re.M)
    assert base.search(text) and base.search(text).group(0) == base.search(reference).group(0)  # one pinned base
    assert set(re.findall(r"^FROM\s+(\S+)", text, re.M)) == {"${BASE_REGISTRY}/${BASE_IMAGE}"}
    assert re.findall(r"^USER\s+(\S+)", text, re.M)[-1] == "1000:1000"
    hadolint = require_tool("hadolint", "FOLDSTACK_HADOLINT")
    proc = subprocess.run([hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
