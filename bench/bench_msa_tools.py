"""jackhmmer (pyhmmer) vs MMseqs2 on the same real sequences and the same database, in one run.

    .venv/bin/python bench/bench_msa_tools.py [--n 40] [--cpus 2] [--home DIR] [--json out.json]

Queries: real UniProtKB/ENA sequences that ship inside the pyhmmer wheel — the 12 LuxC
and 10 PKS I entries plus every 100th protein of the bundled 2,100-protein proteome
(up to --n). Database: the demo DB (``foldstack.demo_data.build_demo_db``; those same
2,122 sequences), built under --home (a temp dir by default).

* jackhmmer: pyhmmer with AlphaFold's settings (``-N 1 --F1 0.0005 --F2 0.00005
  --F3 0.0000005 --incE 0.0001 -E 0.0001``), one query at a time, as the msa step runs it.
* MMseqs2: the msa step's settings (``search -a -s 7.5 --num-iterations 1 -e 1e-4
  --max-seqs 10000 --db-load-mode 2``), all queries in one ``search`` (how MMseqs2 is used at scale) and,
  separately, one query per ``search`` (how one msa job runs it). The cached target
  index (``createindex``, built once per DB version) is timed separately.

Prints the wall-clock speed ratio (jackhmmer / MMseqs2) and MMseqs2's share of
jackhmmer's hits (|hits found by both| / |jackhmmer hits|, summed over queries; hits are
distinct target sequences with E <= 1e-4).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess  # nosec B404
import sys
import tempfile
import time
from pathlib import Path


def queries(n: int) -> list[tuple[str, str]]:
    from foldstack.demo_data import _demo_records

    records = _demo_records()
    special = [r for r in records if not r[0].startswith("938293.")]  # LuxC + PKSI (UniProtKB)
    proteome = [r for r in records if r[0].startswith("938293.")][::100]
    chosen = (special + proteome)[:n]
    return [(rid, seq) for rid, _, seq in chosen]


def norm(name: str) -> str:
    """One id per sequence on both sides: MMseqs2 reduces 'sp|P08639|LUXC_VIBHA' to 'P08639'."""
    parts = name.split("|")
    return parts[1] if len(parts) >= 3 else name


def run_jackhmmer(qs, db_fasta: Path, cpus: int) -> tuple[float, dict[str, set[str]]]:
    import pyhmmer
    from pyhmmer.easel import Alphabet, SequenceFile, TextSequence

    from foldstack.steps.msa import JACKHMMER_PARAMS

    alphabet = Alphabet.amino()
    with SequenceFile(str(db_fasta), digital=True, alphabet=alphabet) as f:
        targets = f.read_block()  # loaded once, outside the timing (the step streams the file)
    hits: dict[str, set[str]] = {}
    t = time.perf_counter()
    for rid, seq in qs:
        query = TextSequence(name=rid.encode(), sequence=seq).digitize(alphabet)
        result = next(pyhmmer.hmmer.jackhmmer(query, targets, cpus=cpus, **JACKHMMER_PARAMS))
        hits[norm(rid)] = {norm(h.name.decode() if isinstance(h.name, bytes) else h.name)
                           for h in result.hits if h.included}
    return time.perf_counter() - t, hits


def _mm(binary: str, *args) -> None:
    subprocess.run([binary, *map(str, args), "-v", "1"], check=True, capture_output=True)  # nosec B603


def run_mmseqs(qs, target: Path, binary: str, cpus: int, work: Path, params: dict) -> tuple[float, dict[str, set[str]]]:
    work.mkdir(parents=True, exist_ok=True)
    fasta = work / "q.fasta"
    fasta.write_text("".join(f">{rid}\n{seq}\n" for rid, seq in qs))
    t = time.perf_counter()
    _mm(binary, "createdb", fasta, work / "qdb")
    _mm(binary, "search", work / "qdb", target, work / "res", work / "tmp", "-a", "-s", params["sensitivity"],
        "--num-iterations", params["num_iterations"], "-e", params["evalue"], "--max-seqs", params["max_seqs"],
        "--db-load-mode", params["db_load_mode"], "--threads", cpus)
    _mm(binary, "convertalis", work / "qdb", target, work / "res", work / "res.m8", "--threads", cpus)
    elapsed = time.perf_counter() - t
    hits: dict[str, set[str]] = {norm(rid): set() for rid, _ in qs}
    for line in (work / "res.m8").read_text().splitlines():
        q, s = line.split("\t")[:2]
        hits[norm(q)].add(norm(s))
    return elapsed, hits


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--cpus", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--home", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from foldstack.demo_data import build_demo_db
    from foldstack.steps.databases import open_database
    from foldstack.steps.mmseqs import MMSEQS_PARAMS, build_target_index, index_dir, mmseqs_binary, mmseqs_version

    home = args.home or Path(tempfile.mkdtemp(prefix="bench-msa-"))
    version_dir = build_demo_db(home / "db")
    db = open_database(home / "db", version_dir.parent.name)
    binary = mmseqs_binary()
    qs = queries(args.n)
    lengths = [len(s) for _, s in qs]
    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs "
          f"(using {args.cpus}), Python {platform.python_version()}, {platform.platform()}")
    print(f"database: {db.name}/{db.version} ({sum(1 for ln in db.sequences.open() if ln.startswith('>'))} seqs)")
    mean = sum(lengths) / len(qs)
    print(f"queries: {len(qs)} real sequences, length {min(lengths)}-{max(lengths)} (mean {mean:.0f})")

    import pyhmmer

    had_index = (index_dir(db, binary) / "BUILD.json").is_file()
    t = time.perf_counter()
    target = build_target_index(db, binary, threads=args.cpus) / "target"
    index_s = time.perf_counter() - t
    print(f"mmseqs {mmseqs_version(binary)} target index: "
          + ("cached" if had_index else f"built in {index_s:.1f}s (once per DB version)"))

    jh_s, jh = run_jackhmmer(qs, db.sequences, args.cpus)
    print(f"jackhmmer (pyhmmer {pyhmmer.__version__}), one query at a time: {jh_s:.2f}s")
    with tempfile.TemporaryDirectory() as tmp:
        mm_s, mm = run_mmseqs(qs, target, binary, args.cpus, Path(tmp) / "batch", MMSEQS_PARAMS)
        print(f"mmseqs2 search, all queries in one search:   {mm_s:.2f}s")
        one_s = 0.0
        for i, q in enumerate(qs):
            s, _ = run_mmseqs([q], target, binary, args.cpus, Path(tmp) / f"one{i}", MMSEQS_PARAMS)
            one_s += s
        print(f"mmseqs2 search, one query per search:        {one_s:.2f}s")

    jh_total = sum(len(v) for v in jh.values())
    both = sum(len(jh[q] & mm[q]) for q in jh)
    mm_total = sum(len(v) for v in mm.values())
    missed = {q: len(jh[q] - mm[q]) for q in jh if jh[q] - mm[q]}
    share = both / jh_total if jh_total else float("nan")
    print()
    print(f"speed ratio jackhmmer/mmseqs2 (batched):   {jh_s / mm_s:.1f}x")
    print(f"speed ratio jackhmmer/mmseqs2 (per query): {jh_s / one_s:.1f}x")
    print(f"hits: jackhmmer {jh_total}, mmseqs2 {mm_total}, both {both}")
    print(f"MMseqs2's share of jackhmmer's hits: {share:.1%} "
          f"({len(missed)} of {len(qs)} queries lose hits; the rest match or exceed)")
    if args.json:
        args.json.write_text(json.dumps({
            "queries": len(qs), "cpus": args.cpus, "jackhmmer_s": jh_s, "mmseqs_batched_s": mm_s,
            "mmseqs_per_query_s": one_s, "mmseqs_index_s": None if had_index else index_s,
            "jackhmmer_hits": jh_total, "mmseqs_hits": mm_total, "both": both, "share": share,
            "missed_per_query": missed, "mmseqs_version": mmseqs_version(binary),
            "pyhmmer_version": pyhmmer.__version__}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
