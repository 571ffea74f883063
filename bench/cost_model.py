"""Cost per 1,000 AlphaFold2 folds: three deployments, one workload, one set of timings and prices.

    .venv/bin/python bench/cost_model.py [--region us-east-1 | --price-table PATH] [--cache-hit 0.3] [--batch 8]

(a) everything on one GPU instance: MSA (jackhmmer) and inference run one after the other
    on the same on-demand GPU instance, sized for the largest target; the GPU idles
    through the search.
(b) CPU/GPU split with jackhmmer and one GPU type: MSA on an on-demand CPU instance,
    inference on one on-demand GPU type for every target, one GPU job per target.
(c) foldstack's configuration: MMseqs2 MSAs on Spot CPU (statemachines/fold/jobs.yaml
    `msa` job, priced by foldstack.cost), an MSA cache hit rate, GPU size classes (each
    target on its class's cheapest fitting instance, priced by foldstack.cost from the
    same jobs.yaml), and batched prediction (model load/compile once per batch).

Published timings used (cited in ASSUMPTIONS below):
  * AlphaFold2 inference, one model, no ensembling, V100: 0.6 min at 256 residues,
    1.1 min at 384, 2.1 h at 2,500 (Jumper et al. 2021, Nature 596:583, Methods
    "Inference regimes"). Interpolated as a piecewise power law in length.
  * ColabFold's MMseqs2 search is 40-60x faster than AlphaFold2's jackhmmer/HHblits
    search (Mirdita et al. 2022, Nature Methods 19:679, abstract); 50x is used.
  * jackhmmer/HHblits MSA for one sequence: 30-90 min on a modern server (ranomics.com,
    "ColabFold vs AlphaFold"); 60 min at 300 residues on 8 vCPUs, linear in length.
Everything else is an assumption, printed with the result. It is a model, not a benchmark:
it ranks the deployments and shows where the money goes; it does not predict a bill.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from foldstack.cost import load_price_table, rate_for  # noqa: E402
from foldstack.workflows.specs import load_workflow  # noqa: E402

# Workload: 1,000 monomers; (representative length, share). A proteome-like mix with a
# long tail; lengths above 1,200 are rare but dominate GPU time.
WORKLOAD = [(150, 0.40), (300, 0.35), (600, 0.17), (1000, 0.06), (1800, 0.02)]
N_FOLDS = 1000

# Jumper et al. 2021: single model, no ensembling, V100 (minutes).
AF2_V100_MIN = [(256, 0.6), (384, 1.1), (2500, 126.0)]
MODELS_PER_TARGET = 5            # AlphaFold2 monomer preset runs 5 models (assumption: all scenarios)
JACKHMMER_MIN_AT_300 = 60.0      # minutes on 8 vCPUs (ranomics: 30-90 min); linear in length
MSA_VCPU, MSA_MEM_MIB = 8, 30000
MMSEQS_SPEEDUP = 50.0            # ColabFold: 40-60x
GPU_JOB_OVERHEAD_S = 120.0       # model load + XLA compile per GPU job (ESTIMATE)
# Inference speed relative to a V100 (ESTIMATES: no AF2 benchmark per GPU was found; rough
# ratios of FP32/TF32 throughput and memory bandwidth).
GPU_SPEED = {"A10G": 1.0, "L4": 0.9, "L40S": 1.8, "A100-40GB": 2.0, "A100-80GB": 2.0, "H100-80GB": 3.0}
SINGLE_INSTANCE = "g6e.2xlarge"  # (a) and (b): 1x L40S 48 GB fits the 1,800-residue tail
SPLIT_CPU = "m6i.2xlarge"        # (a)/(b) CPU side: on-demand, 8 vCPU / 32 GiB


def af2_v100_minutes(length: float) -> float:
    """One model on a V100, interpolated log-log between Jumper et al.'s three points."""
    pts = AF2_V100_MIN
    i = next((j for j in range(1, len(pts) - 1) if length <= pts[j][0]), len(pts) - 1)
    (l0, t0), (l1, t1) = pts[i - 1], pts[i]
    k = math.log(t1 / t0) / math.log(l1 / l0)
    return t0 * (length / l0) ** k


def jackhmmer_minutes(length: float) -> float:
    return JACKHMMER_MIN_AT_300 * length / 300


def predict_hours(length: float, gpu: str) -> float:
    return af2_v100_minutes(length) * MODELS_PER_TARGET / GPU_SPEED[gpu] / 60


def size_class_of(length: int, jobs) -> str:
    for name, sc in jobs.size_classes.items():
        if length <= sc.max_residues:
            return name
    raise ValueError(f"{length} residues exceeds every size class")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--price-table", default=None, help="a price table file (default: the newest for --region)")
    ap.add_argument("--region", default="us-east-1", help="price with the newest table of this region")
    ap.add_argument("--cache-hit", type=float, default=0.30, help="MSA cache hit rate in (c)")
    ap.add_argument("--batch", type=int, default=8, help="targets per GPU job in (c)")
    args = ap.parse_args(argv)

    table = load_price_table(Path(args.price_table).resolve() if args.price_table else None, region=args.region)
    jobs = load_workflow("fold", REPO / "statemachines").jobs
    inst = table.instances
    import yaml

    gpu_model = {n: s.get("gpu") for n, s in yaml.safe_load(table.path.read_text())["instances"].items()}
    single, cpu = inst[SINGLE_INSTANCE], inst[SPLIT_CPU]
    unpriced = [name for name, i in ((SINGLE_INSTANCE, single), (SPLIT_CPU, cpu)) if i.on_demand is None]
    if unpriced:  # e.g. a type not offered in the region (its table says so)
        raise SystemExit(f"cost_model: {', '.join(unpriced)} has no on-demand price in {table.path.name}: "
                         "the comparison needs it (see the table's note)")
    cpu_share = max(MSA_VCPU / cpu.vcpu, MSA_MEM_MIB / 1024 / cpu.memory_gib)

    rows = []
    totals = {"a": 0.0, "b": 0.0, "c": 0.0}
    parts = {k: {"msa": 0.0, "gpu": 0.0, "overhead": 0.0} for k in totals}
    msa_rate_c = rate_for(jobs, "msa", None, table)
    for length, share in WORKLOAD:
        n = N_FOLDS * share
        jh = jackhmmer_minutes(length) / 60
        # (a) one GPU instance, everything in sequence
        a_msa = jh * single.on_demand
        a_gpu = predict_hours(length, gpu_model[SINGLE_INSTANCE]) * single.on_demand
        a_ovh = GPU_JOB_OVERHEAD_S / 3600 * single.on_demand
        # (b) split: on-demand CPU for jackhmmer, one GPU type, one job per target
        b_msa = jh * cpu.on_demand * cpu_share
        b_gpu, b_ovh = a_gpu, a_ovh
        # (c) foldstack
        sc = size_class_of(length, jobs)
        gpu_rate = rate_for(jobs, "predict", sc, table)
        c_msa = (1 - args.cache_hit) * jh / MMSEQS_SPEEDUP * msa_rate_c.hourly_usd
        c_gpu = predict_hours(length, gpu_model[gpu_rate.instance_type]) * gpu_rate.hourly_usd
        c_ovh = GPU_JOB_OVERHEAD_S / 3600 / args.batch * gpu_rate.hourly_usd
        for key, (m, g, o) in {"a": (a_msa, a_gpu, a_ovh), "b": (b_msa, b_gpu, b_ovh),
                               "c": (c_msa, c_gpu, c_ovh)}.items():
            parts[key]["msa"] += n * m
            parts[key]["gpu"] += n * g
            parts[key]["overhead"] += n * o
            totals[key] += n * (m + g + o)
        rows.append((length, share, sc, gpu_rate.instance_type, gpu_rate.share,
                     n * (a_msa + a_gpu + a_ovh), n * (b_msa + b_gpu + b_ovh), n * (c_msa + c_gpu + c_ovh)))

    w = print
    w(f"foldstack cost model: {N_FOLDS:,} AlphaFold2 monomer folds, prices {table.path.name} "
      f"({table.region}, {table.currency}, table date {table.date})\n")
    w("Workload (length mix) and cost per bin, USD:")
    w(f"  {'length':>6} {'share':>6} {'class':>7} {'(c) GPU instance':>18} {'share':>6} "
      f"{'(a) one GPU':>12} {'(b) split':>10} {'(c) foldstack':>14}")
    for length, share, sc, it, sh, a, b, c in rows:
        w(f"  {length:>6} {share:>6.0%} {sc:>7} {it:>18} {sh:>6.3f} {a:>12.2f} {b:>10.2f} {c:>14.2f}")
    w("")
    names = {"a": "(a) everything on one GPU instance", "b": "(b) CPU/GPU split, jackhmmer, one GPU type",
             "c": "(c) foldstack (MMseqs2, cache, Spot CPU, size classes, batching)"}
    w(f"{'Cost per 1,000 folds, USD:':<66} {'total':>8} {'MSA':>8} {'GPU run':>9} {'overhead':>9}")
    for k, label in names.items():
        p = parts[k]
        w(f"  {label:<64} {totals[k]:>8.2f} {p['msa']:>8.2f} {p['gpu']:>9.2f} {p['overhead']:>9.2f}")
    w("")
    w("Ratios:")
    w(f"  (a) / (c) = {totals['a'] / totals['c']:.2f}x")
    w(f"  (b) / (c) = {totals['b'] / totals['c']:.2f}x")
    w(f"  (a) / (b) = {totals['a'] / totals['b']:.2f}x")
    w("")
    w("Assumptions (every figure the result depends on):")
    assumptions = [
        f"workload: {N_FOLDS} monomers, lengths {', '.join(f'{n} ({s:.0%})' for n, s in WORKLOAD)}; "
        "each bin priced at its representative length (assumption)",
        "AF2 inference, 1 model, no ensembling, V100: 0.6 min @256, 1.1 min @384, 126 min @2500 "
        "(Jumper et al. 2021, Nature 596:583, Methods); piecewise power law between points, "
        "256-384 exponent below 256",
        f"{MODELS_PER_TARGET} models per target in every scenario (AF2 monomer preset)",
        f"GPU speed vs V100 (ESTIMATES, no per-GPU AF2 benchmark found): {GPU_SPEED}",
        f"GPU job overhead (weights load + XLA compile): {GPU_JOB_OVERHEAD_S:.0f} s per job (ESTIMATE); "
        f"(a)/(b) pay it per target, (c) once per batch of {args.batch}",
        f"jackhmmer+HHblits MSA: {JACKHMMER_MIN_AT_300:.0f} min per 300 residues on {MSA_VCPU} vCPU, linear "
        "in length (ranomics.com: 30-90 min per sequence on a server; ESTIMATE within that range)",
        f"MMseqs2 MSA: jackhmmer time / {MMSEQS_SPEEDUP:.0f} (ColabFold, Mirdita et al. 2022: 40-60x faster "
        f"search); runs in the fold jobs.yaml msa job ({MSA_VCPU} vCPU / {MSA_MEM_MIB} MiB) as-is; a full "
        "ColabFold DB search wants far more RAM/NVMe in practice (not modelled)",
        f"MSA cache hit rate in (c): {args.cache_hit:.0%} (assumption: resubmissions and shared chains); "
        "a hit costs nothing here (the S3/FSx read is not priced)",
        f"(a): {SINGLE_INSTANCE} on-demand ${single.on_demand}/h runs MSA then inference; GPU idle during MSA",
        f"(b): MSA on {SPLIT_CPU} on-demand ${cpu.on_demand}/h x share {cpu_share:.2f}; inference on "
        f"{SINGLE_INSTANCE} on-demand for every target",
        f"(c): MSA priced by foldstack.cost for the msa job: {msa_rate_c.instance_type} {msa_rate_c.purchase} "
        f"${msa_rate_c.hourly_usd:.4f}/h (share {msa_rate_c.share}); predict priced by foldstack.cost per "
        "size class (cheapest listed instance type with the class's GPU memory, on-demand, GPU share)",
        "size classes from statemachines/fold/jobs.yaml (max_residues); no OOM escalations",
        f"prices: {table.path.relative_to(REPO)} (sources and estimate flags in the file); "
        "instance boot/idle, queue wait, storage, FSx, transfer, Lambda, Step Functions not included",
        "Spot interruptions: not modelled (a reclaimed MSA job reruns; at a few % of jobs it adds a few % "
        "to the MSA line only)",
    ]
    for a in assumptions:
        w(f"  - {a}")
    flagged = sorted(n for n, i in inst.items() if i.estimate)
    w(f"  - price figures marked estimate in the table: {', '.join(flagged)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
