"""AlphaFold2 compile count and time for 16 mixed-length targets, without and with length
buckets (the demo model: tiny random weights, real AlphaFold code and shapes).

Run by hand (minutes: every compile is real; the JAX persistent cache is pointed at a fresh
directory per mode so nothing is reused from earlier runs)::

    .venv/bin/python bench/bench_af2_buckets.py [--targets 16] [--min 40] [--max 260] [--seed 0]

Each mode runs in its own process (a cold in-process jit cache) as one batch (the model
loaded once, as a Predict job does: ``foldstack.steps.predict._SharedModels``):
``FOLDSTACK_AF2_BUCKETS=off`` (one compile per distinct length) and the default buckets.
Prints per mode: compiles (new executables of the model's jitted function), backend compile
seconds (JAX's ``/jax/core/compile/backend_compile_duration`` events), total predict time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _child(args: argparse.Namespace) -> None:
    """One mode, in this process: print a JSON line of results."""
    import jax

    compile_s = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, secs, **kw: compile_s.append(secs) if event == "/jax/core/compile/backend_compile_duration"
        else None)
    from foldstack.demo_data import build_demo_data
    from foldstack.steps.alphafold2 import dummy_features, predict_alphafold2
    from foldstack.steps.features import save_features
    from foldstack.steps.predict import _SharedModels

    home = Path(args.home)
    build_demo_data(home)
    lengths = json.loads(args.lengths)
    work = Path(tempfile.mkdtemp(prefix="af2-buckets-"))
    compiles, buckets, t0 = 0, set(), time.perf_counter()
    per_target = []
    with _SharedModels():
        for i, n in enumerate(lengths):
            path = work / f"t{i}.npz"
            save_features(path, dummy_features(False, n))
            t = time.perf_counter()
            (pred,) = predict_alphafold2(path, home / "weights", "monomer", num_models=1, log=lambda m: None)
            compiles += pred.extra["compiled"]
            buckets.add(pred.extra["bucket"])
            per_target.append({"length": n, "bucket": pred.extra["bucket"], "compiled": pred.extra["compiled"],
                               "seconds": round(time.perf_counter() - t, 2)})
    print(json.dumps({"compiles": compiles, "distinct_shapes": len(buckets),
                      "backend_compile_s": round(sum(compile_s), 1), "total_s": round(time.perf_counter() - t0, 1),
                      "per_target": per_target}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", type=int, default=16)
    ap.add_argument("--min", type=int, default=40)
    ap.add_argument("--max", type=int, default=260)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--home", default=str(Path(tempfile.gettempdir()) / "foldstack-bench-home"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--lengths", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args)
        return
    rng = random.Random(args.seed)
    lengths = sorted(rng.randint(args.min, args.max) for _ in range(args.targets))  # Plan Batches sorts by length
    print(f"{args.targets} targets, lengths {lengths}", flush=True)
    results = {}
    for mode, buckets in (("no buckets", "off"), ("buckets", "")):
        env = {**os.environ, "FOLDSTACK_AF2_BUCKETS": buckets,
               "FOLDSTACK_JAX_CACHE_DIR": tempfile.mkdtemp(prefix="jax-cold-")}
        proc = subprocess.run([sys.executable, __file__, "--child", "--home", args.home,
                               "--lengths", json.dumps(lengths)], env=env, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"{mode} failed:\n{proc.stderr[-3000:]}")
        results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = results[mode]
        print(f"{mode:>10}: {r['compiles']:2d} compiles ({r['distinct_shapes']} distinct shapes), "
              f"backend compile {r['backend_compile_s']:.1f} s, total {r['total_s']:.1f} s", flush=True)
    before, after = results["no buckets"], results["buckets"]
    print(f"compiles {before['compiles']} -> {after['compiles']}; total time {before['total_s']:.0f} s -> "
          f"{after['total_s']:.0f} s ({before['total_s'] / max(after['total_s'], 1e-9):.1f}x)")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
