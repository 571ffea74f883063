"""Per-stage dollar cost of a cryoem run (foldstack.cryoem.costs over foldstack.cost). Fast."""

from __future__ import annotations

import pytest

from foldstack.cryoem.costs import job_of, stage_costs

STAGES = {
    "motioncorr[batch-000]": {"wall_seconds": 30.0}, "extract[batch-000]": {"wall_seconds": 10.0},
    "curate": {"wall_seconds": 2.0}, "class2d": {"wall_seconds": 600.0},
    "initial_model": {"wall_seconds": 300.0, "mode": "denovo"}, "refine3d": {"wall_seconds": 900.0},
    "postprocess": {"wall_seconds": 5.0},
}


def _stages():
    return {k: dict(v) for k, v in STAGES.items()}


def test_each_stage_is_priced_on_its_job_and_the_total_adds_up():
    stages = _stages()
    section = stage_costs(stages, "small", region="us-east-1")
    assert section["complete"] and section["priced_stages"] == len(STAGES)
    jobs = {name: s["cost"]["job"] for name, s in stages.items()}
    assert jobs == {"motioncorr[batch-000]": "cryoem_preprocess", "extract[batch-000]": "cryoem_preprocess",
                    "curate": "cryoem_curate", "class2d": "cryoem_gpu", "initial_model": "cryoem_gpu",
                    "refine3d": "cryoem_gpu", "postprocess": "cryoem_postprocess"}
    assert sum(s["cost"]["usd"] for s in stages.values()) == pytest.approx(section["estimated_total_usd"], abs=1e-5)
    assert sum(section["by_job_usd"].values()) == pytest.approx(section["estimated_total_usd"], abs=1e-5)
    # no instance metadata (local): the cheapest fitting type, flagged; GPU stages on a GPU type
    assert section["priced_by_cheapest_fit"] == len(STAGES)
    assert stages["class2d"]["cost"]["size_class"] == "small"
    assert stages["class2d"]["cost"]["queue"] == "cryoem-gpu-small"
    gpu_hourly = stages["refine3d"]["cost"]["hourly_usd"]
    assert gpu_hourly > stages["curate"]["cost"]["hourly_usd"] > 0
    # an hour of refinement costs its hourly rate
    assert stages["refine3d"]["cost"]["usd"] == pytest.approx(gpu_hourly * 900 / 3600, rel=1e-4)


def test_a_bigger_class_costs_more_and_a_reference_start_runs_on_the_cpu():
    small, large = _stages(), _stages()
    stage_costs(small, "small", region="us-east-1")
    stage_costs(large, "large", region="us-east-1")
    assert large["refine3d"]["cost"]["usd"] > small["refine3d"]["cost"]["usd"]
    assert job_of("initial_model", {"mode": "reference"}) == "cryoem_postprocess"
    assert job_of("initial_model_guard", {}) == "cryoem_postprocess" and job_of("refine3d_guard", {}) == "cryoem_gpu"
    with pytest.raises(KeyError):
        job_of("mystery", {})


def test_a_stage_the_workflow_does_not_know_is_unpriced_and_the_total_says_partial():
    stages = {**_stages(), "mystery": {"wall_seconds": 5.0}}
    section = stage_costs(stages, "small", region="us-east-1")
    assert section["complete"] is False and section["unpriced_stages"] == ["mystery"]
    assert stages["mystery"]["cost"]["usd"] is None and stages["class2d"]["cost"]["usd"] > 0


def test_no_price_table_for_the_region_is_unavailable_never_an_error(monkeypatch):
    monkeypatch.delenv("FOLDSTACK_PRICE_TABLE", raising=False)
    section = stage_costs(_stages(), "small", region="ap-nowhere-9")
    assert section["estimated_total_usd"] is None and "ap-nowhere-9" in section["unavailable"]
