"""Peak RSS of the msa step on a ~200 MB and a ≥ 1 GB database: it must not grow with the database.

    .venv/bin/python bench/bench_msa_memory.py [--work DIR] [--sizes-mb 200 1100] [--cpus 2]
                                               [--control] [--json out.json]

Databases: the real UniProtKB sequences of ``bench_msa_scale.py`` (Debian
``metastudent-data``, 191 MB; built there, or here with the same code), grown to each
size with mutated copies (30 % of residues substituted at random, fixed seed: realistic
length distribution and composition, but new sequences), each published as the
``uniref90`` role (manifest with ``sequence_count``); the demo's small_bfd and mgnify
databases complete the ``reduced_dbs`` preset.

For each size the real command a Batch job runs, ``foldstack step msa`` (jackhmmer
streamed from disk, AlphaFold's settings), folds one real query, in its own process under
GNU time; reported: the peak RSS the step's done record holds (``resources``), GNU time's
maximum RSS, CPU seconds and the sequences searched (Z). ``--control`` also measures what
loading the database whole costs (``SequenceFile.read_block()``, what
``pyhmmer.hmmer.jackhmmer`` does) on the smallest size. Never part of ``make test``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess  # nosec B404 - fixed argv
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_msa_scale import DB_NAME, build_database, ensure_packages  # noqa: E402

AA = "ACDEFGHIKLMNPQRSTVWY"
CONTROL = r"""
import sys
from pyhmmer.easel import Alphabet, SequenceFile
with SequenceFile(sys.argv[1], digital=True, alphabet=Alphabet.amino()) as f:
    block = f.read_block()
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
print(len(block), round(hwm))
"""


def grown_database(work: Path, source: Path, size_mb: int, demo_root: Path, mode: str = "mutate") -> Path:
    """<work>/db-<size>[-shuffle]: the source FASTA, then copies of it up to size_mb — each
    residue substituted at random with probability 0.3 (`mutate`: still homologs, so a query
    finds more hits) or every sequence's residues shuffled (`shuffle`: same composition and
    lengths, no homology, so the hits stay those of the source) — as the uniref90 role;
    plus the demo small_bfd and mgnify databases."""
    import shutil

    from foldstack.steps.databases import build_local_version, write_manifest

    suffix = "" if mode == "mutate" else f"-{mode}"
    root = work / f"db-{size_mb}mb{suffix}"
    name = f"uniprot_go_{size_mb}mb"

    def fill(tmp: Path) -> None:
        import numpy as np

        rng = np.random.default_rng(size_mb)
        letters = np.frombuffer(AA.encode(), dtype=np.uint8)
        target, written, copy = size_mb * 1_000_000, 0, 0
        with open(tmp / f"{name}.fasta", "wb") as out:
            while written < target:
                with open(source, "rb") as f:
                    for header in f:
                        seq = next(f).rstrip(b"\n")
                        if copy and mode == "shuffle":
                            arr = np.frombuffer(seq, dtype=np.uint8).copy()
                            rng.shuffle(arr)
                            seq = arr.tobytes()
                        elif copy:  # 30 % of the residues substituted at random
                            arr = np.frombuffer(seq, dtype=np.uint8).copy()
                            hit = rng.random(arr.size) < 0.3
                            arr[hit] = letters[rng.integers(0, letters.size, int(hit.sum()))]
                            seq = arr.tobytes()
                        line = header.rstrip(b"\n") + (f"_{copy}".encode() if copy else b"") + b"\n" + seq + b"\n"
                        out.write(line)
                        written += len(line)
                        if written >= target:
                            break
                copy += 1
        write_manifest(tmp, name=name, version="v1", role="uniref90", sequences=f"{name}.fasta", max_hits=10000,
                       source=f"{source} grown to {size_mb} MB with mutated copies", license="CC BY 4.0")

    build_local_version(root, name, "v1", fill)
    for demo in ("demo_small_bfd", "demo_mgnify"):
        if not (root / demo).exists():
            shutil.copytree(demo_root / demo, root / demo, ignore=shutil.ignore_patterns("mmseqs"))
    return root


def run_step(root: Path, scratch: Path, run_id: str, query: tuple[str, str], cpus: int) -> dict:
    target = "q"
    fasta = scratch / run_id / "input" / "targets" / f"{target}.fasta"
    fasta.parent.mkdir(parents=True, exist_ok=True)
    fasta.write_text(f">{target}\n{query[1]}\n")
    cmd = ["/usr/bin/time", "-f", "FSTIME %U %S %M", sys.executable, "-m", "foldstack", "step", "msa",
           "--run-id", run_id, "--target", target, "--scratch", str(scratch), "--db", str(root), "--cache", ""]
    env = {**os.environ, "FOLDSTACK_CPUS": str(cpus), "FOLDSTACK_DB_VERIFY_MAX_BYTES": "0"}
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)  # nosec B603
    wall = time.perf_counter() - t
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    user, system, kib = proc.stderr.rsplit("FSTIME", 1)[1].split()
    out = scratch / run_id / "msa" / target
    done = json.loads((out / "msa.done.json").read_text())
    info = json.loads((out / "features.json").read_text())
    stream = next(iter(v[0] for k, v in info["streamed"].items() if k.startswith("uniprot_go")))
    return {"done_peak_rss_mib": done["resources"]["peak_rss_mib"], "time_max_rss_mib": round(int(kib) / 1024, 1),
            "cpu_s": round(float(user) + float(system), 1), "wall_s": round(wall, 1),
            "sequences": stream["sequences"], "z_source": stream["z_source"],
            "hits": info["hits"], "db_bytes": info["databases"][0]["files"][f"{info['databases'][0]['name']}.fasta"][
                "bytes"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "foldstack-bench-msa-scale")
    ap.add_argument("--sizes-mb", type=int, nargs="+", default=[200, 1100])
    ap.add_argument("--cpus", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--mode", choices=("mutate", "shuffle"), default="mutate",
                    help="how the copies beyond the source are made (see grown_database)")
    ap.add_argument("--control", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    ensure_packages()
    from foldstack.demo_data import build_demo_db
    from foldstack.steps.databases import open_database

    args.work.mkdir(parents=True, exist_ok=True)
    source = open_database(build_database(args.work), DB_NAME, verify=False)
    demo = args.work / "demo-db"
    build_demo_db(demo)
    with open(source.sequences) as f:  # one real query of typical length
        query = next((h[1:].strip(), s.strip()) for h, s in zip(f, f, strict=False) if 300 <= len(s.strip()) <= 400)
    print(f"query {query[0]} ({len(query[1])} aa); source {source.sequence_count} sequences; "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    rows = {}
    for size in args.sizes_mb:
        root = grown_database(args.work, source.sequences, size, demo, args.mode)
        row = run_step(root, args.work / "scratch", f"mem-{size}mb-{int(time.time())}", query, args.cpus)
        rows[size] = row
        hits = next(v[0] for k, v in row["hits"].items() if k.startswith("uniprot_go"))
        print(f"{row['db_bytes'] / 1e6:7.0f} MB database ({args.mode}), {row['sequences']} sequences, {hits} hits: "
              f"peak RSS "
              f"{row['done_peak_rss_mib']:.0f} MiB (done record) / {row['time_max_rss_mib']:.0f} MiB (GNU time), "
              f"{row['cpu_s']:.0f} CPU-s, {row['wall_s']:.0f}s wall, Z from {row['z_source']}", flush=True)
    sizes = sorted(rows)
    growth = rows[sizes[-1]]["done_peak_rss_mib"] - rows[sizes[0]]["done_peak_rss_mib"]
    print(f"peak RSS difference {sizes[0]} MB -> {sizes[-1]} MB database: {growth:+.1f} MiB")
    result = {"query": query[0], "mode": args.mode, "rows": rows, "growth_mib": growth}
    if args.control:
        root = args.work / f"db-{sizes[0]}mb{'' if args.mode == 'mutate' else '-' + args.mode}"
        fasta = next(root.glob("uniprot_go_*/v1/*.fasta"))
        out = subprocess.run([sys.executable, "-c", CONTROL, str(fasta)], capture_output=True, text=True,
                             check=True).stdout.split()
        result["control_read_block_mib"] = int(out[1])
        print(f"control: read_block() of the {sizes[0]} MB database (pyhmmer's jackhmmer): {out[1]} MiB peak")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
