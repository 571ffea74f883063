"""Cost estimates: runtime x price from the dated table, per step and target."""

from __future__ import annotations

import json
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
    assert re.fullmatch(r"aws-us-east-1-\d{4}-\d{2}-\d{2}\.yaml", table.path.name) and table.date in table.path.name
    assert table.region == "us-east-1" and table.currency == "USD"
    import yaml

    for path in sorted(cost.PRICES_DIR.glob("aws-*.yaml")):  # every table, old ones too
        raw = yaml.safe_load(path.read_text())
        assert raw["date"] in path.name and (raw["region"] in path.name or path.name == "aws-2026-11-21.yaml")
        for name, spec in raw["instances"].items():
            assert spec["source"] in raw["sources"], f"{path.name} {name}: every figure names its source"
            if spec["on_demand"] is None:  # not offered in that region: says so, never priced
                assert spec.get("note") and not spec.get("spot"), f"{path.name} {name}"
            else:
                assert spec["on_demand"] > 0
    raw = yaml.safe_load(table.path.read_text())
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
    # a job that cannot be priced is listed, never guessed; the total says it is partial
    assert section["estimated_total_usd"] == 0 and section["complete"] is False and section["unpriced_jobs"] == 1
    assert section["unpriced"][0]["target"] == "x" and "huge" in section["unpriced"][0]["reason"]
    assert annotate_costs(entries, jobs=fold_workflow.jobs, table=table, region="xx-none-1")["complete"] is False
    section = annotate_costs(entries, jobs=object(), table=table)  # what cannot be estimated at all: unavailable
    assert section["estimated_total_usd"] is None and section["unavailable"]


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
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv(cost.PRICE_REGION_ENV, raising=False)
    us = cost.price_tables()["us-east-1"]
    assert [p.name for p in us][:2] == ["aws-2026-11-21.yaml", "aws-us-east-1-2026-11-30.yaml"]  # oldest first
    assert cost.latest_price_table_path() == us[-1] == cost.latest_price_table_path(region="us-east-1")
    monkeypatch.setenv(cost.PRICE_TABLE_ENV, str(tmp_path / "aws-2000-01-01.yaml"))
    assert cost.latest_price_table_path() == Path(tmp_path / "aws-2000-01-01.yaml")


# ------------------------------------------------------------------ priced where it ran


def _done(seconds, queue=None, size_class=None, attempt=1, **timings):
    done = {"timings": {"total": seconds, **timings}}
    if queue is not None:
        done["ran_on"] = {"queue": queue, "compute_environment": f"{queue}-ce", "size_class": size_class,
                          "attempt": attempt, "job_id": "j-1", "availability_zone": "us-east-1b"}
    return done


def test_p4d_and_p4de_carry_the_public_prices_checked_2026_11(table):
    assert table.instances["p4d.24xlarge"].on_demand == pytest.approx(21.957642)
    assert table.instances["p4de.24xlarge"].on_demand == pytest.approx(27.44705)
    assert not table.instances["p4d.24xlarge"].estimate and not table.instances["p4de.24xlarge"].estimate
    old = load_price_table(cost.PRICES_DIR / "aws-2026-11-21.yaml")  # kept: older manifests name it
    assert old.instances["p4d.24xlarge"].on_demand / 21.957642 == pytest.approx(1.49, abs=0.01)  # was ~49 % high


def test_queue_names_map_back_to_jobs_yaml_keys(fold_workflow):
    jobs = fold_workflow.jobs
    assert cost.queue_key(jobs, "foldstack-dev-gpu-large") == "gpu-large"  # Terraform: <prefix>-<key>
    assert cost.queue_key(jobs, "foldstack-local-cpu-ondemand") == "cpu-ondemand"
    assert cost.queue_key(jobs, "arn:aws:batch:eu-west-1:1:job-queue/x-cpu-spot") == "cpu-spot"
    assert cost.queue_key(jobs, "someone-elses-queue") is None


def test_escalated_predict_is_priced_on_the_bigger_class_it_ran_on(table, fold_workflow):
    """OOM escalation moves a small target's batch to gpu-medium: priced as medium
    (g6e, 48 GB), not as the small class the target was planned in."""
    jobs = fold_workflow.jobs
    target = TargetResult.model_validate({"id": "t", "size_class": "small", "provenance": {
        "predict": _done(3600, "foldstack-local-gpu-medium", "medium")}})
    section = annotate_costs([target], jobs=jobs, table=table)
    step = target.cost["steps"]["predict"]
    medium = rate_for(jobs, "predict", "medium", table)
    small = rate_for(jobs, "predict", "small", table)
    assert step["queue"] == "gpu-medium" and step["size_class"] == "medium" and step["priced_by"] == "ran_on"
    assert step["instance_type"] == medium.instance_type and table.instances[step["instance_type"]].gpu_memory_gib >= 48
    assert step["usd"] == pytest.approx(medium.hourly_usd) and medium.hourly_usd > small.hourly_usd
    assert step["availability_zone"] == "us-east-1b" and step["attempt"] == 1
    assert section["estimated_total_usd"] == pytest.approx(medium.hourly_usd)
    # the queue alone decides the class when the job definition's class was not recorded
    target2 = TargetResult.model_validate({"id": "t2", "size_class": "small", "provenance": {
        "predict": _done(3600, "foldstack-prod-gpu-large")}})
    annotate_costs([target2], jobs=jobs, table=table)
    large = target2.cost["steps"]["predict"]
    assert large["size_class"] == "large"
    assert large["usd"] == pytest.approx(rate_for(jobs, "predict", "large", table).hourly_usd)
    assert large["instance_type"] == "p4de.24xlarge"  # cheapest 80 GB GPU, 1/8 of it
    assert large["hourly_usd"] == pytest.approx(27.44705 / 8)


def test_fallen_back_msa_is_priced_on_demand(table, fold_workflow):
    jobs = fold_workflow.jobs
    target = TargetResult.model_validate({"id": "t", "size_class": "small", "provenance": {
        "msa": _done(3600, "foldstack-local-cpu-ondemand")}})
    annotate_costs([target], jobs=jobs, table=table)
    step = target.cost["steps"]["msa"]
    assert step["queue"] == "cpu-ondemand" and step["purchase"] == "on_demand" and step["priced_by"] == "ran_on"
    assert step["usd"] == pytest.approx(table.instances[step["instance_type"]].on_demand * step["instance_share"])
    spot = rate_for(jobs, "msa", None, table)  # what the spec's queue (cpu-spot) would have said
    assert step["usd"] > spot.hourly_usd * 3 and spot.purchase == "spot"


def test_a_job_without_ran_on_is_priced_from_the_spec_and_flagged(table, fold_workflow):
    target = TargetResult.model_validate({"id": "t", "size_class": "small", "provenance": {
        "msa": _done(3600), "predict": _done(60, "not-a-foldstack-queue")}})
    section = annotate_costs([target], jobs=fold_workflow.jobs, table=table)
    msa, predict = target.cost["steps"]["msa"], target.cost["steps"]["predict"]
    assert msa["priced_by"] == "jobs.yaml" and msa["queue"] == "cpu-spot" and "no ran_on" in msa["note"]
    assert predict["priced_by"] == "jobs.yaml" and predict["queue"] == "gpu-small"
    assert "not-a-foldstack" in predict["note"]
    assert section["priced_from_jobs_yaml"] == 2


def test_run_totals_split_into_msa_predict_and_overhead(table, fold_workflow):
    jobs = fold_workflow.jobs
    entries = [TargetResult.model_validate(e) for e in [
        {"id": "a", "size_class": "small", "metrics": {"timings": {"load": 30.0, "predict": 500.0}},
         "provenance": {"msa": _done(3600, "x-cpu-spot"),
                        "predict": _done(600, "x-gpu-small", "small", await_inputs=60.0)}},
        {"id": "b", "size_class": "small", "provenance": {"msa": {"msa_cache": "hit", "timings": {"total": 0.0}},
                                                          "predict": _done(300, "x-gpu-small", "small")}},
    ]]
    section = annotate_costs(entries, jobs=jobs, table=table)
    msa = rate_for(jobs, "msa", None, table).hourly_usd
    gpu = rate_for(jobs, "predict", "small", table).hourly_usd
    parts = section["by_part_usd"]
    assert parts["msa"] == pytest.approx(msa)
    assert parts["overhead"] == pytest.approx(gpu * 90 / 3600)  # 60 s waiting for inputs + 30 s model load
    assert parts["predict"] == pytest.approx(gpu * (600 - 90 + 300) / 3600)
    assert sum(parts.values()) == pytest.approx(section["estimated_total_usd"])
    assert entries[1].cost["steps"]["msa"] == {"usd": 0.0, "skipped": True}  # cache hit: no job
    assert entries[0].cost["steps"]["predict"]["overhead_seconds"] == 90


def test_a_region_without_a_table_is_unavailable_not_priced_as_us_east_1(fold_workflow, monkeypatch):
    monkeypatch.delenv(cost.PRICE_TABLE_ENV, raising=False)
    monkeypatch.delenv(cost.PRICE_REGION_ENV, raising=False)
    monkeypatch.setenv("AWS_REGION", "ap-southeast-2")  # as Lambda sets it in the deployment's region
    assert cost.deployment_region() == "ap-southeast-2"
    with pytest.raises(cost.NoPriceTable, match="ap-southeast-2"):
        cost.latest_price_table_path()
    target = TargetResult.model_validate({"id": "t", "size_class": "small", "provenance": {
        "predict": _done(60, "foldstack-dev-gpu-small")}})
    section = annotate_costs([target], jobs=fold_workflow.jobs)
    assert section["estimated_total_usd"] is None and section["region"] == "ap-southeast-2"
    assert "no price table for region ap-southeast-2" in section["unavailable"] and target.cost is None
    monkeypatch.setenv(cost.PRICE_REGION_ENV, "us-east-1")  # a configured region wins (local mode)
    assert annotate_costs([target], jobs=fold_workflow.jobs)["region"] == "us-east-1"


def test_cost_from_done_records_written_under_batch(tmp_path, table, fold_workflow, monkeypatch):
    """The step contract records ran_on from what Batch (or the local engine) sets."""
    from foldstack.steps.common import run_step

    monkeypatch.setenv("AWS_BATCH_JQ_NAME", "foldstack-dev-gpu-medium")
    monkeypatch.setenv("AWS_BATCH_CE_NAME", "foldstack-dev-gpu-medium-2026")
    monkeypatch.setenv("AWS_BATCH_JOB_ID", "abc")
    monkeypatch.setenv("AWS_BATCH_JOB_ATTEMPT", "2")
    monkeypatch.setenv("FOLDSTACK_SIZE_CLASS", "medium")
    monkeypatch.delenv("ECS_CONTAINER_METADATA_URI_V4", raising=False)
    final = run_step("predict", "r1", "t1", tmp_path, lambda ctx: (ctx.work_dir / "x").write_text("1"))
    done = json.loads((final / "predict.done.json").read_text())
    assert done["ran_on"] == {"queue": "foldstack-dev-gpu-medium", "size_class": "medium", "attempt": 2,
                              "compute_environment": "foldstack-dev-gpu-medium-2026", "job_id": "abc"}
    assert done["output_sizes"] == {"x": 1}
    out = run_cost_from_scratch(tmp_path / "r1", [{"id": "t1", "size_class": "small"}], ["predict"],
                                jobs=fold_workflow.jobs, table=table)
    assert out["targets"]["t1"]["steps"]["predict"]["queue"] == "gpu-medium"
    assert out["targets"]["t1"]["steps"]["predict"]["attempt"] == 2


def test_eu_west_1_table_loads_and_prices_jobs_run_there(fold_workflow, monkeypatch, repo):
    """terraform/envs/dev and prod deploy to eu-west-1: runs there are priced with its own
    table (through the real loader), never with us-east-1's; types not offered there are
    null and never chosen."""
    for env in ("dev", "prod"):
        assert 'region      = "eu-west-1"' in (repo / f"terraform/envs/{env}/terraform.tfvars").read_text()
    monkeypatch.delenv(cost.PRICE_TABLE_ENV, raising=False)
    monkeypatch.delenv(cost.PRICE_REGION_ENV, raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")  # as Lambda sets it there
    path = cost.latest_price_table_path()
    assert path.name == "aws-eu-west-1-2026-11-30.yaml" and path == cost.price_tables()["eu-west-1"][-1]
    eu, us = load_price_table(), load_price_table(region="us-east-1")
    assert eu.region == "eu-west-1" and eu.currency == "USD" and eu.path == path and us.region == "us-east-1"
    assert set(eu.instances) == set(us.instances)  # covers every type the us-east-1 table lists
    assert eu.instances["g5.xlarge"].on_demand == pytest.approx(1.123) and not eu.instances["g5.xlarge"].estimate
    assert eu.instances["p4d.24xlarge"].on_demand == pytest.approx(23.71569)
    for name in ("g6.xlarge", "g6e.2xlarge", "g6e.4xlarge", "p4de.24xlarge", "p5.48xlarge"):
        assert eu.instances[name].on_demand is None, name  # not offered in eu-west-1

    target = TargetResult.model_validate({"id": "t", "size_class": "small", "provenance": {
        "msa": _done(3600, "foldstack-prod-cpu-spot"), "predict": _done(3600, "foldstack-prod-gpu-small", "small")}})
    section = annotate_costs([target], jobs=fold_workflow.jobs)
    assert section["region"] == "eu-west-1" and section["price_table"] == path.name and "region_note" not in section
    predict, msa = target.cost["steps"]["predict"], target.cost["steps"]["msa"]
    assert predict["instance_type"] == "g5.xlarge"  # g6.xlarge is not offered there
    assert predict["usd"] == pytest.approx(1.123) != rate_for(fold_workflow.jobs, "predict", "small", us).hourly_usd
    assert msa["usd"] == pytest.approx(eu.instances[msa["instance_type"]].spot * msa["instance_share"])
    assert msa["price_is_estimate"] is True
    assert section["estimated_total_usd"] == pytest.approx(predict["usd"] + msa["usd"])

    # medium (g6e) and large (p4de, p5): no allowed instance type is offered in eu-west-1,
    # so such a job is listed unpriced rather than priced with another region's figure, and the
    # run's total sums the jobs that are priced and says it is partial.
    priced_total = section["estimated_total_usd"]
    large = TargetResult.model_validate({"id": "l", "size_class": "large", "provenance": {
        "predict": _done(60, "foldstack-prod-gpu-large", "large")}})
    target.cost = None
    section = annotate_costs([target, large], jobs=fold_workflow.jobs)
    assert section["estimated_total_usd"] == pytest.approx(priced_total) and section["complete"] is False
    assert section["priced_jobs"] == 2 and section["unpriced_jobs"] == 1
    assert [(u["target"], u["step"]) for u in section["unpriced"]] == [("l", "predict")]
    assert "large" in section["unpriced"][0]["reason"] and "partial total: 1 of 3 jobs" in section["partial_note"]
    assert large.cost == {"usd": 0.0, "steps": {"predict": {"usd": None, "unpriced": section["unpriced"][0]["reason"]}},
                          "partial": True, "unpriced_steps": ["predict"]}
    message = cost.cost_message(section)
    assert message.startswith(f"estimated cost {priced_total:,.2f} USD (partial total: 1 of 3 jobs")


# ------------------------------------------------------------------ the instance type it ran on


def test_the_instance_type_and_purchase_it_ran_on_are_priced(table, fold_workflow):
    """ran_on.instance_type / purchase (the step reads them from the instance metadata) are
    priced where the table has them; without them, the cheapest fitting type, flagged."""
    jobs = fold_workflow.jobs
    done = _done(3600, "foldstack-prod-gpu-medium", "medium")
    done["ran_on"].update(instance_type="g6e.4xlarge", purchase="on_demand")
    target = TargetResult.model_validate({"id": "t", "size_class": "small", "provenance": {"predict": done}})
    section = annotate_costs([target], jobs=jobs, table=table)
    step = target.cost["steps"]["predict"]
    cheapest = rate_for(jobs, "predict", "medium", table)
    assert cheapest.instance_type != "g6e.4xlarge" and cheapest.instance_source == "cheapest_fit"
    inst = table.instances["g6e.4xlarge"]
    assert step["instance_type"] == "g6e.4xlarge" and step["instance_source"] == "ran_on"
    assert step["usd"] == pytest.approx(inst.on_demand * step["instance_share"]) and step["usd"] > cheapest.hourly_usd
    assert "priced_by_cheapest_fit" not in section

    # the purchase option it ran as counts over the queue's (an r6i.2xlarge Spot instance)
    rate = rate_for(jobs, "msa", None, table, queue="cpu-ondemand", instance_type="r6i.2xlarge", purchase="spot")
    assert rate.purchase == "spot" and rate.instance_type == "r6i.2xlarge" and rate.instance_source == "ran_on"
    assert rate.hourly_usd == pytest.approx(table.instances["r6i.2xlarge"].spot * rate.share)

    # not recorded (no instance metadata, as locally): the cheapest fitting type, and said so
    plain = TargetResult.model_validate({"id": "u", "size_class": "small", "provenance": {
        "predict": _done(3600, "foldstack-prod-gpu-medium", "medium")}})
    section = annotate_costs([plain], jobs=jobs, table=table)
    assert plain.cost["steps"]["predict"]["instance_source"] == "cheapest_fit"
    assert section["priced_by_cheapest_fit"] == 1

    # a type the table lacks: the cheapest fitting type, with a note naming it
    odd = _done(3600, "foldstack-prod-gpu-medium", "medium")
    odd["ran_on"]["instance_type"] = "x9.huge"
    other = TargetResult.model_validate({"id": "v", "size_class": "small", "provenance": {"predict": odd}})
    annotate_costs([other], jobs=jobs, table=table)
    step = other.cost["steps"]["predict"]
    assert step["instance_source"] == "cheapest_fit" and "x9.huge, is not in the price table" in step["note"]


def test_the_cli_line_says_a_total_is_partial(table, fold_workflow):
    """`foldstack status` / `run --local` print `Run.cost_sentence()`: the client's one line,
    from the manifest's cost section."""
    from foldstack.client.outcome import cost_sentence
    from foldstack.core.manifest import Manifest
    from foldstack.core.request import RunRequest

    entries = [TargetResult.model_validate({"id": "a", "size_class": "small", "provenance": {
        "predict": _done(3600, "foldstack-local-gpu-small", "small")}}),
        TargetResult.model_validate({"id": "b", "size_class": "huge", "provenance": {
            "predict": {"timings": {"total": 60}}}})]
    section = annotate_costs(entries, jobs=fold_workflow.jobs, table=table)
    manifest = Manifest(run_id="r", created_at="2026-12-01T00:00:00Z", foldstack_version="0",
                        request=RunRequest(inputs=("in.fasta",), output_uri="out"), targets=entries, cost=section)
    line = cost_sentence(manifest)
    assert line.startswith(f"estimated cost {section['estimated_total_usd']:,.2f} USD (partial total: 1 of 2 jobs")
    assert "huge" in line
    assert cost_sentence(manifest.model_copy(update={"cost": {}})) is None
    whole = annotate_costs(entries[:1], jobs=fold_workflow.jobs, table=table)
    assert cost.cost_message(whole) == f"estimated cost {whole['estimated_total_usd']:,.2f} USD"
