"""The CryoEM chain on the larger demo dataset, with its accuracy against the truth.

Run by hand (tens of CPU-minutes with RELION on 2 threads)::

    .venv/bin/python bench/bench_cryoem.py [--out DIR] [--micrographs 20] [--particles 100]
        [--box 64] [--pixel-size 2.5] [--frames 8] [--seed 0] [--reference | --denovo]

Simulates the dataset (``foldstack cryoem demo-data``), runs ``run_local`` on it (with
``--reference``: from the dataset's 7DDO model low-pass filtered, plus the bias guard;
``--denovo``: a de novo initial model, whose map is in its own frame, so the FSC against
the true map is not computed) and prints one JSON object: drift error (px), defocus error
(%), picking precision/recall, gold-standard resolution, FSC of the refined map against
the true map (reference mode), wall and CPU seconds per stage.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from foldstack.cryoem import truth as T
from foldstack.cryoem.pipeline import run_local
from foldstack.cryoem.simulate import SimParams, simulate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--micrographs", type=int, default=20)
    ap.add_argument("--particles", type=int, default=100)
    ap.add_argument("--box", type=int, default=64)
    ap.add_argument("--pixel-size", type=float, default=2.5)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--reference", action="store_true", default=True)
    mode.add_argument("--denovo", action="store_true")
    args = ap.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="bench-cryoem-"))
    params = SimParams(micrographs=args.micrographs, particles_per_micrograph=args.particles, box=args.box,
                       pixel_size=args.pixel_size, frames=args.frames, seed=args.seed)
    t0 = time.perf_counter()
    simulate(root / "data", params)
    sim_s = time.perf_counter() - t0
    reference = None if args.denovo else root / "data" / "reference" / "7DDO.pdb.gz"
    summary = run_local(root / "data", root / "out", reference=reference)
    truth = T.load_truth(root / "data")
    work = root / "out" / "work" / "cryoem"
    drift = T.drift_errors(truth, sorted((work / "motioncorr").glob("batch-*")))
    ctf_qc: dict = {}
    for d in sorted((work / "ctf").glob("batch-*")):
        ctf_qc.update(json.loads((d / "ctf_qc.json").read_text()))
    defocus = T.defocus_errors(truth, ctf_qc)
    picks = T.picking_scores(truth, sorted((work / "pick").glob("batch-*")),
                             radius_px=params.particle_diameter / params.pixel_size / 4)
    report = {
        "dataset": {"micrographs": args.micrographs, "particles": args.micrographs * args.particles,
                    "box": args.box, "pixel_size": args.pixel_size, "frames": args.frames, "seed": args.seed},
        "simulate_seconds": round(sim_s, 1),
        "drift_error_px": {"mean": round(sum(drift.values()) / len(drift), 3), "max": round(max(drift.values()), 3)},
        "defocus_error_pct": {"mean": round(100 * sum(defocus.values()) / len(defocus), 2),
                              "max": round(100 * max(defocus.values()), 2)},
        "picking": {k: round(v, 3) if isinstance(v, float) else v for k, v in picks.items()},
        "results": summary["results"],
        "bias_guard": summary["bias_guard"],
        "wall_seconds": summary["wall_seconds"],
        "cpu_seconds": summary["cpu_seconds"],
        "stages": summary["stages"],
        "out": str(root),
    }
    if reference is not None:
        vs = T.map_vs_truth(root / "data", root / "out" / "results" / "map_refined.mrc", args.pixel_size)
        report["map_vs_truth"] = {k: round(v, 2) for k, v in vs.items() if k != "curve"}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
