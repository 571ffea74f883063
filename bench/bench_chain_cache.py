"""The per-chain MSA cache on a complex screen: searches and msa-step time, with and without it.

    .venv/bin/python bench/bench_chain_cache.py [--chains 6] [--cpus 2] [--msa-tool jackhmmer]
                                                [--home DIR] [--json out.json]

Workload: every pair of --chains real sequences (all-vs-all heterodimers, n(n-1)/2
complexes), the screen users run to find which proteins bind. Sequences: the UniProtKB
LuxC/PKS I entries that ship inside the pyhmmer wheel; database: the demo DB built from
the same wheel (2,122 sequences; see ``foldstack.demo_data``), under --home.

Each complex goes through the real msa step (``run_msa``: search, templates when a
template DB is installed, AlphaFold-Multimer pairing and features), once with no cache
and once with a fresh chain cache, one complex after another (as Msa jobs that start
after each other; jobs running at the same time would both search a new shared chain).
Searches are counted by wrapping the step's search function; times are wall-clock per
complex. The per-target cache of the workflow is not involved: every complex is new.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path


def sequences(n: int) -> list[tuple[str, str]]:
    from foldstack.demo_data import _demo_records

    special = [r for r in _demo_records() if not r[0].startswith("938293.")]  # LuxC + PKS I
    candidates = [(rid, seq) for rid, _, seq in special if 150 <= len(seq) <= 600]
    chosen = candidates[:: max(1, len(candidates) // max(n, 1))][:n]  # spread over both families
    if len(chosen) < n:
        sys.exit(f"only {len(chosen)} sequences of 150-600 aa available; use --chains {len(chosen)} or fewer")
    return chosen


def run_screen(scratch: Path, db: Path, complexes: list[tuple[str, str]], msa_tool: str,
               cache: Path | None) -> dict:
    import foldstack.steps.mmseqs as mmseqs
    import foldstack.steps.msa as msa
    from foldstack.steps.msa import run_msa

    searched: list[str] = []
    real_jackhmmer, real_mmseqs = msa.jackhmmer_stockholm, mmseqs.search_a3m

    def jackhmmer(seq, *a, **k):
        searched.append(seq)
        return real_jackhmmer(seq, *a, **k)

    def mmseqs_search(seq, *a, **k):
        searched.append(seq)
        return real_mmseqs(seq, *a, **k)

    msa.jackhmmer_stockholm, mmseqs.search_a3m = jackhmmer, mmseqs_search
    times = []
    try:
        for target, sequence in complexes:
            path = scratch / "bench" / "input" / "targets" / f"{target}.fasta"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f">{target}\n{sequence}\n")
            start = time.perf_counter()
            run_msa("bench", target, scratch, db, msa_tool, str(cache) if cache else None)
            times.append(time.perf_counter() - start)
    finally:
        msa.jackhmmer_stockholm, mmseqs.search_a3m = real_jackhmmer, real_mmseqs
    return {"complexes": len(complexes), "searches": len(searched), "distinct_chains_searched": len(set(searched)),
            "total_s": round(sum(times), 2), "per_complex_s": [round(t, 2) for t in times]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chains", type=int, default=6)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--msa-tool", default="jackhmmer", choices=["jackhmmer", "mmseqs2"])
    ap.add_argument("--home", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    os.environ["FOLDSTACK_CPUS"] = str(args.cpus)

    from foldstack.demo_data import build_demo_db

    home = args.home or Path(tempfile.mkdtemp(prefix="bench-chain-cache-"))
    build_demo_db(home / "db")
    chains = sequences(args.chains)
    complexes = [(f"{a[0].split('|')[-1]}__{b[0].split('|')[-1]}", f"{a[1]}:{b[1]}")
                 for a, b in itertools.combinations(chains, 2)]
    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs (using {args.cpus}), Python "
          f"{platform.python_version()}; {args.msa_tool}; {len(chains)} chains "
          f"({min(len(s) for _, s in chains)}-{max(len(s) for _, s in chains)} aa) -> "
          f"{len(complexes)} heterodimers")

    results = {}
    for label, cache in (("no cache", None), ("chain cache", home / "cache")):
        results[label] = run_screen(home / f"scratch-{label.replace(' ', '-')}", home / "db", complexes,
                                    args.msa_tool, cache)
        r = results[label]
        print(f"{label:>12}: {r['searches']:3d} searches ({r['distinct_chains_searched']} distinct chains), "
              f"msa step total {r['total_s']:.1f} s, mean {r['total_s'] / r['complexes']:.2f} s per complex")
    off, on = results["no cache"], results["chain cache"]
    print(f"searches: {off['searches']} -> {on['searches']} ({off['searches'] / max(on['searches'], 1):.1f}x fewer); "
          f"msa step time: {off['total_s'] / on['total_s']:.1f}x faster with the chain cache")
    if args.json:
        args.json.write_text(json.dumps({"chains": [c[0] for c in chains], "msa_tool": args.msa_tool,
                                         "cpus": args.cpus, **results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
