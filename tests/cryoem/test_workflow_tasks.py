"""The cryoem workflow's Lambda tasks through the shared handlers (dispatch on `workflow`),
its request model and its step commands' contract. Fast: tiny header-only movies, no RELION."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from foldstack import storage
from foldstack.core.errors import AccessDeniedError, InputValidationError, OutputsNotReadyError
from foldstack.cryoem.manifest import REQUIRED_FILES, load_manifest
from foldstack.cryoem.mrc import write_mrc
from foldstack.cryoem.request import CryoemRunRequest, load_request, parse_run_request
from foldstack.cryoem.submission import request_from_dataset, run_id_for, size_class_for
from foldstack.steps.common import run_step
from tests.conftest import files_under, load_handler, load_repo_module

OPTICS = {"pixel_size": 2.5, "voltage_kv": 300.0, "cs_mm": 2.7, "amplitude_contrast": 0.1, "dose_per_frame": 1.5}
CLASSES = [["small", 256], ["medium", 448], ["large", 800]]


@pytest.fixture
def movies(local_env):
    folder = local_env["inputs"] / "movies"
    folder.mkdir()
    for i in range(5):
        write_mrc(folder / f"m{i}.mrcs", np.zeros((4, 160, 192), np.float32), 2.5)
    (local_env["inputs"] / "ref.mrc").write_bytes(b"not read by the tasks")
    return folder


def request_for(local_env, movies, **changes):
    return {"movies": str(movies), "optics": dict(OPTICS), "particle_diameter": 130.0, "box_size": 64,
            "output_uri": str(local_env["outputs"]), "batch_size": 2, **changes}


def validate(local_env, request, run_id=None):
    event = {"workflow": "cryoem", "run_id": run_id, "request": request, "size_classes": CLASSES}
    if run_id is None:
        event["run_id"] = run_id_for(parse_run_request(request), sorted(
            str(p) for p in Path(request["movies"]).glob("*.mrcs")))
    return load_handler("validate_input")(event)


# -- the request ------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "message"), [
    ({"box_size": 63}, r"box_size=63: expected an even"),
    ({"box_size": 40}, r"box_size=40: smaller than the particle"),
    ({"symmetry": "X2"}, r"symmetry='X2'"),
    ({"optics": {**OPTICS, "pixel_size": -1.0}}, r"optics\.pixel_size=-1"),
    ({"optics": {**OPTICS, "cs_mm": "2.7"}}, r"optics\.cs_mm"),
    ({"extra": 1}, r"request field extra"),
    ({"knobs": {"nope": 1}}, r"knobs\.nope is not a knob"),
    ({"knobs": {"iter_2d": 2.5}}, r"knobs\.iter_2d=2\.5: expected a whole number"),
    ({"reference": "model.txt"}, r"reference: model\.txt is not a map"),
    ({"movies": []}, r"movies"),
    ({"name": "Bad Name"}, r"request field name"),
])
def test_request_model_rejects_with_one_line(change, message):
    raw = {"movies": "s3://b/movies/", "optics": dict(OPTICS), "particle_diameter": 130.0, "box_size": 64,
           "output_uri": "s3://b/out", **change}
    with pytest.raises(InputValidationError, match=message) as err:
        parse_run_request(raw)
    assert err.value.code == "invalid_request" and "\n" not in str(err.value)


def test_run_id_is_deterministic_and_ignores_where_movies_lie():
    a = CryoemRunRequest.model_validate({"movies": "s3://b/x/", "optics": OPTICS, "particle_diameter": 130.0,
                                         "box_size": 64, "output_uri": "s3://b/out"})
    movies = ["s3://b/x/m0.mrcs", "s3://b/x/m1.mrcs"]
    same = run_id_for(a, movies)
    assert same == run_id_for(a, list(reversed(movies)))
    assert same == run_id_for(a.model_copy(update={"movies": "s3://c/y/"}), ["s3://c/y/m1.mrcs", "s3://c/y/m0.mrcs"])
    assert same != run_id_for(a.model_copy(update={"box_size": 96}), movies)
    assert same != run_id_for(a.model_copy(update={"output_uri": "s3://b/other"}), movies)
    assert same.startswith("cryoem-2-") and len(same) <= 74


def test_size_class_is_the_first_that_holds_the_box():
    classes = [("small", 256), ("medium", 448), ("large", 800)]
    assert [size_class_for(b, classes) for b in (64, 256, 258, 800)] == ["small", "small", "medium", "large"]
    with pytest.raises(InputValidationError, match="larger than the largest size class"):
        size_class_for(900, classes)


def test_dataset_request_resolves_paths_against_the_dataset(tmp_path):
    (tmp_path / "request.json").write_text(json.dumps({"movies": "movies", "optics": OPTICS, "particle_diameter": 130,
                                                       "box_size": 64, "symmetry": "C1"}))
    req = request_from_dataset(tmp_path, str(tmp_path / "out"), knobs={"iter_2d": 3})
    assert req.movies == str(tmp_path / "movies") and req.knobs == {"iter_2d": 3}


# -- validate / stage through the shared Lambdas --------------------------------------------------


def test_validate_plans_batches_size_class_and_writes_nothing(local_env, movies):
    before = files_under(local_env["scratch"])
    result = validate(local_env, request_for(local_env, movies, box_size=64))
    assert result["batches"] == ["batch-000", "batch-001", "batch-002"] and result["n_movies"] == 5
    assert result["size_class"] == "small" and result["has_reference"] is False and result["bias_guard"] is False
    assert files_under(local_env["scratch"]) == before and not any(local_env["outputs"].iterdir())
    with_ref = validate(local_env, request_for(local_env, movies, reference=str(local_env["inputs"] / "ref.mrc")))
    assert with_ref["has_reference"] and with_ref["bias_guard"]


def test_validate_rejects_bad_movies_outside_prefixes_and_a_wrong_run_id(local_env, movies, tmp_path):
    write_mrc(movies / "odd.mrcs", np.zeros((3, 160, 192), np.float32), 2.5)
    with pytest.raises(InputValidationError, match="all movies must match"):
        validate(local_env, request_for(local_env, movies))
    (movies / "odd.mrcs").unlink()
    with pytest.raises(AccessDeniedError):
        validate(local_env, request_for(local_env, movies, output_uri=str(tmp_path / "elsewhere")))
    with pytest.raises(InputValidationError, match="does not match the request") as err:
        validate(local_env, request_for(local_env, movies), run_id="cryoem-5-0000000000000000")
    assert err.value.code == "run_id_mismatch"


def test_stage_writes_what_the_steps_read(local_env, movies):
    request = request_for(local_env, movies, knobs={"iter_2d": 3})
    run_id = validate(local_env, request)["run_id"]
    result = load_handler("stage_inputs")({"workflow": "cryoem", "run_id": run_id, "request": request})
    root = local_env["scratch"] / run_id / "input"
    assert result == {"scratch": str(local_env["scratch"] / run_id), "staged": 5, "cache_root": ""}
    staged = load_request(root)
    assert [p.name for p in staged.movies] == [f"m{i}.mrcs" for i in range(5)] and staged.box_size == 64
    run = json.loads((root / "run.json").read_text())
    assert run["batches"]["batch-002"] == ["m4.mrcs"] and run["knobs"]["iter_2d"] == 3


# -- collect / cleanup --------------------------------------------------------------------------


def fake_results(scratch: Path, run_id: str, *, skip: str | None = None) -> Path:
    summary = {"relion_version": "test", "initial_model": "denovo", "bias_guard": None, "micrographs": [],
               "stages": {"curate": {"wall_seconds": 1.0}}, "cpu_seconds": 2.0,
               "results": {"resolution": 12.5, "bfactor": -300.0, "gold_standard_resolution_refine": 13.0,
                           "particles_refined": 100, "particles_curated": 120, "micrographs": 4,
                           "micrographs_kept": 4}}

    def body(ctx):
        for name in REQUIRED_FILES:
            if name != skip:
                (ctx.work_dir / name).write_bytes(f"{name} of {run_id}".encode())
        (ctx.work_dir / "summary.json").write_text(json.dumps(summary))

    return run_step("results", run_id, "all", scratch, body)


def test_collect_publishes_every_result_with_the_manifest_last(local_env, movies):
    request = request_for(local_env, movies)
    run_id = validate(local_env, request)["run_id"]
    fake_results(local_env["scratch"], run_id)
    result = load_handler("collect_outputs")({"workflow": "cryoem", "run_id": run_id, "request": request})
    published = local_env["outputs"] / run_id
    assert result == {"output": str(published), "resolution": 12.5, "outcome": "succeeded",
                      "bias_guard_flagged": None}
    manifest = load_manifest((published / "manifest.json").read_text())
    assert set(manifest.files) == set(REQUIRED_FILES) and manifest.run_id == run_id
    assert {p.name for p in published.iterdir()} == {*REQUIRED_FILES, "manifest.json"}
    from foldstack.core.hashing import sha256_file

    assert all(manifest.files[n].sha256 == sha256_file(published / n) for n in REQUIRED_FILES)
    # idempotent: collected again (a retried Lambda), the same files
    load_handler("collect_outputs")({"workflow": "cryoem", "run_id": run_id, "request": request})
    assert {p.name for p in published.iterdir()} == {*REQUIRED_FILES, "manifest.json"}


def test_collect_without_finished_results_publishes_nothing(local_env, movies):
    request = request_for(local_env, movies)
    run_id = validate(local_env, request)["run_id"]
    with pytest.raises(OutputsNotReadyError):
        load_handler("collect_outputs")({"workflow": "cryoem", "run_id": run_id, "request": request})
    folder = fake_results(local_env["scratch"], run_id)
    (folder / "fsc.png").unlink()
    with pytest.raises(OutputsNotReadyError, match="fsc.png"):
        load_handler("collect_outputs")({"workflow": "cryoem", "run_id": run_id, "request": request})
    assert not any(local_env["outputs"].iterdir())


def test_cleanup_keeps_finished_stages_on_failure_and_clears_all_on_success(local_env, movies):
    request = request_for(local_env, movies)
    run_id = validate(local_env, request)["run_id"]
    load_handler("stage_inputs")({"workflow": "cryoem", "run_id": run_id, "request": request})
    fake_results(local_env["scratch"], run_id)
    storage.write_bytes(str(local_env["outputs"] / f".{run_id}.partial-{run_id}x" / "half"), b"left by a crash")
    cleanup = load_handler("cleanup")
    failed = cleanup({"workflow": "cryoem", "run_id": run_id, "request": request, "failed": True})
    assert failed["kept_targets"] == 1 and failed["partial_outputs_deleted"] >= 1
    assert {p.relative_to(local_env["scratch"] / run_id).parts[0] for p in
            files_under(local_env["scratch"] / run_id)} == {"results"}
    assert not any(local_env["outputs"].iterdir())
    done = cleanup({"workflow": "cryoem", "run_id": run_id, "request": request, "failed": False})
    assert done["scratch_deleted"] > 0 and not files_under(local_env["scratch"] / run_id)


# -- dispatch -------------------------------------------------------------------------------------


def test_dispatch_names_unknown_workflows_and_leaves_fold_events_alone(local_env):
    with pytest.raises(InputValidationError, match="unknown workflow 'nope'"):
        load_handler("validate_input")({"workflow": "nope", "run_id": "x", "request": {}})
    with pytest.raises(InputValidationError, match="malformed_event|event is missing request") as err:
        load_handler("validate_input")({"run_id": "x"})  # fold's own model: no workflow key needed
    assert err.value.code == "malformed_event"
    with pytest.raises(InputValidationError, match="size_classes"):  # cryoem's model
        load_handler("validate_input")({"workflow": "cryoem", "run_id": "x", "request": {}})


@pytest.mark.slow
def test_lambda_zip_carries_the_cryoem_tasks_and_the_registry(tmp_path):
    import subprocess
    import sys
    import zipfile

    builder = load_repo_module("scripts/build_lambdas.py", "build_lambdas")
    builder.build(tmp_path / "zips", ["validate_input"])
    root = tmp_path / "unzipped"
    with zipfile.ZipFile(tmp_path / "zips" / "validate_input.zip") as zf:
        names = zf.namelist()
        zf.extractall(root)
    shipped = {"foldstack/cryoem/tasks.py", "statemachines/workloads.yaml", "foldstack/workflows/dispatch.py"}
    assert shipped <= set(names)
    assert not any(n.startswith(("foldstack/steps/", "foldstack/local/", "foldstack/cli/")) for n in names)
    assert "foldstack/cryoem/refine.py" not in names  # only what the tasks import
    probe = ("import foldstack\n"
             f"assert foldstack.__file__.startswith({str(root)!r})\n"
             "from foldstack.workflows.registry import get_workload\n"
             "print(sorted(get_workload('cryoem').tasks_module().HANDLERS))\n")
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1"}
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['cleanup', 'collect_outputs', 'stage_inputs', 'validate_input']"


# -- the step commands ------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["curate", "--run-id", "r1", "--scratch", "{scratch}"],
    ["preprocess", "--run-id", "r1", "--batch", "batch-000", "--scratch", "{scratch}"],
    ["refine3d", "--run-id", "r1", "--name", "bogus", "--scratch", "{scratch}"],
    ["postprocess", "--run-id", "r1", "--scratch", "{scratch}"],
])
def test_step_commands_exit_2_on_bad_input(tmp_path, argv):
    from foldstack.cli import app

    result = CliRunner().invoke(app, ["step", "cryoem", *[a.format(scratch=tmp_path) for a in argv]])
    assert result.exit_code == 2, result.output


def test_cli_reports_a_bad_dataset_in_one_line(tmp_path):
    from foldstack.cli import app

    (tmp_path / "request.json").write_text(json.dumps({"movies": "movies", "box_size": 64}))
    result = CliRunner().invoke(app, ["run", "--local", "--workflow", "cryoem", str(tmp_path), "--out",
                                      str(tmp_path / "out"), "--home", str(tmp_path / "home"), "--json"])
    assert result.exit_code == 2, result.output
    assert json.loads(result.output)["code"] == "invalid_request"


@pytest.mark.slow
def test_a_failed_preprocessing_job_fails_the_run_through_cleanup(tmp_path):
    """The rendered workflow on the local engine, one batch's job crashing (an injected
    fault, before any RELION): the Map fails, Cleanup runs, the run FAILS with the job's
    error, nothing is published and the scratch is gone but for finished stages."""
    from foldstack.local.runner import LocalRunner

    data = tmp_path / "data"
    (data / "movies").mkdir(parents=True)
    for i in range(3):
        write_mrc(data / "movies" / f"m{i}.mrcs", np.zeros((4, 160, 192), np.float32), 2.5)
    (data / "request.json").write_text(json.dumps({"movies": "movies", "optics": OPTICS, "particle_diameter": 130,
                                                   "box_size": 64}))
    out = tmp_path / "out"
    runner = LocalRunner(tmp_path / "home", workflow="cryoem",
                         job_env={"FOLDSTACK_INJECT_FAULT": "motioncorr:*"})
    run = runner.submit(request_from_dataset(data, str(out), batch_size=2))
    assert run.wait(300) == "FAILED"
    record = run.record()
    assert record["error"] == "States.TaskFailed", record
    entered = [e.get("state") for e in run.history() if e.get("type") == "TaskStateEntered"]
    assert {"ValidateInput", "StageInputs", "Preprocess", "CleanupOnFailure"} <= set(entered)
    assert "Curate" not in entered and "CollectOutputs" not in entered
    assert not (out / run.run_id).exists()
    assert not files_under(tmp_path / "home" / "scratch" / run.run_id)
    assert run.record()["workflow"] == "cryoem"


@pytest.mark.slow
def test_cli_runs_the_workflow_and_reports_its_failure(tmp_path, monkeypatch):
    from foldstack.cli import app

    data = tmp_path / "data"
    (data / "movies").mkdir(parents=True)
    for i in range(2):
        write_mrc(data / "movies" / f"m{i}.mrcs", np.zeros((4, 160, 192), np.float32), 2.5)
    (data / "request.json").write_text(json.dumps({"movies": "movies", "optics": OPTICS, "particle_diameter": 130,
                                                   "box_size": 64}))
    monkeypatch.setenv("FOLDSTACK_INJECT_FAULT", "motioncorr:*")  # the jobs inherit the environment
    result = CliRunner().invoke(app, ["run", "--local", "--workflow", "cryoem", str(data), "--out",
                                      str(tmp_path / "out"), "--home", str(tmp_path / "home"), "--json"])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.output)
    assert doc["status"] == "FAILED" and doc["run_id"].startswith("cryoem-2-") and doc["files"] == {}


def test_cli_report_points_at_the_map_fsc_plot_and_report(tmp_path, capsys):
    from foldstack.cli.local import report_workflow

    published = tmp_path / "out" / "r1"
    published.mkdir(parents=True)
    for name in ("map_sharpened.mrc", "fsc.png", "report.html"):
        (published / name).write_bytes(b"x")
    (published / "manifest.json").write_text(json.dumps({"results": {"resolution": 12.3, "particles_refined": 144},
                                                         "bias_guard": {"flagged": True}}))

    class FakeRun:
        run_id, output = "r1", published

        def record(self):
            return {"status": "SUCCEEDED"}

    report_workflow(FakeRun(), False)
    text = capsys.readouterr().out.replace("\n", "")  # (rich wraps long paths)
    assert "12.3 Å" in text and "do not trust this map" in text
    for name in ("map_sharpened.mrc", "fsc.png", "report.html", "manifest.json"):
        assert name in text


def test_the_tasks_on_s3_list_stage_and_publish_server_side(s3_env):
    import hashlib

    s3 = s3_env
    from tests.cryoem.test_headers import tiff_bytes

    for i in range(3):  # header-only TIFFs (Validate Input reads their IFD chains with ranged GETs)
        s3.put_object(Bucket="lake", Key=f"inputs/movies/m{i}.tiff", Body=tiff_bytes([(640, 640)] * 4))
    s3.put_object(Bucket="lake", Key="inputs/movies/notes.txt", Body=b"not a movie")
    request = {"movies": "s3://lake/inputs/movies/", "optics": OPTICS, "particle_diameter": 130.0, "box_size": 300,
               "output_uri": "s3://lake/results", "batch_size": 2}
    event = {"workflow": "cryoem", "run_id": None, "request": request, "size_classes": CLASSES}
    event["run_id"] = run_id_for(parse_run_request(request), [f"s3://lake/inputs/movies/m{i}.tiff" for i in range(3)])
    planned = load_handler("validate_input")(event)
    assert planned["batches"] == ["batch-000", "batch-001"] and planned["size_class"] == "medium"
    run_id = planned["run_id"]
    staged = load_handler("stage_inputs")({"workflow": "cryoem", "run_id": run_id, "request": request})
    assert staged["staged"] == 3
    listing = {o["Key"] for o in s3.list_objects_v2(Bucket="scratch")["Contents"]}
    assert {f"{run_id}/input/movies/m{i}.tiff" for i in range(3)} | {f"{run_id}/input/run.json"} <= listing
    # the postprocess job's results, as its done record lists them
    files = {name: f"{name} bytes".encode() for name in REQUIRED_FILES}
    files["summary.json"] = json.dumps({"relion_version": "t", "initial_model": "denovo", "bias_guard": None,
                                        "micrographs": [], "cpu_seconds": 1.0, "size_class": "medium",
                                        # as the image wrote it without a price table: Collect prices it
                                        "cost": {"estimated_total_usd": None, "unavailable": "no table"},
                                        "stages": {"curate": {"wall_seconds": 60.0},
                                                   "class2d": {"wall_seconds": 3600.0, "ran_on": {
                                                       "queue": "foldstack-dev-cryoem-gpu-large",
                                                       "size_class": "large", "purchase": "on_demand"}}},
                                        "results": {
                                            "resolution": 9.5, "bfactor": -100.0,
                                            "gold_standard_resolution_refine": 10.0, "particles_refined": 1,
                                            "particles_curated": 1, "micrographs": 3, "micrographs_kept": 3}}).encode()
    for name, body in files.items():
        s3.put_object(Bucket="scratch", Key=f"{run_id}/results/all/{name}", Body=body)
    done = {"step": "results", "run_id": run_id, "target": "all",
            "outputs": {n: hashlib.sha256(b).hexdigest() for n, b in files.items()},
            "output_sizes": {n: len(b) for n, b in files.items()}}
    s3.put_object(Bucket="scratch", Key=f"{run_id}/results/all/results.done.json", Body=json.dumps(done).encode())
    result = load_handler("collect_outputs")({"workflow": "cryoem", "run_id": run_id, "request": request})
    assert result["output"] == f"s3://lake/results/{run_id}" and result["resolution"] == 9.5
    published = {o["Key"] for o in s3.list_objects_v2(Bucket="lake", Prefix=f"results/{run_id}/")["Contents"]}
    assert published == {f"results/{run_id}/{n}" for n in [*REQUIRED_FILES, "manifest.json"]}
    manifest = load_manifest(s3.get_object(Bucket="lake", Key=f"results/{run_id}/manifest.json")["Body"].read())
    assert manifest.files["fsc.png"].sha256 == hashlib.sha256(b"fsc.png bytes").hexdigest()
    # per-stage dollar cost: the 2D job escalated to the large class is priced there (ran_on)
    assert manifest.cost["estimated_total_usd"] > 0 and manifest.size_class == "medium"
    assert manifest.stages["class2d"]["cost"]["size_class"] == "large"
    assert manifest.stages["class2d"]["cost"]["priced_by"] == "ran_on"
    assert manifest.stages["curate"]["cost"]["job"] == "cryoem_curate"
    cleaned = load_handler("cleanup")({"workflow": "cryoem", "run_id": run_id, "request": request, "failed": False})
    assert cleaned["scratch_deleted"] > 0 and not s3.list_objects_v2(Bucket="scratch").get("Contents")
