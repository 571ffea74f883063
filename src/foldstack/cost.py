"""Estimated dollar cost of a run: job runtime x instance price (an estimate, never a bill).

Each job is priced where it ran. For every step a target ran (``<step>.done.json``)::

    runtime  = timings.total (else finished_at - started_at), seconds
    queue    = ran_on.queue (the Batch queue the job ran on, AWS_BATCH_JQ_NAME, mapped to
               its jobs.yaml key); without ran_on: jobs.yaml's job.queue, or
               job.queue_by_size_class[class], flagged ``priced_by: jobs.yaml``
    class    = ran_on.size_class, else the queue's size class, else the target's (jobs with
               size classes): an OOM-escalated predict is priced in the class it ran in
    tier, purchase = jobs.yaml queues[queue]   (cpu|gpu, spot|on_demand): an MSA that fell
               back to cpu-ondemand is priced on demand
    share    = the fraction of one instance the job holds: max(vCPU, memory, GPU share)
               (a CPU job with 8 of a 2xlarge's 8 vCPUs holds all of it; a 1-GPU job on
               an 8-GPU p5 holds 1/8)
    rate     = share x $/h of the instance type the job ran on (``ran_on.instance_type``
               and ``ran_on.purchase``: in the cloud Publish Batch asks Batch and ECS for
               them, :mod:`foldstack.tasks.instances`; a step that reaches the EC2 instance
               metadata records its own, :mod:`foldstack.steps.ran_on`), where the table
               has it; else (not recorded: as locally, or the lookup missed; or not in the
               table) the cheapest type in the price table that fits the job (GPU jobs: the class's
               instance_types with enough GPU memory; CPU jobs: the CPU types of the price
               table), on-demand or Spot per the queue, flagged ``instance_source:
               cheapest_fit`` and counted in the run's ``priced_by_cheapest_fit``.
    cost     = rate x runtime / 3600; its overhead part is the time the job waited for its
               inputs (timings.await_inputs) plus, for predict, model loading (metrics
               timings ``load``, ``import_jax``, ``*_load``)
    earlier  = the attempts Batch ran before the one that wrote the done record (a Spot
               reclaim, a lost host: ``ran_on.earlier_attempts``, recorded in the cloud by
               Publish Batch), each priced the same way for its own seconds and instance
               type, added to the job's cost as overhead (``earlier_attempts``)

A job that cannot be priced (its region's table lacks its instance type, as eu-west-1's
lacks the medium and large GPU types) is listed (``unpriced``, ``unpriced_jobs``) and left
out of the total, which then says it is partial (``complete: false``, ``partial_note``);
the other jobs are still summed. The CLI prints :func:`cost_message`.

The run's total splits into ``msa``, ``predict`` and ``overhead`` (``by_part_usd``). It
leaves out instance boot and idle time, queue wait, an out-of-memory attempt in a smaller
class or an MSA's Spot attempt before its on-demand fallback (separate Batch jobs whose done
record was never written), storage, FSx, data transfer, Lambda and Step Functions; where
the cheapest-fit instance stands in for the one used, it is a lower bound for the compute
it counts.

Prices: dated tables ``foldstack/data/prices/aws-<region>-<YYYY-MM-DD>.yaml`` (older
files are ``aws-<YYYY-MM-DD>.yaml``; the ``region`` inside each file counts). A run is
priced with the newest table of the deployment's region (:func:`deployment_region`:
``FOLDSTACK_PRICE_REGION``, else ``AWS_REGION`` as Lambda sets it, else us-east-1, the
local engine's region); a region without a table is reported as unavailable, never priced
with another region's table. ``FOLDSTACK_PRICE_TABLE`` names a file instead. jobs.yaml is
read only through its model, :class:`foldstack.workflows.specs.JobsFile` (default: the
fold workflow's).
"""

from __future__ import annotations

import json
import os
import re
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
PRICE_REGION_ENV = "FOLDSTACK_PRICE_REGION"
DEFAULT_REGION = "us-east-1"
_TABLE_NAME = re.compile(r"aws-(?:(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+)-)?(?P<date>\d{4}-\d{2}-\d{2})\.yaml")
PARTS = ("msa", "predict")  # run totals: these steps' work, and "overhead"
UNPRICED_LISTED = 100  # unpriced jobs named in the run's cost section (all are counted)
NOTE = ("Estimate: each job's runtime x the price of the instance type and purchase option it ran on (ran_on in "
        "its done record; where that is not recorded, the cheapest type of its queue and size class that fits; "
        "the share of it the job holds), from "
        "the dated price table of the deployment's region. Excludes instance boot/idle, queue wait, attempts "
        "before the one that finished, storage, FSx, transfer, Lambda and Step Functions. Not a bill.")


class NoPriceTable(LookupError):
    """No price table for the region asked for (a cost section then says ``unavailable``)."""


@dataclass(frozen=True)
class InstancePrice:
    name: str
    vcpu: int
    memory_gib: float
    on_demand: float | None  # None: not offered in the table's region (never priced)
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
    # "ran_on": the type the job ran on (ran_on.instance_type); "cheapest_fit": the cheapest type
    # of its queue and class that fits (the type was not recorded, or is not in the table)
    instance_source: str = "cheapest_fit"


def deployment_region() -> str:
    """The region a run's jobs ran in: ``FOLDSTACK_PRICE_REGION``, else ``AWS_REGION``
    (Lambda sets it), else us-east-1 (the local engine's region)."""
    return os.environ.get(PRICE_REGION_ENV) or os.environ.get("AWS_REGION") or DEFAULT_REGION


def price_tables(directory: Path = PRICES_DIR) -> dict[str, list[Path]]:
    """Every dated table under `directory` by the region it prices, oldest first."""
    found: dict[str, list[tuple[str, Path]]] = {}
    for path in sorted(Path(directory).glob("aws-*.yaml")):
        if _TABLE_NAME.fullmatch(path.name) is None:
            continue
        table = _load(str(path))
        found.setdefault(table.region, []).append((table.date, path))
    return {region: [p for _, p in sorted(items)] for region, items in found.items()}


def latest_price_table_path(directory: Path = PRICES_DIR, *, region: str | None = None) -> Path:
    """``FOLDSTACK_PRICE_TABLE`` if set, else the newest table for `region`
    (:func:`deployment_region` by default); :class:`NoPriceTable` if there is none."""
    override = os.environ.get(PRICE_TABLE_ENV)
    if override:
        return Path(override)
    region = region or deployment_region()
    tables = price_tables(directory)
    if region not in tables:
        have = ", ".join(sorted(tables)) or "none"
        raise NoPriceTable(f"no price table for region {region} under {directory} (tables exist for: {have}); "
                           f"add aws-{region}-<YYYY-MM-DD>.yaml with a source for every figure")
    return tables[region][-1]


@lru_cache(maxsize=16)
def _load(path: str) -> PriceTable:
    import yaml

    raw = yaml.safe_load(Path(path).read_text())
    date = str(raw["date"])
    datetime.strptime(date, "%Y-%m-%d")  # validates
    instances = {}
    for name, spec in raw["instances"].items():
        instances[name] = InstancePrice(
            name=name, vcpu=int(spec["vcpu"]), memory_gib=float(spec["memory_gib"]),
            on_demand=None if spec.get("on_demand") is None else float(spec["on_demand"]),
            spot=None if spec.get("spot") is None else float(spec["spot"]),
            gpus=int(spec.get("gpus", 0)), gpu_memory_gib=float(spec.get("gpu_memory_gib", 0)),
            estimate=bool(spec.get("estimate", False)),
        )
    return PriceTable(date=date, region=str(raw["region"]), currency=str(raw["currency"]), path=Path(path),
                      instances=instances)


def load_price_table(path: Path | str | None = None, *, region: str | None = None) -> PriceTable:
    """The table at `path`, else the newest for `region` (see :func:`latest_price_table_path`)."""
    return _load(str(Path(path) if path else latest_price_table_path(region=region)))


def _share(inst: InstancePrice, vcpu: float, memory_mib: float, gpus: int) -> float | None:
    """Fraction of the instance the job holds, or None if it does not fit."""
    mem_gib = memory_mib / 1024
    if vcpu > inst.vcpu or mem_gib > inst.memory_gib or gpus > inst.gpus:
        return None
    shares = [vcpu / inst.vcpu, mem_gib / inst.memory_gib]
    if gpus:
        shares.append(gpus / inst.gpus)
    return max(shares)


def rate_for(jobs: JobsFile, job: str, size_class: str | None, table: PriceTable, *,
             queue: str | None = None, instance_type: str | None = None, purchase: str | None = None) -> Rate:
    """The hourly rate of `job` (in a size class, for jobs that have them) of the workflow's
    jobs.yaml model (``load_workflow(...).jobs`` or ``JobsFile.load(path)``), on `queue`
    (a jobs.yaml queue key: where it ran) or, by default, the queue jobs.yaml names.

    `instance_type` / `purchase`: what the job ran on (``ran_on``, from the instance
    metadata): that type is priced, as Spot or on demand, where the table has it and the
    job fits it; otherwise (not recorded, or not in the table) the cheapest type of the
    queue that fits, and the rate's note says so."""
    if not isinstance(jobs, JobsFile):
        raise TypeError(f"rate_for needs the jobs.yaml model (foldstack.workflows.specs.JobsFile), "
                        f"got {type(jobs).__name__}")
    spec = jobs.jobs[job]
    if spec.size_classes is not None:
        res, queue = spec.resources_for(size_class), queue or spec.queue_for(size_class)
        min_gpu_mem = float(jobs.size_classes[size_class].gpu_memory_gib or 0)
    else:
        res, queue, min_gpu_mem = spec.resources_for(), queue or spec.queue_for(), 0.0
    q = jobs.queues[queue]
    tier, purchase = q.tier, purchase if purchase in ("spot", "on_demand") else q.purchase
    gpus = res.gpus
    if instance_type is not None:
        inst = table.instances.get(instance_type)
        share = None if inst is None else _share(inst, float(res.vcpu), float(res.memory_mib), gpus)
        price = None if inst is None else inst.hourly(purchase)
        if inst is not None and share is not None and price is not None:
            return Rate(hourly_usd=share * price, instance_type=inst.name, share=round(share, 4), tier=tier,
                        purchase=purchase, queue=queue, price_estimate=inst.estimate, instance_source="ran_on")
        why = ("is not in the price table" if inst is None else "does not fit the job" if share is None
               else f"has no {purchase} price in the table")
        fallback_note = f"the instance type it ran on, {instance_type}, {why}; priced the cheapest fitting type"
    else:
        fallback_note = ""
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
    note = "; ".join(filter(None, [note, fallback_note]))
    return Rate(hourly_usd=hourly, instance_type=inst.name, share=round(share, 4), tier=tier, purchase=purchase,
                queue=queue, price_estimate=inst.estimate, note=note)


def queue_key(jobs: JobsFile, name: str) -> str | None:
    """The jobs.yaml queue key of a Batch queue name or ARN (``<prefix>-<key>``; the
    longest key that ends it), or None."""
    name = name.rsplit("/", 1)[-1]
    keys = [k for k in jobs.queues if name == k or name.endswith(f"-{k}")]
    return max(keys, key=len) if keys else None


def where_it_ran(jobs: JobsFile, job: str, done: Mapping[str, Any],
                 target_class: str | None) -> tuple[str, str | None, str, str]:
    """(queue key, size class, ``priced_by``, note) of one job, from its done record's
    ``ran_on`` or, without one, from jobs.yaml (flagged)."""
    spec = jobs.jobs[job]
    sized = spec.size_classes is not None
    ran = done.get("ran_on")
    if isinstance(ran, Mapping) and ran.get("queue"):
        key = queue_key(jobs, str(ran["queue"]))
        if key is not None:
            size_class = None
            if sized:
                candidates = (ran.get("size_class"), jobs.queues[key].size_class, done.get("size_class"), target_class)
                size_class = next((c for c in candidates if c in (spec.size_classes or {})), target_class)
            return key, size_class, "ran_on", ""
        note = f"ran_on.queue {ran['queue']!r} is no queue of jobs.yaml"
    else:
        note = "the done record has no ran_on"
    size_class = (done.get("size_class") or target_class) if sized else None
    return spec.queue_for(size_class), size_class, "jobs.yaml", f"{note}: priced on the queue jobs.yaml names"


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


def overhead_seconds(done: Mapping[str, Any], metrics: Mapping[str, Any] | None = None) -> float:
    """The part of a job's runtime that is not its step's work: waiting for inputs
    (``timings.await_inputs``) and loading the model (predict's metrics timings)."""
    def num(value: Any) -> float:
        return float(value) if isinstance(value, int | float) and value > 0 else 0.0

    seconds = num((done.get("timings") or {}).get("await_inputs"))
    timings = (metrics or {}).get("timings") or {}
    if isinstance(timings, Mapping):
        seconds += sum(num(v) for k, v in timings.items() if k in ("load", "import_jax") or k.endswith("_load"))
    return min(seconds, runtime_seconds(done))


def step_cost(done: Mapping[str, Any], rate: Rate, *, overhead_s: float = 0.0) -> dict[str, Any]:
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
        "instance_source": rate.instance_source,
        "overhead_seconds": round(overhead_s, 3),
        "overhead_usd": round(rate.hourly_usd * overhead_s / 3600, 6),
    }
    if rate.note:
        out["note"] = rate.note
    return out


def earlier_attempts_cost(jobs: JobsFile, step: str, size_class: str | None, table: PriceTable, queue: str | None,
                          attempts: Sequence[Mapping[str, Any]], *, purchase: str | None) -> dict[str, Any]:
    """What the attempts before the finished one cost: each for its seconds on its own
    instance type (else the queue's cheapest fit), on the queue's purchase option."""
    usd, seconds, cheapest_fit, unpriced = 0.0, 0.0, 0, 0
    for attempt in attempts:
        sec = attempt.get("seconds")
        if not isinstance(sec, int | float) or sec < 0:
            continue
        try:
            rate = rate_for(jobs, step, size_class, table, queue=queue, instance_type=attempt.get("instance_type"),
                            purchase=purchase)
        except LookupError:
            unpriced += 1
            continue
        usd += rate.hourly_usd * sec / 3600
        seconds += sec
        cheapest_fit += rate.instance_source == "cheapest_fit"
    out: dict[str, Any] = {"attempts": len(attempts), "seconds": round(seconds, 3), "usd": round(usd, 6)}
    if cheapest_fit:
        out["priced_by_cheapest_fit"] = cheapest_fit
    if unpriced:
        out["unpriced"] = unpriced
    return out


def target_cost(jobs: JobsFile, target: TargetResult, dones: Mapping[str, Mapping[str, Any] | None],
                table: PriceTable) -> dict[str, Any]:
    """Cost of one target: ``dones`` maps step name (a jobs.yaml job) to its done record
    (with ``ran_on`` when it has one), or None where no job ran (e.g. an MSA cache hit)."""
    steps: dict[str, Any] = {}
    total = 0.0
    for step, done in dones.items():
        if done is None or done.get("msa_cache") == "hit" or (done.get("cache") or {}).get("hit"):
            steps[step] = {"usd": 0.0, "skipped": True}
            continue
        ran = done.get("ran_on") if isinstance(done.get("ran_on"), Mapping) else {}
        try:
            queue, size_class, priced_by, flag = where_it_ran(jobs, step, done, target.size_class)
            rate = rate_for(jobs, step, size_class, table, queue=queue, instance_type=ran.get("instance_type"),
                            purchase=ran.get("purchase"))
        except LookupError as exc:  # no price for what it ran on: this job is listed unpriced, the rest count
            steps[step] = {"usd": None, "unpriced": " ".join(str(exc).split())[:300]}
            continue
        metrics = target.metrics if step == "predict" else None
        steps[step] = step_cost(done, rate, overhead_s=overhead_seconds(done, metrics))
        if isinstance(ran.get("earlier_attempts"), list) and ran["earlier_attempts"]:
            lost = earlier_attempts_cost(jobs, step, size_class, table, queue, ran["earlier_attempts"],
                                         purchase=rate.purchase)
            steps[step]["earlier_attempts"] = lost
            steps[step]["usd"] = round(steps[step]["usd"] + lost["usd"], 6)
            steps[step]["overhead_usd"] = round(steps[step]["overhead_usd"] + lost["usd"], 6)
        steps[step]["priced_by"] = priced_by
        if size_class is not None:
            steps[step]["size_class"] = size_class
        for key in ("attempt", "availability_zone"):
            if ran.get(key) is not None:
                steps[step][key] = ran[key]
        if flag:
            steps[step]["note"] = "; ".join(filter(None, [steps[step].get("note"), flag]))
        total += steps[step]["usd"]
    out: dict[str, Any] = {"usd": round(total, 6), "steps": steps}
    unpriced = [step for step, c in steps.items() if c["usd"] is None]
    if unpriced:
        out["partial"] = True  # usd sums the priced jobs only
        out["unpriced_steps"] = unpriced
    return out


def _fold_jobs() -> JobsFile:
    return load_workflow("fold").jobs


def annotate_costs(targets: Sequence[TargetResult], *, jobs: JobsFile | None = None,
                   table: PriceTable | None = None, region: str | None = None) -> dict[str, Any]:
    """Set ``cost`` on each manifest target and return the run-level ``cost`` section.

    Each target is the manifest's :class:`TargetResult` (size_class, provenance[step] with
    timings and ran_on; a step that did not run is None). `table`: the price table, else the
    newest for `region` (:func:`deployment_region` by default). Never raises: a cost that
    cannot be estimated (no table for the region, a size class jobs.yaml lacks) is
    reported as ``unavailable``, because a run's results matter more than its price.
    """
    region = region or deployment_region()
    try:
        jobs = jobs if jobs is not None else _fold_jobs()
        table = table or load_price_table(region=region)
        total, parts, spec_priced = 0.0, dict.fromkeys((*PARTS, "overhead"), 0.0), 0
        priced, cheapest_fit, unpriced = 0, 0, []
        keep = {"timings", "started_at", "finished_at", "size_class", "ran_on", "msa_cache"}
        for target in targets:
            dones = {step: None if p is None else p.model_dump(include=keep, exclude_none=True)
                     for step, p in target.provenance.items()}
            target.cost = target_cost(jobs, target, dones, table)
            total += target.cost["usd"]
            for step, c in target.cost["steps"].items():
                if c["usd"] is None:
                    unpriced.append({"target": target.id, "step": step, "reason": c["unpriced"]})
                    continue
                if not c.get("skipped"):
                    priced += 1
                    cheapest_fit += c.get("instance_source") == "cheapest_fit"
                overhead = c.get("overhead_usd", 0.0) if step in PARTS else c["usd"]  # other steps: all overhead
                if step in PARTS:
                    parts[step] += c["usd"] - overhead
                parts["overhead"] += overhead
                spec_priced += c.get("priced_by") == "jobs.yaml"
        section = {"estimated_total_usd": round(total, 6), "by_part_usd": {k: round(v, 6) for k, v in parts.items()},
                   "currency": table.currency, "region": table.region, "price_table": table.path.name,
                   "price_table_date": table.date, "note": NOTE, "complete": not unpriced, "priced_jobs": priced}
        if unpriced:  # the total sums the priced jobs; these are listed, never priced with a guess
            section["unpriced_jobs"] = len(unpriced)
            section["unpriced"] = unpriced[:UNPRICED_LISTED]
            section["partial_note"] = (f"partial total: {len(unpriced)} of {priced + len(unpriced)} jobs could not "
                                       f"be priced ({unpriced[0]['reason']}) and are not in it")
        if cheapest_fit:  # jobs whose instance type was not recorded (no instance metadata): a lower bound
            section["priced_by_cheapest_fit"] = cheapest_fit
        if table.region != region:
            section["region_note"] = f"priced with a {table.region} table given explicitly; the run is in {region}"
        if spec_priced:
            section["priced_from_jobs_yaml"] = spec_priced  # jobs without ran_on (older steps)
        return section
    except Exception as exc:  # noqa: BLE001 - see docstring
        return {"estimated_total_usd": None, "region": region, "unavailable": f"{type(exc).__name__}: {exc}",
                "note": NOTE}


def run_cost_from_scratch(run_dir: Path | str, targets: Sequence[Mapping[str, Any]], steps: Sequence[str],
                          *, jobs: JobsFile | None = None, table: PriceTable | None = None,
                          region: str | None = None) -> dict[str, Any]:
    """Cost of a run straight from ``<scratch>/<run_id>/<step>/<target>/<step>.done.json``
    files (for runs still in scratch, and for tests)."""
    run_dir = Path(run_dir)
    results = []
    for t in targets:
        prov: dict[str, Any] = {}
        for step in steps:
            f = run_dir / step / t["id"] / f"{step}.done.json"
            done = json.loads(f.read_text()) if f.is_file() else None
            if done is not None and (done.get("cache") or {}).get("hit"):
                done["msa_cache"] = "hit"
            prov[step] = done
        metrics_file = run_dir / "predict" / t["id"] / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        results.append(TargetResult(id=t["id"], size_class=t.get("size_class"), provenance=prov, metrics=metrics))
    section = annotate_costs(results, jobs=jobs, table=table, region=region)
    return {**section, "targets": {r.id: r.cost for r in results if r.cost is not None}}


def cost_message(section: Mapping[str, Any] | None) -> str | None:
    """The run's cost in one line for the CLI (None without an estimate):
    ``estimated cost 12.34 USD`` plus, when some jobs could not be priced, that the total is
    partial and why."""
    if not section:
        return None
    total = section.get("estimated_total_usd")
    if total is None:
        return f"estimated cost unavailable ({section.get('unavailable', 'no estimate')})"
    text = f"estimated cost {total:,.2f} {section.get('currency', 'USD')}"
    if section.get("unpriced_jobs"):
        text += f" ({section.get('partial_note', 'partial total')})"
    return text
