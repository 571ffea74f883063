"""Cost estimates: runtime x price from the dated table, per step and target."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from foldstack import cost
from foldstack.core.manifest import TargetResult
from foldstack.cost import annotate_costs, load_price_table, rate_for, run_cost_from_scratch, runtime_seconds


@pytest.fixture(scope="module")
def table():
    return load_price_table()


def test_price_table_is_dated_sourced_and_covers_jobs_and_cpu_families(table, fold_workflow, repo):
    assert re.fullmatch(r"aws-\d{4}-\d{2}-\d{2}\.yaml", table.path.name) and table.date in table.path.name
    assert table.region == "us-east-1" and table.currency == "USD"
    import yaml

    raw = yaml.safe_load(table.path.read_text())
    for name, spec in raw["instances"].items():
        assert spec["source"] in raw["sources"], f"{name}: every figure names its source"
        assert spec["on_demand"] > 0
    wanted = {t for r in fold_workflow.jobs.jobs["predict"].size_classes.values() for t in r.instance_types}
    assert wanted <= set(table.instances)
    families = re.search(r'default\s*=\s*\[([^\]]*)\]', (repo / "terraform/modules/platform/variables.tf").read_text()
                         .split('variable "cpu_instance_types"')[1]).group(1)
    for family in re.findall(r'"([a-z0-9]+)"', families):
        assert any(n.startswith(family + ".") for n in table.instances), family


def test_cpu_job_priced_as_spot_share_of_cheapest_fitting_instance(table, fold_workflow):
    rate = rate_for(fold_workflow.jobs, "msa", None, table)
    assert rate.tier == "cpu" and rate.purchase == "spot" and rate.queue == "cpu-spot"
    # 8 vCPU / ~29.3 GiB: a c*.2xlarge (16 GiB) would need 1.83 of it; m6i.2xlarge fits whole.
    assert rate.instance_type == "m6i.2xlarge" and rate.share == 1.0
    assert rate.hourly_usd == table.instances["m6i.2xlarge"].spot


def test_gpu_job_needs_the_size_class_gpu_memory(table, fold_workflow):
    small = rate_for(fold_workflow.jobs, "predict", "small", table)
    assert small.purchase == "on_demand" and small.instance_type in {"g5.xlarge", "g6.xlarge"}
    medium = rate_for(fold_workflow.jobs, "predict", "medium", table)
    assert table.instances[medium.instance_type].gpu_memory_gib >= 48  # g5.4xlarge's A10G has 24
    large = rate_for(fold_workflow.jobs, "predict", "large", table)
    # The cheapest per GPU among the class's instance types whose GPUs have 80 GB.
    eligible = [t for t in fold_workflow.jobs.jobs["predict"].size_classes["large"].instance_types
                if t in table.instances and table.instances[t].gpu_memory_gib >= 80]
    assert eligible and large.instance_type in eligible and large.share == pytest.approx(1 / 8)
    assert large.hourly_usd == pytest.approx(min(table.instances[t].on_demand / 8 for t in eligible))


def test_runtime_from_timings_or_timestamps():
    assert runtime_seconds({"timings": {"total": 12.5}}) == 12.5
    assert runtime_seconds({"started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T01:00:30Z"}) == 3630
    with pytest.raises(ValueError):
        runtime_seconds({})


def test_annotate_costs_per_step_target_and_total(table, fold_workflow):
    entries = [TargetResult.model_validate(e) for e in [
        {"id": "a", "size_class": "small",
         "provenance": {"msa": {"timings": {"total": 3600}}, "predict": {"timings": {"total": 1800}}}},
        {"id": "b", "size_class": "medium", "provenance": {"msa": None, "predict": {"timings": {"total": 360}}}},
    ]]
    section = annotate_costs(entries, jobs=fold_workflow.jobs, table=table)
    msa = rate_for(fold_workflow.jobs, "msa", None, table).hourly_usd
    small = rate_for(fold_workflow.jobs, "predict", "small", table).hourly_usd
    medium = rate_for(fold_workflow.jobs, "predict", "medium", table).hourly_usd
    assert entries[0].cost["steps"]["msa"]["usd"] == pytest.approx(msa)
    assert entries[0].cost["usd"] == pytest.approx(msa + small / 2)
    assert entries[1].cost["steps"]["msa"] == {"usd": 0.0, "skipped": True}  # e.g. an MSA cache hit
    assert section["estimated_total_usd"] == pytest.approx(msa + small / 2 + medium / 10)
    assert section["price_table_date"] == table.date and "Estimate" in section["note"]
    assert entries[0].cost["steps"]["msa"]["purchase"] == "spot"


def test_annotate_costs_never_raises(table, fold_workflow):
    entries = [TargetResult.model_validate(
        {"id": "x", "size_class": "huge", "provenance": {"predict": {"timings": {"total": 1}}}})]
    section = annotate_costs(entries, jobs=fold_workflow.jobs, table=table)
    assert section["estimated_total_usd"] is None and "huge" in section["unavailable"]


def test_cost_from_step_done_files(tmp_path, table, fold_workflow):
    from foldstack.steps.common import run_step

    def body(ctx):
        (ctx.work_dir / "x").write_text("1")

    run_step("predict", "r1", "t1", tmp_path, body)
    out = run_cost_from_scratch(tmp_path / "r1", [{"id": "t1", "size_class": "small"}], ["predict"],
                                jobs=fold_workflow.jobs, table=table)
    assert out["targets"]["t1"]["steps"]["predict"]["runtime_seconds"] >= 0
    assert out["estimated_total_usd"] is not None


def test_newest_table_is_default_and_env_overrides(tmp_path, monkeypatch):
    assert cost.latest_price_table_path() == sorted(cost.PRICES_DIR.glob("aws-*.yaml"))[-1]
    monkeypatch.setenv(cost.PRICE_TABLE_ENV, str(tmp_path / "aws-2000-01-01.yaml"))
    assert cost.latest_price_table_path() == Path(tmp_path / "aws-2000-01-01.yaml")
