"""The rendered cryoem workflow end to end on the local engine (``foldstack run --local
--workflow cryoem``): the real Lambda handlers, the jobs.yaml commands as subprocesses
(RELION on this machine), on the small simulated dataset, from the request's reference
with the bias guard (so every state of the definition but the failure paths runs).
Minutes: e2e and slow."""

from __future__ import annotations

import shutil

import pytest

from foldstack.cryoem.manifest import REQUIRED_FILES, load_manifest
from foldstack.cryoem.submission import request_from_dataset
from foldstack.local.runner import LocalRunner
from tests.cryoem.test_chain import FAST

pytestmark = [
    pytest.mark.skipif(shutil.which("relion_refine_mpi") is None, reason="Debian relion not installed"),
    pytest.mark.e2e,
    pytest.mark.slow,
]


def test_cryoem_workflow_publishes_the_results(small_dataset, tmp_path):
    from foldstack.core.hashing import sha256_file

    out = tmp_path / "out"
    request = request_from_dataset(small_dataset, str(out), knobs=FAST.to_json(), batch_size=2,
                                   reference=str(small_dataset / "reference" / "7DDO.pdb.gz"))
    runner = LocalRunner(tmp_path / "home", workflow="cryoem")
    run = runner.submit(request)
    assert run.wait(3600) == "SUCCEEDED", run.record()
    entered = [e.get("state") for e in run.history() if e.get("type") == "TaskStateEntered"]
    assert {"ValidateInput", "StageInputs", "Curate", "Class2D_small", "InitialModelFromReference", "Refine3D_small",
            "InitialModelGuard", "Refine3DGuard_small", "PostProcess", "CollectOutputs",
            "CleanupAfterSuccess"} <= set(entered)
    assert not any(s.startswith("InitialModelDeNovo") for s in entered)  # a reference start: no GPU job
    assert entered.count("Preprocess") == 2  # two batches of two movies
    published = out / run.run_id
    manifest = load_manifest((published / "manifest.json").read_text())
    for name in REQUIRED_FILES:
        assert manifest.files[name].sha256 == sha256_file(published / name), name
    assert manifest.initial_model == "reference" and manifest.bias_guard is not None
    assert manifest.results.resolution <= 20.0 and manifest.results.micrographs == 4
    assert set(manifest.stages) >= {"motioncorr[batch-000]", "extract[batch-001]", "refine3d_guard", "postprocess"}
    assert run.record()["result"]["output"] == str(published)
    assert not (tmp_path / "home" / "scratch" / run.run_id).exists()  # cleaned up after success
    # the same request again: the recorded run, nothing recomputed
    again = runner.submit(request)
    assert again.existed and again.run_id == run.run_id

