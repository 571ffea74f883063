"""Benchmark: validate a 1 MB FASTA (target: well under a second).

    .venv/bin/python bench/bench_validate.py [--mb 1] [--repeat 5]

Times `parse_fasta` (the parser and every check) and the whole `validate_run` (request
model, prefix checks, parse, size classes, run id) on a realistic file: 60-column
wrapped records of 2,400 residues with descriptions, about 1 MB in all. Prints the best
and median of N runs, in seconds and MB/s. Run by hand; never part of `make test`.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from foldstack.core.fasta import FastaLimits, parse_fasta
from foldstack.tasks.validate import validate_run
from foldstack.workflows.specs import load_workflow

REPO = Path(__file__).resolve().parents[1]
RESIDUES = "ACDEFGHIKLMNPQRSTVWY"


def make_fasta(target_bytes: int) -> bytes:
    seq = (RESIDUES * 200)[:2400]
    wrapped = "\n".join(seq[i:i + 60] for i in range(0, len(seq), 60))
    out, i = [], 0
    size = 0
    while size < target_bytes:
        rec = f">t{i} synthetic target {i} OS=Homo sapiens\n{wrapped}\n"
        out.append(rec)
        size += len(rec)
        i += 1
    return "".join(out).encode()


def timed(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    data = make_fasta(int(args.mb * 1_000_000))
    mb = len(data) / 1e6
    records = parse_fasta(data)
    classes = load_workflow("fold", REPO / "statemachines").jobs.size_classes
    request = {"inputs": ["s3://lake/inputs/bench.fasta"], "output_uri": "s3://lake/results", "engine": "esmfold"}

    def whole() -> None:
        validate_run(request, allowed_input_prefixes=("s3://lake/inputs",), allowed_output_prefixes=(
            "s3://lake/results",), size_classes=classes, limits=FastaLimits(), reader=lambda _u, _m: data)

    print(f"input: {mb:.2f} MB, {len(records)} records of {records[0].length} residues")
    for label, fn in (("parse_fasta", lambda: parse_fasta(data)), ("validate_run", whole)):
        times = timed(fn, args.repeat)
        best, median = min(times), statistics.median(times)
        print(f"{label:13s} best {best:.3f} s ({mb / best:.1f} MB/s)  median {median:.3f} s "
              f"({mb / median:.1f} MB/s)  over {args.repeat} runs")


if __name__ == "__main__":
    main()
