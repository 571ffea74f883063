"""Per-stage dollar cost of a cryoem run, from :mod:`foldstack.cost` (an estimate, never a
bill): each stage's runtime (its done record's ``timings.total``) x the hourly rate of the
Batch job that ran it, on the queue and size class it ran on (``ran_on``) or, without one
(local mode), the queue and class jobs.yaml names; priced on ``ran_on.instance_type`` where a
step recorded one, else on the cheapest fitting instance type (flagged ``instance_source:
cheapest_fit``). In the cloud no cryoem step can record it (instance metadata hop limit 1,
and no instance lookup as fold's Publish Batch has: :mod:`foldstack.tasks.instances`).

Stages and their jobs (jobs.yaml): motioncorr, ctf, pick, extract -> ``cryoem_preprocess``
(one job per batch runs the four); curate -> ``cryoem_curate``; class2d, refine3d,
refine3d_guard and a de novo initial model -> ``cryoem_gpu`` (the run's size class);
postprocess and an initial model from a reference -> ``cryoem_postprocess``.

Computed where jobs.yaml and the price tables are (Collect Outputs' Lambda, local mode),
not in the step images. Never raises: a run's results matter more than its price.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

STAGE_JOBS = {"motioncorr": "cryoem_preprocess", "ctf": "cryoem_preprocess", "pick": "cryoem_preprocess",
              "extract": "cryoem_preprocess", "curate": "cryoem_curate", "class2d": "cryoem_gpu",
              "refine3d": "cryoem_gpu", "refine3d_guard": "cryoem_gpu", "postprocess": "cryoem_postprocess",
              "initial_model_guard": "cryoem_postprocess"}


def job_of(stage: str, record: Mapping[str, Any]) -> str:
    """The jobs.yaml job that ran `stage` (``<name>`` or ``<name>[<batch>]``)."""
    name = stage.split("[", 1)[0]
    if name == "initial_model":  # de novo: SGD on the GPU class; from a reference: a filter on the CPU
        return "cryoem_gpu" if record.get("mode") == "denovo" else "cryoem_postprocess"
    if name not in STAGE_JOBS:
        raise KeyError(f"stage {stage!r} belongs to no cryoem job")
    return STAGE_JOBS[name]


def stage_costs(stages: dict[str, dict[str, Any]], size_class: str | None, *, jobs: Any = None, table: Any = None,
                region: str | None = None) -> dict[str, Any]:
    """Set ``cost`` on every stage record (wall_seconds, optional ran_on and mode) and
    return the run's cost section: total, by job, the price table, the note."""
    from foldstack import cost

    region = region or cost.deployment_region()
    try:
        if jobs is None:
            from foldstack.workflows.specs import load_workflow

            jobs = load_workflow("cryoem").jobs
        table = table or cost.load_price_table(region=region)
        total, by_job, unpriced, cheapest_fit = 0.0, {}, [], 0
        for name, record in stages.items():
            seconds = record.get("wall_seconds")
            done = {"timings": {"total": seconds if isinstance(seconds, int | float) else 0.0},
                    "size_class": size_class}
            ran = record.get("ran_on")
            if isinstance(ran, Mapping):
                done["ran_on"] = dict(ran)
            job = None
            try:
                job = job_of(name, record)
                queue, klass, priced_by, note = cost.where_it_ran(jobs, job, done, size_class)
                rate = cost.rate_for(jobs, job, klass, table, queue=queue,
                                     instance_type=(ran or {}).get("instance_type"),
                                     purchase=(ran or {}).get("purchase"))
            except (KeyError, LookupError) as exc:
                record["cost"] = {"usd": None, "job": job, "unpriced": f"{type(exc).__name__}: {exc}"}
                unpriced.append(name)
                continue
            record["cost"] = {**cost.step_cost(done, rate), "job": job, "size_class": klass, "priced_by": priced_by}
            if note:
                record["cost"]["priced_by_note"] = note
            total += record["cost"]["usd"]
            by_job[job] = by_job.get(job, 0.0) + record["cost"]["usd"]
            cheapest_fit += rate.instance_source == "cheapest_fit"
        section: dict[str, Any] = {
            "estimated_total_usd": round(total, 6), "by_job_usd": {k: round(v, 6) for k, v in sorted(by_job.items())},
            "currency": table.currency, "region": table.region, "price_table": table.path.name,
            "price_table_date": table.date, "note": cost.NOTE, "complete": not unpriced,
            "priced_stages": len(stages) - len(unpriced)}
        if unpriced:
            section["unpriced_stages"] = unpriced
        if cheapest_fit:  # no instance metadata (local mode): the cheapest type that fits, a lower bound
            section["priced_by_cheapest_fit"] = cheapest_fit
        return section
    except Exception as exc:  # noqa: BLE001 - see the module docstring
        return {"estimated_total_usd": None, "region": region, "unavailable": f"{type(exc).__name__}: {exc}",
                "note": cost.NOTE}
