"""Estimated dollar cost of a run: job runtime x instance price (an estimate, never a bill).

For every step a target ran (``<step>.done.json``)::

    runtime  = timings.total (else finished_at - started_at), seconds
    queue    = jobs.yaml: job.queue, or job.queue_by_size_class[target size class]
    tier, purchase = jobs.yaml queues[queue]   (cpu|gpu, spot|on_demand)
    share    = the fraction of one instance the job holds: max(vCPU, memory, GPU share)
               (a CPU job with 8 of a 2xlarge's 8 vCPUs holds all of it; a 1-GPU job on
               an 8-GPU p5 holds 1/8)
    rate     = share x $/h of the cheapest instance type in the price table that fits the
               job (GPU jobs: the size class's instance_types with enough GPU memory; CPU
               jobs: the CPU types of the price table), on-demand or Spot per the queue
    cost     = rate x runtime / 3600

It leaves out instance boot and idle time, queue wait, retried attempts, storage, FSx,
data transfer, Lambda and Step Functions; the cheapest-fit instance makes it a lower
bound for the compute it counts. The price table is a dated YAML under
``foldstack/data/prices/`` (``aws-<YYYY-MM-DD>.yaml``); the newest is used unless
``FOLDSTACK_PRICE_TABLE`` names a file. jobs.yaml is read only through its model,
:class:`foldstack.workflows.specs.JobsFile` (default: the fold workflow's).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from foldstack.core.manifest import TargetResult
from foldstack.workflows.specs import JobsFile, load_workflow

PRICES_DIR = Path(__file__).parent / "data" / "prices"
PRICE_TABLE_ENV = "FOLDSTACK_PRICE_TABLE"
NOTE = ("Estimate: job runtime x instance price from the dated price table (cheapest fitting instance, "
        "share of it the job holds). Excludes instance boot/idle, queue wait, retried attempts, storage, "
        "FSx, transfer, Lambda and Step Functions. Not a bill.")


@dataclass(frozen=True)
class InstancePrice:
    name: str
    vcpu: int
    memory_gib: float
    on_demand: float
    spot: float | None = None
    gpus: int = 0
    gpu_memory_gib: float = 0
    estimate: bool = False

    def hourly(self, purchase: str) -> float | None:
        return self.spot if purchase == "spot" else self.on_demand


@dataclass(frozen=True)
class PriceTable:
    date: str
    region: str
    currency: str
    path: Path
    instances: Mapping[str, InstancePrice]


@dataclass(frozen=True)
class Rate:
    """What one job of a step costs per hour of its runtime."""

    hourly_usd: float
    instance_type: str
    share: float
    tier: str
    purchase: str
    queue: str
    price_estimate: bool
    note: str = ""


def latest_price_table_path(directory: Path = PRICES_DIR) -> Path:
    override = os.environ.get(PRICE_TABLE_ENV)
    if override:
        return Path(override)
    tables = sorted(directory.glob("aws-????-??-??.yaml"))
    if not tables:
        raise FileNotFoundError(f"no price table aws-<YYYY-MM-DD>.yaml under {directory}")
    return tables[-1]


@lru_cache(maxsize=8)
def _load(path: str) -> PriceTable:
    import yaml

    raw = yaml.safe_load(Path(path).read_text())
    date = str(raw["date"])
    datetime.strptime(date, "%Y-%m-%d")  # validates
    instances = {}
    for name, spec in raw["instances"].items():
        instances[name] = InstancePrice(
            name=name, vcpu=int(spec["vcpu"]), memory_gib=float(spec["memory_gib"]),
            on_demand=float(spec["on_demand"]), spot=None if spec.get("spot") is None else float(spec["spot"]),
            gpus=int(spec.get("gpus", 0)), gpu_memory_gib=float(spec.get("gpu_memory_gib", 0)),
            estimate=bool(spec.get("estimate", False)),
        )
    return PriceTable(date=date, region=str(raw["region"]), currency=str(raw["currency"]), path=Path(path),
                      instances=instances)


def load_price_table(path: Path | str | None = None) -> PriceTable:
    return _load(str(Path(path) if path else latest_price_table_path()))


def _share(inst: InstancePrice, vcpu: float, memory_mib: float, gpus: int) -> float | None:
    """Fraction of the instance the job holds, or None if it does not fit."""
    mem_gib = memory_mib / 1024
    if vcpu > inst.vcpu or mem_gib > inst.memory_gib or gpus > inst.gpus:
        return None
    shares = [vcpu / inst.vcpu, mem_gib / inst.memory_gib]
    if gpus:
        shares.append(gpus / inst.gpus)
    return max(shares)


def rate_for(jobs: JobsFile, job: str, size_class: str | None, table: PriceTable) -> Rate:
    """The hourly rate of `job` (in a size class, for jobs that have them) of the workflow's
    jobs.yaml model (``load_workflow(...).jobs`` or ``JobsFile.load(path)``)."""
    if not isinstance(jobs, JobsFile):
        raise TypeError(f"rate_for needs the jobs.yaml model (foldstack.workflows.specs.JobsFile), "
                        f"got {type(jobs).__name__}")
    spec = jobs.jobs[job]
    if spec.size_classes is not None:
        res, queue = spec.resources_for(size_class), spec.queue_for(size_class)
        min_gpu_mem = float(jobs.size_classes[size_class].gpu_memory_gib or 0)
    else:
        res, queue, min_gpu_mem = spec.resources_for(), spec.queue_for(), 0.0
    q = jobs.queues[queue]
    tier, purchase = q.tier, q.purchase
    gpus = res.gpus
    if tier == "gpu" or gpus:
        candidates = [table.instances[t] for t in res.instance_types if t in table.instances]
        if not candidates:
            candidates = [i for i in table.instances.values() if i.gpus]
    else:
        candidates = [i for i in table.instances.values() if not i.gpus]
    note = ""
    fitting = [i for i in candidates if i.gpu_memory_gib >= min_gpu_mem] if min_gpu_mem else candidates
    if not fitting:
        fitting = candidates
        note = f"no listed instance type has {min_gpu_mem:g} GiB per GPU; priced the cheapest listed"
    best: tuple[float, InstancePrice, float] | None = None
    for inst in fitting:
        share = _share(inst, float(res.vcpu), float(res.memory_mib), gpus)
        price = inst.hourly(purchase)
        if share is None or price is None:
            continue
        if best is None or share * price < best[0]:
            best = (share * price, inst, share)
    if best is None:
        raise LookupError(f"no instance in the price table {table.date} fits job {job!r}"
                          f"{' size class ' + size_class if size_class else ''} as {purchase}")
    hourly, inst, share = best
    return Rate(hourly_usd=hourly, instance_type=inst.name, share=round(share, 4), tier=tier, purchase=purchase,
                queue=queue, price_estimate=inst.estimate, note=note)


def runtime_seconds(done: Mapping[str, Any]) -> float:
    """A step's runtime from its done record: timings.total, else finished_at - started_at."""
    total = (done.get("timings") or {}).get("total")
    if isinstance(total, int | float) and total >= 0:
        return float(total)
    try:
        start = datetime.fromisoformat(str(done["started_at"]).replace("Z", "+00:00"))
        end = datetime.fromisoformat(str(done["finished_at"]).replace("Z", "+00:00"))
    except (KeyError, ValueError) as exc:
        raise ValueError("done record has neither timings.total nor started_at/finished_at") from exc
    return max(0.0, (end - start).total_seconds())


def step_cost(done: Mapping[str, Any], rate: Rate) -> dict[str, Any]:
    seconds = runtime_seconds(done)
    out = {
        "usd": round(rate.hourly_usd * seconds / 3600, 6),
        "runtime_seconds": round(seconds, 3),
        "instance_type": rate.instance_type,
        "instance_share": rate.share,
        "hourly_usd": round(rate.hourly_usd, 6),
        "queue": rate.queue,
        "purchase": rate.purchase,
        "price_is_estimate": rate.price_estimate,
    }
    if rate.note:
        out["note"] = rate.note
    return out


def target_cost(jobs: JobsFile, target: TargetResult, dones: Mapping[str, Mapping[str, Any] | None],
                table: PriceTable) -> dict[str, Any]:
    """Cost of one target: ``dones`` maps step name (a jobs.yaml job) to its done record,
    or None where the step did not run (e.g. an MSA cache hit)."""
    steps: dict[str, Any] = {}
    total = 0.0
    for step, done in dones.items():
        if done is None:
            steps[step] = {"usd": 0.0, "skipped": True}
            continue
        size_class = done.get("size_class") or target.size_class
        rate = rate_for(jobs, step, size_class, table)
        steps[step] = step_cost(done, rate)
        total += steps[step]["usd"]
    return {"usd": round(total, 6), "steps": steps}


def _fold_jobs() -> JobsFile:
    return load_workflow("fold").jobs


def annotate_costs(targets: Sequence[TargetResult], *, jobs: JobsFile | None = None,
                   table: PriceTable | None = None) -> dict[str, Any]:
    """Set ``cost`` on each manifest target and return the run-level ``cost`` section.

    Each target is the manifest's :class:`TargetResult` (size_class, provenance[step] with
    timings; a step that did not run is None). Never raises: a cost that cannot be
    estimated is reported, not fatal, because a run's results matter more than its price.
    """
    try:
        jobs = jobs if jobs is not None else _fold_jobs()
        table = table or load_price_table()
        total = 0.0
        keep = {"timings", "started_at", "finished_at", "size_class"}
        for target in targets:
            dones = {step: None if p is None else p.model_dump(include=keep, exclude_none=True)
                     for step, p in target.provenance.items()}
            target.cost = target_cost(jobs, target, dones, table)
            total += target.cost["usd"]
        return {"estimated_total_usd": round(total, 6), "currency": table.currency, "region": table.region,
                "price_table": table.path.name, "price_table_date": table.date, "note": NOTE}
    except Exception as exc:  # noqa: BLE001 - see docstring
        return {"estimated_total_usd": None, "unavailable": f"{type(exc).__name__}: {exc}", "note": NOTE}


def run_cost_from_scratch(run_dir: Path | str, targets: Sequence[Mapping[str, Any]], steps: Sequence[str],
                          *, jobs: JobsFile | None = None, table: PriceTable | None = None) -> dict[str, Any]:
    """Cost of a run straight from ``<scratch>/<run_id>/<step>/<target>/<step>.done.json``
    files (for runs still in scratch, and for tests)."""
    run_dir = Path(run_dir)
    results = []
    for t in targets:
        prov: dict[str, Any] = {}
        for step in steps:
            f = run_dir / step / t["id"] / f"{step}.done.json"
            prov[step] = json.loads(f.read_text()) if f.is_file() else None
        results.append(TargetResult(id=t["id"], size_class=t.get("size_class"), provenance=prov))
    section = annotate_costs(results, jobs=jobs, table=table)
    return {**section, "targets": {r.id: r.cost for r in results if r.cost is not None}}
