"""scripts/image_matrix.py: the CI image matrix is the images the registered workflows' jobs run.

images.yml builds, and deploy.yml promotes, exactly the list the script prints; each entry
must have containers/<image>/Dockerfile. The expectations are read from the registry and the
jobs.yaml files here, independently of the script.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import yaml

from .conftest import REPO, _load_script

SCRIPT = REPO / "scripts" / "image_matrix.py"
WORKFLOWS = REPO / ".github" / "workflows"


def _registered_images() -> set[str]:
    registry = yaml.safe_load((REPO / "statemachines" / "workloads.yaml").read_text())
    return {job["image"] for wf in registry
            for job in yaml.safe_load((REPO / "statemachines" / wf / "jobs.yaml").read_text())["jobs"].values()}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False,
                          timeout=60)


def test_prints_the_union_of_the_registered_workflows_images():
    proc = _run()
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert printed == sorted(set(printed)), "sorted, each image once"
    assert set(printed) == _registered_images()
    assert {"msa", "predict", "cryoem-cpu", "cryoem-gpu"} <= set(printed)


def test_every_image_has_a_dockerfile():
    for image in _registered_images():
        assert (REPO / "containers" / image / "Dockerfile").is_file(), f"containers/{image}/Dockerfile is missing"


def _tree(tmp_path, images: dict[str, str]):
    """A checkout with one workflow per (workflow -> image) and Dockerfiles for msa only."""
    (tmp_path / "statemachines").mkdir(parents=True)
    (tmp_path / "statemachines" / "workloads.yaml").write_text(
        yaml.safe_dump({wf: {"submitted_by": "client"} for wf in images}))
    for wf, image in images.items():
        (tmp_path / "statemachines" / wf).mkdir()
        jobs = {"jobs": {f"{wf}_job": {"image": image}}}
        (tmp_path / "statemachines" / wf / "jobs.yaml").write_text(yaml.safe_dump(jobs))
    (tmp_path / "containers" / "msa").mkdir(parents=True)
    shutil.copy(REPO / "containers" / "msa" / "Dockerfile", tmp_path / "containers" / "msa" / "Dockerfile")
    return tmp_path


def test_a_new_workflow_adds_its_images_and_one_without_a_dockerfile_fails(tmp_path):
    module = _load_script("image_matrix")
    assert module.images(_tree(tmp_path / "a", {"one": "msa", "two": "msa"})) == ["msa"]
    proc = _run("--root", str(_tree(tmp_path / "b", {"one": "msa", "two": "newimage"})))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "newimage" in proc.stderr and "Dockerfile" in proc.stderr


def test_a_workflow_without_jobs_yaml_fails(tmp_path):
    root = _tree(tmp_path, {"one": "msa"})
    (root / "statemachines" / "one" / "jobs.yaml").unlink()
    proc = _run("--root", str(root))
    assert proc.returncode == 1 and "jobs.yaml" in proc.stderr


def test_ci_builds_and_promotes_the_scripts_list():
    images = yaml.safe_load((WORKFLOWS / "images.yml").read_text())
    matrix_job = images["jobs"]["matrix"]
    assert any("scripts/image_matrix.py" in str(s.get("run", "")) and "GITHUB_OUTPUT" in str(s.get("run", ""))
               for s in matrix_job["steps"])
    assert matrix_job["outputs"]["images"] == "${{ steps.list.outputs.images }}"
    build = images["jobs"]["image"]
    assert build["needs"] == "matrix"
    assert build["strategy"]["matrix"]["image"] == "${{ fromJSON(needs.matrix.outputs.images) }}"
    # `on:` parses as True in YAML 1.1
    assert images[True]["workflow_call"]["outputs"]["images"]["value"] == "${{ jobs.matrix.outputs.images }}"
    promote = yaml.safe_load((WORKFLOWS / "deploy.yml").read_text())["jobs"]["promote"]
    assert "images" in promote["needs"]
    assert promote["strategy"]["matrix"]["image"] == "${{ fromJSON(needs.images.outputs.images) }}"
    assert "[msa, predict]" not in (WORKFLOWS / "images.yml").read_text() + (WORKFLOWS / "deploy.yml").read_text()
