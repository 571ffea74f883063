"""`foldstack submit --workflow` and the follow/fetch commands on a run of another
workflow than fold: usage errors, the toy workload submitted to its own state machine
(moto), `status` of a recorded cryoem run, `results` read from a generic manifest."""

from __future__ import annotations

import hashlib
import json

import boto3
import pytest
from tests.client.conftest import REGION, executions
from tests.client.recorded import RUN_ID, RecordedBackend, cryoem_history, recorded_run
from tests.onboarding.toy_workload import write_dataset
from typer.testing import CliRunner

from foldstack.cli import app, runs

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def toy_cli(deployed_toy, monkeypatch):
    monkeypatch.setattr(runs, "make_client", lambda env, home=None, **_: deployed_toy.client())
    return deployed_toy


@pytest.mark.parametrize("args, text", [
    (["--workflow", "cryoem", "x.fasta", "--engine", "esmfold"], "--engine: fold options, not options of --workflow"),
    (["--workflow", "cryoem", "d", "--num-models", "2", "--db", "uniref90=1"], "--db, --num-models: fold options"),
    (["--workflow", "cryoem", "a", "b"], "takes one input: a dataset folder holding request.json"),
    (["--workflow", "nope", "a"], "--workflow 'nope' is not a workflow users submit; one of: cryoem, fold"),
    (["--workflow", "refresh_databases", "a"], "is not a workflow users submit"),
])
def test_submit_workflow_usage_errors_are_one_line_before_anything_starts(args, text, monkeypatch):
    monkeypatch.setattr(runs, "make_client", lambda *a, **k: pytest.fail("no client for a usage error"))
    code, out, _ = invoke("submit", *args, "--env", "test", "--json")
    assert code == 2, out
    doc = json.loads(out)
    assert doc["code"] == "invalid_request" and text in doc["message"] and "\n" not in doc["message"]
    code, _, err = invoke("submit", *args, "--env", "test")
    assert code == 2 and text in " ".join(err.split())


def test_submit_help_lists_the_registered_client_workflows():
    result = runner.invoke(app, ["submit", "--help"], env={"COLUMNS": "250"})
    line = next(ln for ln in result.stdout.splitlines() if "--workflow" in ln)
    assert result.exit_code == 0 and "what to run: cryoem | fold" in line, line


@pytest.mark.slow
def test_submit_a_toy_dataset_then_list_status_and_results(toy_cli, tmp_path):
    dataset = write_dataset(tmp_path / "dataset")
    code, out, _ = invoke("submit", "--workflow", "toy", str(dataset), "--env", "test", "--json")
    assert code == 0, out
    submitted = json.loads(out)
    run_id = submitted["run_id"]
    assert submitted["workflow"] == "toy" and submitted["existing"] is False and submitted["n_targets"] is None
    toy_arn = json.loads(toy_cli.params["workflows"])["toy"]
    assert [e["name"] for e in executions(toy_arn)] == [run_id]
    code, out, err = invoke("submit", "-w", "toy", str(dataset / "request.json"), "--env", "test")
    assert code == 0 and "toy run" in err and "existing run" in err

    code, out, _ = invoke("list", "--env", "test", "--json")
    assert [(r["run_id"], r["workflow"]) for r in json.loads(out)["runs"]] == [(run_id, "toy")]
    code, out, _ = invoke("list", "--env", "test")
    assert code == 0 and "workflow" in out and "toy" in out

    # what the toy's collect would publish: its files, then manifest.json (generic: a files list)
    s3 = boto3.client("s3", region_name=REGION)
    files = {"map.mrc": b"MAP" * 100, "fsc/fsc.tsv": b"res\tfsc\n"}
    manifest = {"run_id": run_id, "workflow": "toy", "outcome": "succeeded", "metrics": {"resolution_a": 4.2},
                "files": [{"path": p, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
                          for p, b in files.items()]}
    for path, body in [*files.items(), ("manifest.json", json.dumps(manifest).encode())]:
        s3.put_object(Bucket="fs-results", Key=f"runs/{run_id}/{path}", Body=body)
    code, out, _ = invoke("results", run_id, "--env", "test", "--dir", str(tmp_path / "dl"), "--json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["files"] == ["map.mrc", "fsc/fsc.tsv", "manifest.json"] and doc["metrics"] == {"resolution_a": 4.2}
    assert (tmp_path / "dl" / run_id / "fsc" / "fsc.tsv").read_bytes() == files["fsc/fsc.tsv"]
    code, out, _ = invoke("results", run_id, "--env", "test", "--dir", str(tmp_path / "dl2"))
    assert code == 0 and "resolution_a" in out and "4.2" in out
    code, out, _ = invoke("results", run_id, "--env", "test", "--tsv", "--json")
    assert code == 2 and "fold's" in json.loads(out)["message"]

    s3.put_object(Bucket="fs-results", Key=f"runs/{run_id}/map.mrc", Body=b"tampered")
    code, out, _ = invoke("results", run_id, "--env", "test", "--dir", str(tmp_path / "dl3"), "--json")
    assert code != 0 and "checksum" in json.loads(out)["message"]


def test_status_of_a_cryoem_run_shows_its_steps(monkeypatch):
    logs = {"job-refine": ["[12:00:00] foldstack step refine3d [] FAILED (out of memory, exit 3): "
                           "[out_of_memory] the box needs a larger GPU"]}
    backends = {"ok": RecordedBackend(cryoem_history()),
                "failed": RecordedBackend(cryoem_history(fail_refine=True), status="FAILED", logs=logs)}
    which = {"backend": "ok"}

    class Client:
        def run(self, run_id, workflow=None):
            return recorded_run(backends[which["backend"]], run_id)

    monkeypatch.setattr(runs, "make_client", lambda *a, **k: Client())
    code, out, _ = invoke("status", RUN_ID, "--env", "test")
    assert code == 0, out
    for step in ("preprocess", "curate", "class2d", "initial_model", "refine3d", "postprocess"):
        assert step in out
    assert "b00001" in out and "(run)" in out and "job-refine" in out
    code, out, _ = invoke("status", RUN_ID, "--env", "test", "--json")
    doc = json.loads(out)
    assert doc["workflow"] == "cryoem" and {s["step"] for s in doc["steps"] if s["job"]} >= {"refine3d", "curate"}

    which["backend"] = "failed"
    code, out, err = invoke("status", RUN_ID, "--env", "test")
    assert code == 0 and "FAILED" in out
    err = " ".join(err.split())
    assert "FAILED in refine3d: FAILED (out of memory, exit 3): the box needs a larger GPU" in err
    assert f"see: foldstack logs {RUN_ID} refine3d --env test" in err

