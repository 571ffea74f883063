"""jackhmmer vs MMseqs2 at realistic scale: 516,371 real UniProtKB sequences, ≥ 20 queries.

    .venv/bin/python bench/bench_msa_scale.py [--work DIR] [--n 20] [--cpus 2] [--sensitivity 7.5 ...]
                                              [--json out.json]

Database: Debian's ``metastudent-data`` ships three NCBI BLAST v4 protein databases of
GO-annotated UniProtKB proteins (``dataset_201401/{BPO,MFO,CCO}/goasp.fasta.*``);
``blastdbcmd -entry all`` (Debian ``ncbi-blast+``) dumps them, and their union,
deduplicated by accession, is the database (516,371 sequences, 191 MB), published under
``<work>/db`` as a ``uniref90``-role database (manifest with ``sequence_count``). The
script installs both packages with apt-get when they are missing and it runs as root;
otherwise it says what to install. Nothing is downloaded from anywhere else.

Queries: ``--n`` sequences drawn from the database with a fixed seed (lengths 50-1,000),
the same for every tool.

* jackhmmer: the msa step's own search (:func:`foldstack.steps.hmmer.jackhmmer`: pyhmmer,
  streamed from disk, AlphaFold's ``-N 1 --F1 0.0005 --F2 0.00005 --F3 0.0000005 --incE
  0.0001 -E 0.0001``, Z from the manifest), one query at a time, in a child process.
* MMseqs2 (Debian ``mmseqs2``), indexed target (``createdb`` + ``createindex``, built once
  and timed apart), the msa step's settings (``search -a -s <s> --num-iterations 1 -e 1e-4
  --max-seqs 10000 --db-load-mode 2``): one query per search (how one msa job searches a
  chain) and all queries in one search (the run's chain search phase).

Reported: CPU seconds (user + system, all threads) of each, the ratios jackhmmer/MMseqs2,
MMseqs2's share of jackhmmer's hits (|found by both| / |jackhmmer's|, summed over queries;
a hit is a distinct target sequence at E ≤ 1e-4), and the peak RSS of each (jackhmmer: the
child's VmHWM; MMseqs2: GNU time's maximum RSS of every mmseqs call). Never part of
``make test``: run by hand, on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import subprocess  # nosec B404 - fixed argv
import sys
import tempfile
import time
from pathlib import Path

METASTUDENT = Path("/usr/share/metastudent-data/dataset_201401")
SETS = ("BPO", "MFO", "CCO")
PACKAGES = ("metastudent-data", "ncbi-blast+", "mmseqs2")
DB_NAME, DB_VERSION = "uniprot_go", "metastudent-2014-01"


def ensure_packages() -> None:
    missing = [p for p in PACKAGES if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode]
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"missing Debian packages {missing}: sudo apt-get install -y {' '.join(missing)}")
    print(f"installing {missing} (apt-get)", flush=True)
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing], check=True,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def build_database(work: Path) -> Path:
    """The union of the three BLAST databases, deduplicated by accession, as a published
    database under <work>/db; returns the db root."""
    from foldstack.steps.databases import build_local_version, write_manifest

    root = work / "db"

    def fill(tmp: Path) -> None:
        seen: set[str] = set()
        t = time.perf_counter()
        with open(tmp / f"{DB_NAME}.fasta", "w") as out:
            for name in SETS:
                dump = subprocess.run(["blastdbcmd", "-db", str(METASTUDENT / name / "goasp.fasta"), "-entry", "all",
                                       "-line_length", "1000000"], capture_output=True, text=True, check=True).stdout
                acc = None
                for line in dump.splitlines():
                    if line.startswith(">"):
                        acc = line[1:].split("|", 1)[0].split()[0]
                    elif acc and acc not in seen and line:
                        seen.add(acc)
                        out.write(f">{acc}\n{line}\n")
                        acc = None
        print(f"database: {len(seen)} distinct sequences dumped in {time.perf_counter() - t:.0f}s", flush=True)
        write_manifest(tmp, name=DB_NAME, version=DB_VERSION, role="uniref90", sequences=f"{DB_NAME}.fasta",
                       max_hits=10000, source="Debian metastudent-data 2.0.1 dataset_201401 {BPO,MFO,CCO}/goasp.fasta "
                       "(NCBI BLAST v4 databases), dumped with blastdbcmd -entry all, deduplicated by accession",
                       license="UniProtKB: CC BY 4.0 (credit: UniProt Consortium)")

    build_local_version(root, DB_NAME, DB_VERSION, fill)
    return root


def pick_queries(fasta: Path, n: int, seed: int) -> list[tuple[str, str]]:
    records = []
    with open(fasta) as f:
        for header in f:
            seq = next(f).strip()
            if 50 <= len(seq) <= 1000:
                records.append((header[1:].strip(), seq))
    return random.Random(seed).sample(records, n)


JACKHMMER_CHILD = r"""
import json, resource, sys
from foldstack.steps.hmmer import StreamStats, jackhmmer
from foldstack.steps.presets import JACKHMMER
spec = json.load(sys.stdin)
hits, per_query = {}, []
for name, seq in spec["queries"]:
    before = resource.getrusage(resource.RUSAGE_SELF)
    stats = StreamStats()
    sto = jackhmmer(seq, "query", spec["fasta"], JACKHMMER, cpus=spec["cpus"], z=spec["z"], stats=stats)
    after = resource.getrusage(resource.RUSAGE_SELF)
    rows = {ln.split()[0].split("/")[0] for ln in sto.splitlines() if ln and not ln.startswith(("#", "//"))}
    rows.discard("query")
    rows.discard(name)  # the query's own entry: not counted on either side
    hits[name] = sorted(rows)
    per_query.append(round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2))
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
print(json.dumps({"hits": hits, "cpu_per_query": per_query, "peak_rss_mib": hwm, "z": stats.z}))
"""


def run_jackhmmer(queries, db, cpus: int) -> dict:
    spec = {"queries": queries, "fasta": str(db.sequences), "cpus": cpus, "z": db.sequence_count}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", JACKHMMER_CHILD], input=json.dumps(spec), capture_output=True,
                          text=True, check=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = json.loads(proc.stdout)
    out["cpu_s"] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    out["wall_s"] = wall
    return out


class Mmseqs:
    """mmseqs calls under GNU time: CPU seconds and peak RSS of each, summed / maxed."""

    def __init__(self, binary: str) -> None:
        self.binary, self.cpu_s, self.peak_mib, self.calls = binary, 0.0, 0.0, 0

    def __call__(self, *args) -> None:
        cmd = ["/usr/bin/time", "-f", "FSTIME %U %S %M", self.binary, *map(str, args), "-v", "1"]
        proc = subprocess.run(cmd, capture_output=True, text=True)  # nosec B603
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr[-2000:]}")
        user, system, kib = proc.stderr.rsplit("FSTIME", 1)[1].split()
        self.cpu_s += float(user) + float(system)
        self.peak_mib = max(self.peak_mib, int(kib) / 1024)
        self.calls += 1


def mmseqs_search(mm: Mmseqs, queries, target: Path, work: Path, cpus: int, sensitivity: float,
                  max_seqs: int = 10000) -> dict[str, set]:
    work.mkdir(parents=True, exist_ok=True)
    (work / "q.fasta").write_text("".join(f">{n}\n{s}\n" for n, s in queries))
    mm("createdb", work / "q.fasta", work / "qdb")
    mm("search", work / "qdb", target, work / "res", work / "tmp", "-a", "-s", sensitivity, "--num-iterations", 1,
       "-e", 0.0001, "--max-seqs", max_seqs, "--db-load-mode", 2, "--threads", cpus)
    mm("convertalis", work / "qdb", target, work / "res", work / "res.m8", "--db-load-mode", 2, "--threads", cpus)
    hits: dict[str, set] = {n: set() for n, _ in queries}
    for line in (work / "res.m8").read_text().splitlines():
        q, t = line.split("\t")[:2]
        if q != t:
            hits[q].add(t)
    shutil.rmtree(work, ignore_errors=True)
    return hits


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "foldstack-bench-msa-scale")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cpus", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--sensitivity", type=float, nargs="+", default=[7.5],
                    help="MMseqs2 -s values to compare (index built for the largest)")
    ap.add_argument("--max-seqs", type=int, default=10000, help="MMseqs2 --max-seqs (the msa step: 10000)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    ensure_packages()
    from foldstack.steps.databases import open_database
    from foldstack.steps.mmseqs import mmseqs_binary, mmseqs_version

    args.work.mkdir(parents=True, exist_ok=True)
    root = build_database(args.work)
    db = open_database(root, DB_NAME, verify=False)
    queries = pick_queries(db.sequences, args.n, args.seed)
    lengths = [len(s) for _, s in queries]
    binary = mmseqs_binary()
    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs (using {args.cpus}), load {os.getloadavg()[0]:.1f}, "
          f"Python {platform.python_version()}")
    print(f"database: {db.sequence_count} sequences, {db.sequences.stat().st_size / 1e6:.0f} MB "
          f"({db.sequences}); queries: {len(queries)}, length {min(lengths)}-{max(lengths)} "
          f"(mean {sum(lengths) / len(lengths):.0f}), seed {args.seed}")

    index = args.work / "mmseqs" / f"s{max(args.sensitivity)}"
    mm = Mmseqs(binary)
    if not (index / "DONE").is_file():
        index.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        mm("createdb", db.sequences, index / "target")
        mm("createindex", index / "target", index / "tmp", "-s", max(args.sensitivity), "--threads", args.cpus)
        shutil.rmtree(index / "tmp", ignore_errors=True)
        (index / "DONE").write_text(json.dumps({"seconds": time.perf_counter() - t, "cpu_s": mm.cpu_s,
                                                "peak_mib": mm.peak_mib}))
    built = json.loads((index / "DONE").read_text())
    print(f"mmseqs {mmseqs_version(binary)} index (createdb + createindex -s {max(args.sensitivity)}, once per "
          f"database version): {built['seconds']:.0f}s wall, {built['cpu_s']:.0f} CPU-s, "
          f"peak {built['peak_mib']:.0f} MiB")

    jh = run_jackhmmer(queries, db, args.cpus)
    jh_hits = {q: set(v) for q, v in jh["hits"].items()}
    jh_total = sum(len(v) for v in jh_hits.values())
    print(f"jackhmmer (streamed pyhmmer, -N 1, AlphaFold flags), one query per search: {jh['cpu_s']:.1f} CPU-s "
          f"({jh['wall_s']:.1f}s wall), peak RSS {jh['peak_rss_mib']:.0f} MiB, {jh_total} hits, Z={jh['z']:.0f}")

    results = {"database": {"sequences": db.sequence_count, "bytes": db.sequences.stat().st_size},
               "queries": len(queries), "query_lengths": lengths, "cpus": args.cpus, "index": built,
               "max_seqs": args.max_seqs,
               "jackhmmer": {k: jh[k] for k in ("cpu_s", "wall_s", "peak_rss_mib", "cpu_per_query")} | {
                   "hits": jh_total}, "mmseqs": {}}
    for s in args.sensitivity:
        row = {}
        for mode in ("per_query", "batched"):
            mm = Mmseqs(binary)
            t = time.perf_counter()
            if mode == "batched":
                hits = mmseqs_search(mm, queries, index / "target", args.work / "run-batched", args.cpus, s,
                                     args.max_seqs)
            else:
                hits = {}
                for i, q in enumerate(queries):
                    hits.update(mmseqs_search(mm, [q], index / "target", args.work / f"run-{i}", args.cpus, s,
                                              args.max_seqs))
            wall = time.perf_counter() - t
            both = sum(len(jh_hits[q] & hits[q]) for q in jh_hits)
            share = both / jh_total if jh_total else float("nan")
            ratio = jh["cpu_s"] / mm.cpu_s
            row[mode] = {"cpu_s": round(mm.cpu_s, 2), "wall_s": round(wall, 1), "peak_rss_mib": round(mm.peak_mib),
                         "hits": sum(len(v) for v in hits.values()), "both": both, "share": round(share, 4),
                         "cpu_ratio": round(ratio, 2)}
            print(f"mmseqs2 -s {s} --max-seqs {args.max_seqs} {mode.replace('_', ' '):9}: "
                  f"{mm.cpu_s:7.1f} CPU-s ({wall:.1f}s wall), "
                  f"peak RSS {mm.peak_mib:.0f} MiB, {row[mode]['hits']} hits; jackhmmer/mmseqs2 CPU {ratio:.1f}x, "
                  f"{share:.1%} of jackhmmer's hits")
        results["mmseqs"][str(s)] = row
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
